import { bool, defineArea, httpUrl, int, str, port } from '../define.js';

/** Keys of `omflow booster`. Owned by booster/; documented in docs/configuration.md. */
export const boosterArea = defineArea({
  name: 'booster',
  title: 'Booster (omflow booster)',
  keys: {
    host: str('OMFLOW_BOOSTER_HOST', { doc: 'Address the booster listens on.', default: '0.0.0.0' }),
    port: port('OMFLOW_BOOSTER_PORT', { doc: 'Port of the data plane and the /_booster/ control plane.', default: 5169 }),
    advertiseUrl: httpUrl('OMFLOW_BOOSTER_ADVERTISE_URL', {
      doc: 'URL at which peers, servers and clients reach this booster (shown in X-Booster-Active). Defaults to http://<host>:<port>.',
    }),
    peerUrl: httpUrl('OMFLOW_BOOSTER_PEER_URL', { doc: 'URL of the other booster of the pair (probed for fast failure detection). Empty: no peer.' }),
    standbyServes: bool('OMFLOW_BOOSTER_STANDBY_SERVES', { doc: 'Let the standby proxy data-plane requests too instead of answering 503.', default: false }),
    leaseMs: int('OMFLOW_BOOSTER_LEASE_MS', { doc: 'Leader lease length in the database.', default: 800, min: 200 }),
  },
});
