import { isOmflowError } from '../errors.js';
import type { Logger } from '../log.js';
import type { AnyArea } from './define.js';
import { type ConfigChanges, type ConfigOrigin, type LoadedConfig, reloadConfig } from './load.js';

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

/**
 * The log lines of a reload a process applied: `configuration reloaded` naming the changed keys
 * (never values) and those that wait for a restart (a WARN too). Written at the more verbose of
 * the old and the new log level, which `logLevel` then becomes.
 */
export function reportReload(log: Logger, changes: ConfigChanges, logLevel: string): void {
  if (log.levels.values[logLevel] < log.levels.values[log.level]) log.level = logLevel;
  if (changes.needsRestart.length > 0)
    log.warn({ needsRestart: changes.needsRestart }, 'configuration reloaded; these settings changed but take effect only after a restart');
  log.info({ changed: changes.inPlace, needsRestart: changes.needsRestart }, 'configuration reloaded');
  log.level = logLevel;
}
