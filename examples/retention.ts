/**
 * The example server's retention sweep (`CLEANUP_EVERY`): `cleanupExpired()` once at start-up and then on an
 * interval, in one process only (with WORKERS > 1, the first worker). A cron job running `npm run cleanup` does
 * the same for a deployment that would rather schedule it outside the servers.
 */
import type { Knex } from 'knex';
import { cleanupExpired } from '../index.js';
import { failureCode } from '../storage/knex/cleanup.js';
import type { Logger } from '../lib/logger.js';

export interface RetentionSweepOptions {
  knex: Knex;
  everySeconds: number;
  keepLastSeconds: number;
  logger: Logger;
}

/** Starts the sweep; the returned function stops it and waits for a sweep in progress (call it before closing knex). */
export function startRetentionSweep({ knex, everySeconds, keepLastSeconds, logger }: RetentionSweepOptions): () => Promise<void> {
  let running: Promise<void> | undefined;
  const sweep = () => {
    if (running) return; // the previous sweep is still deleting: this tick is skipped
    running = cleanupExpired({ knex, keepLastSeconds })
      .then((results) => {
        const deleted = Object.fromEntries(results.map((r) => [r.table, r.deleted]));
        logger.info({ deleted, keep_last_seconds: keepLastSeconds }, 'retention sweep: deleted what expired');
      })
      .catch((err: unknown) => {
        logger.warn({ code: failureCode(err) }, 'retention sweep failed; it runs again at the next interval');
      })
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(sweep, everySeconds * 1000);
  timer.unref();
  setImmediate(sweep);
  return async () => {
    clearInterval(timer);
    await running;
  };
}
