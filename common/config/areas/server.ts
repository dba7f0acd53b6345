import { defineArea, httpUrl, port, str } from '../define.js';

/** Keys of the app server (`omflow server`, started by the agent). Owned by server/. */
export const serverArea = defineArea({
  name: 'server',
  title: 'App server',
  keys: {
    host: str('OMFLOW_SERVER_HOST', { doc: 'Address the app server listens on.', default: '127.0.0.1' }),
    port: port('OMFLOW_SERVER_PORT', { doc: 'Port of the app server (0: any free port).', default: 8000 }),
    publicUrl: httpUrl('OMFLOW_SERVER_URL', { doc: 'URL at which boosters reach this server. Defaults to http://<host>:<port>.' }),
  },
});
