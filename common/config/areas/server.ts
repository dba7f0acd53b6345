import { defineArea, httpUrl, optionalPort, optionalStr, port, str } from '../define.js';

/** Keys of the app server (`omflow server`, started by the agent). Owned by server/. */
export const serverArea = defineArea({
  name: 'server',
  title: 'App server',
  keys: {
    host: str('OMFLOW_SERVER_HOST', { doc: 'Address the app server listens on.', default: '127.0.0.1' }),
    port: port('OMFLOW_SERVER_PORT', { doc: 'Port of the app server (0: any free port).', default: 8000 }),
    publicUrl: httpUrl('OMFLOW_SERVER_URL', { doc: 'URL at which boosters reach this server. Defaults to http://<host>:<port>.' }),
    boosterIp: optionalStr('BOOSTER_IP', { doc: 'OMFLOW setting: IP or host name of the (first) Booster.', aliases: ['OMFLOW_BOOSTER_IP'] }),
    boosterPort: optionalPort('BOOSTER_PORT', { doc: 'OMFLOW setting: port of the (first) Booster (default 5169).', aliases: ['OMFLOW_BOOSTER_PORT_REMOTE'] }),
    secondBoosterIp: optionalStr('SECOND_BOOSTER_IP', { doc: 'OMFLOW setting: IP or host name of the HA (second) Booster.' }),
    secondBoosterPort: optionalPort('SECOND_BOOSTER_PORT', { doc: 'OMFLOW setting: port of the HA Booster (default 5169).' }),
  },
});
