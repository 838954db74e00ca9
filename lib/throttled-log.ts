/** A warn logger that writes at most one line per interval, so an outage cannot flood the log. */
import type { Logger } from './logger.js';
import { summarizeError } from './problem.js';

/** Returns `warn(obj, msg)` that logs through `logger.warn` at most once per `intervalMs`, counting what it dropped. */
export function throttledWarn(logger: Logger, intervalMs = 10_000): (obj: object, msg: string) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (obj, msg) => {
    const now = Date.now();
    if (now - last < intervalMs) {
      suppressed++;
      return;
    }
    last = now;
    logger.warn(suppressed > 0 ? { ...obj, suppressed } : obj, msg);
    suppressed = 0;
  };
}

/**
 * The message of an error, for a log line: never the stack, never the object (it may carry a connection string), never
 * the SQL knex puts before a driver's message (`summarizeError`).
 */
export const errorMessage = (err: unknown): string => (err instanceof Error ? summarizeError(err).message : String(err).slice(0, 300));
