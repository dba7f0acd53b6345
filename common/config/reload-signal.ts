import { isOmflowError } from '../errors.js';
import type { Logger } from '../log.js';
import type { AnyArea } from './define.js';
import { type ConfigOrigin, type LoadedConfig, reloadConfig } from './load.js';

/**
 * The SIGHUP (`systemctl reload`) handler of a long-running command: reads the configuration
 * again from where it started and hands it to `apply`; a file that does not validate (or an
 * `apply` that throws) changes nothing and says why in the log. Returns the function that
 * removes the handler.
 */
export function reloadOnSighup<const A extends readonly AnyArea[]>(
  areas: A,
  origin: ConfigOrigin,
  log: Logger,
  apply: (next: LoadedConfig<A>) => unknown,
): () => void {
  let queue: Promise<unknown> = Promise.resolve();
  const onHup = () => {
    queue = queue.then(async () => {
      try {
        await apply(reloadConfig(areas, origin));
      } catch (err) {
        const problems = isOmflowError(err) && err.code === 'COMMON_ERR_CONFIG_INVALID' ? (err.details as { problems?: unknown }).problems : undefined;
        log.error({ err: problems ? undefined : err, problems }, 'reload refused: the configuration is invalid; the running settings are kept');
      }
    });
  };
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}
