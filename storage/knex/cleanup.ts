/**
 * Retention: deletes the rows that no longer decide anything, so tables grow with the users, not with time.
 * Nothing else removes them: a trusted device past its `trusted_until` stays (listed with `include_expired`)
 * until its user trusts that fingerprint again or revokes it, and a browser that never comes back never does.
 *
 * Each sweep deletes only what every reader already treats as absent, so no answer of the kit changes:
 * - `trusted_devices` past `trusted_until` (the check and the lists already leave them out; a cached
 *   positive answer is re-checked against its `trusted_until`, so no generation needs bumping);
 * - `mfa_devices` never verified and past `expires_at`: an abandoned enrolment and its sealed secret
 *   (enrolment already purges them, but only for a user who enrols again); their pending codes go with them;
 * - `mfa_otp_codes` past `expires_at` (a verification refuses them);
 * - `mfa_verification_failures` whose lock is over, or without a lock and untouched for longer than the
 *   longest cool-down there can be (7 days): the next attempt would start the counter at 1 either way.
 * The per-user trusted-device generations are never deleted: the cache relies on them only growing.
 *
 * Online and safe from several processes at once: each batch is one `DELETE` of at most `batchSize` rows
 * it locked with `FOR UPDATE SKIP LOCKED` and re-checked, so a row being renewed or verified at that moment
 * is left alone (and, renewed, no longer matches). Like Kratos's `cleanup sql`, run it from cron.
 */
import type { Knex } from 'knex';
import { MAX_COOLDOWN_SECONDS } from '../../lib/verification-throttle.js';

/** Options of `cleanupExpired()`. */
export interface CleanupOptions {
  knex: Knex;
  /**
   * How long rows are kept after they expire, in seconds: e.g. 30 days, to keep showing expired trusted
   * devices with `include_expired` for that long. Applies to every table.
   * @default 0
   */
  keepLastSeconds?: number;
  /**
   * Rows per `DELETE`: each batch holds its row locks for milliseconds.
   * @default 1000
   */
  batchSize?: number;
  /**
   * The clock `trusted_until` and `expires_at` are compared with (they are written with the service's clock);
   * the lockout counter is on the database clock, as it is written.
   * @default new Date()
   */
  now?: Date;
}

/** What `cleanupExpired()` did to one table. */
export interface CleanupResult {
  table: string;
  /** Rows deleted by this run. */
  deleted: number;
}

export const DEFAULT_CLEANUP_BATCH_SIZE = 1000;
/** The longest `keepLastSeconds` accepted: 100 years (a cutoff must stay a valid date). */
export const MAX_KEEP_LAST_SECONDS = 100 * 365 * 86_400;

interface Sweep {
  table: string;
  /** A condition on the table's row; `?` placeholders take `bindings`. */
  expired: string;
  bindings: (cutoff: Date, keepLastSeconds: number) => Knex.RawBinding[];
}

const SWEEPS: readonly Sweep[] = [
  // The check trusts while trusted_until > now (storage/knex/trusted-devices.ts FIND).
  { table: 'trusted_devices', expired: 'trusted_until <= ?', bindings: (cutoff) => [cutoff] },
  // Verification needs expires_at > now; a verified device has no expiry (storage/knex/mfa-devices.ts markVerified).
  { table: 'mfa_devices', expired: 'NOT verified AND expires_at <= ?', bindings: (cutoff) => [cutoff] },
  // An attempt needs expires_at > now (storage/knex/otp-codes.ts beginAttempt).
  { table: 'mfa_otp_codes', expired: 'expires_at <= ?', bindings: (cutoff) => [cutoff] },
  // CHARGE (storage/knex/verification-throttle.ts) starts over at 1 after an ended lock, or after a whole cool-down untouched.
  {
    table: 'mfa_verification_failures',
    expired: `updated_at <= now() - make_interval(secs => ?)
      AND (locked_until <= now() OR (locked_until IS NULL AND updated_at <= now() - make_interval(secs => ?)))`,
    bindings: (_cutoff, keep) => [keep, MAX_COOLDOWN_SECONDS],
  },
];

/** The tables `cleanupExpired()` sweeps, in this order (an abandoned enrolment takes its pending codes with it before they are swept). */
export const CLEANUP_TABLES: readonly string[] = SWEEPS.map((s) => s.table);

/**
 * Deletes, in batches, the rows of the kit's tables that expired more than `keepLastSeconds` ago (see above for
 * what "expired" means per table), and reports per table how many went. Re-runnable; a table that does not
 * exist (a part not installed) is passed over.
 */
export async function cleanupExpired(options: CleanupOptions): Promise<CleanupResult[]> {
  const { knex } = options;
  if (typeof knex !== 'function' || typeof (knex as Partial<Knex>).raw !== 'function') {
    throw new TypeError("express-mfa-kit: cleanupExpired() needs { knex }: cleanupExpired({ knex: knex({ client: 'pg', connection: process.env.DATABASE_URL }) })");
  }
  const keep = options.keepLastSeconds ?? 0;
  if (!Number.isInteger(keep) || keep < 0 || keep > MAX_KEEP_LAST_SECONDS) {
    throw new TypeError(`express-mfa-kit: cleanupExpired() option keepLastSeconds must be a whole number of seconds from 0 to ${MAX_KEEP_LAST_SECONDS} (100 years)`);
  }
  const batchSize = options.batchSize ?? DEFAULT_CLEANUP_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 100_000) {
    throw new TypeError('express-mfa-kit: cleanupExpired() option batchSize must be an integer from 1 to 100000');
  }
  const now = options.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new TypeError('express-mfa-kit: cleanupExpired() option now must be a valid Date');
  const cutoff = new Date(now.getTime() - keep * 1000);

  const results: CleanupResult[] = [];
  for (const sweep of SWEEPS) {
    if (!(await knex.schema.hasTable(sweep.table))) continue;
    // ctid = ANY(ARRAY(…)) is a TID scan of the rows the subquery locked; the condition is re-checked on them.
    const sql = `DELETE FROM ${sweep.table} WHERE ctid = ANY(ARRAY(
      SELECT ctid FROM ${sweep.table} WHERE ${sweep.expired} LIMIT ? FOR UPDATE SKIP LOCKED))`;
    const bindings = [...sweep.bindings(cutoff, keep), batchSize];
    let deleted = 0;
    for (;;) {
      const { rowCount } = await knex.raw<{ rowCount: number }>(sql, bindings);
      deleted += rowCount;
      if (rowCount < batchSize) break;
    }
    results.push({ table: sweep.table, deleted });
  }
  return results;
}

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `30d` → 2592000, `12h`, `90m`, `45s`, or plain seconds; `null` for anything else (`npm run cleanup`, the example server). */
export function parseDurationSeconds(text: string): number | null {
  const match = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  return match ? Number(match[1]) * UNIT_SECONDS[match[2] || 's']! : null;
}

/** What a failed sweep may be reported by: the driver's error code only (knex puts the SQL into its messages). */
export const failureCode = (err: unknown): string => (typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : 'unknown error');
