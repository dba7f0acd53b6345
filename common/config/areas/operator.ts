import { defineArea, httpUrl, optionalStr } from '../define.js';

/**
 * Keys of the operator's side of the commands that talk to a booster (`omflow status`,
 * `omflow server drain|undrain|weight|retire`, `omflow switchover`, `omflow maintenance`).
 */
export const operatorArea = defineArea({
  name: 'operator',
  title: 'Operator commands (omflow status, server drain…, switchover, maintenance)',
  keys: {
    token: optionalStr('OMFLOW_OPERATOR_TOKEN', {
      doc: "Bearer token the operator commands send: one of the booster's OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS (commands and reads; the event log names it) or its OMFLOW_BOOSTER_OPERATOR_TOKEN (reads only). Without it the commands sign with OMFLOW_CLUSTER_SECRET where that is configured. Prefer OMFLOW_OPERATOR_TOKEN_FILE.",
      secret: true,
    }),
    boosterUrl: httpUrl('OMFLOW_OPERATOR_BOOSTER_URL', {
      doc: 'Booster the operator commands talk to when --booster is not given (default http://127.0.0.1:5169). Any booster of the pair will do: a switchover sent to the standby follows X-Booster-Active.',
    }),
  },
});
