import { DEFAULT_PORT } from '../../protocol/headers.js';
import { defineArea, optionalPort, optionalStr } from '../define.js';

/** Where app servers and agents find the Booster pair; OMFLOW's own setting names. */
export const boostersArea = defineArea({
  name: 'boosters',
  title: 'Booster addresses (app servers and agents)',
  keys: {
    boosterIp: optionalStr('BOOSTER_IP', {
      doc: 'IP or host name of the (first) Booster. Empty: no booster; a lone server runs its own step queue.',
      aliases: ['OMFLOW_BOOSTER_IP'],
    }),
    boosterPort: optionalPort('BOOSTER_PORT', { doc: 'Port of the first Booster (default 5169).', aliases: ['OMFLOW_BOOSTER_REMOTE_PORT'] }),
    secondBoosterIp: optionalStr('SECOND_BOOSTER_IP', {
      doc: 'IP or host name of the HA (second) Booster. Empty: no HA Booster.',
      aliases: ['OMFLOW_SECOND_BOOSTER_IP'],
    }),
    secondBoosterPort: optionalPort('SECOND_BOOSTER_PORT', { doc: 'Port of the HA Booster (default 5169).', aliases: ['OMFLOW_SECOND_BOOSTER_PORT'] }),
  },
});

/** Booster base URLs in heartbeat order: first, then the HA booster. */
export function boosterUrlsOf(values: { boosterIp?: string; boosterPort?: number; secondBoosterIp?: string; secondBoosterPort?: number }): string[] {
  const url = (host: string, port?: number) => `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port ?? DEFAULT_PORT.booster}`;
  const out: string[] = [];
  if (values.boosterIp) out.push(url(values.boosterIp, values.boosterPort));
  if (values.secondBoosterIp) out.push(url(values.secondBoosterIp, values.secondBoosterPort));
  return out;
}
