/**
 * The per-user locks and reads the kit's writers share, in one place so their order is plain to see. A writer that
 * takes more than one takes them in this order, as the erasure does: the user's devices, their recovery codes, then
 * their trusted-device generation row. Each other writer takes one of them, so no two writers wait on each other
 * in a cycle.
 */
import type { Knex } from 'knex';
import type { CacheEpochInTransaction, WithoutStepUp } from '../types.js';

/**
 * How every transaction of the kit begins: READ COMMITTED, Postgres's default, whatever the database's or role's
 * `default_transaction_isolation`. The kit's writers are built on it: each takes a lock, then reads what the writers
 * that held it before committed (a count at a limit, the last verified device). Under REPEATABLE READ the snapshot is
 * taken before the lock is granted, so such a read misses them; under SERIALIZABLE such races end in serialization
 * failures. Inside a host's transaction (`knexStorage({ knex: trx })`) the kit's are savepoints, at the host's level.
 * A new object each time: knex writes into the config a nested transaction is given. Always with a callback
 * (`transaction(work, kitTransaction())`): its promise rejects when the COMMIT fails, where a `commit()` called by
 * hand resolves all the same.
 */
export const kitTransaction = (): Knex.TransactionConfig => ({ isolationLevel: 'read committed' });

/** Namespace of the kit's transaction-scoped advisory locks (two-key form, so it never meets a host's one-key locks). */
const LOCK_CLASS_RECOVERY_CODES = 0x4d46_0005;
const LOCK_CLASS_SYNC_RECORDS = 0x4d46_0006;

/** A transaction-scoped advisory lock on one user's devices (enrolment limit, verification, last-device removal). */
export async function lockUser(trx: Knex.Transaction, tenantId: string, userId: string): Promise<void> {
  await trx.raw("select pg_advisory_xact_lock(hashtextextended('mfa_devices:' || ? || ':' || ?, 0))", [tenantId, userId]);
}

/** A transaction-scoped advisory lock on one user's set of recovery codes (replacements take turns). */
export async function lockRecoveryCodes(trx: Knex.Transaction, tenantId: string, userId: string): Promise<void> {
  await trx.raw('select pg_advisory_xact_lock(?, hashtext(?))', [LOCK_CLASS_RECOVERY_CODES, JSON.stringify([tenantId, userId])]);
}

/** A transaction-scoped advisory lock on one user's synced vaults (creates take turns at the record limit); taken alone. */
export async function lockSyncRecords(trx: Knex.Transaction, tenantId: string, userId: string): Promise<void> {
  await trx.raw('select pg_advisory_xact_lock(?, hashtext(?))', [LOCK_CLASS_SYNC_RECORDS, JSON.stringify([tenantId, userId])]);
}

/**
 * Bumps the user's trusted-device generation and returns the new value, locking its row until the transaction
 * ends. Every trusted-device writer calls it before touching a device row.
 */
export async function bumpGeneration(trx: Knex.Transaction, tenantId: string, userId: string): Promise<number> {
  const { rows } = await trx.raw<{ rows: Array<{ generation: string }> }>(
    `insert into trusted_device_generations (tenant_id, user_id, generation) values (?, ?, 1)
     on conflict (tenant_id, user_id) do update set generation = trusted_device_generations.generation + 1
     returning generation`,
    [tenantId, userId],
  );
  return Number(rows[0]!.generation);
}

/** Whether the user has a verified MFA device (enabled or not), read in the caller's transaction. */
export async function hasVerifiedMfaDevice(trx: Knex.Transaction, tenantId: string, userId: string): Promise<boolean> {
  const { rows } = await trx.raw<{ rows: Array<{ found: boolean }> }>('select exists (select 1 from mfa_devices where tenant_id = ? and user_id = ? and verified) as found', [tenantId, userId]);
  return rows[0]!.found;
}

/**
 * Whether a change asked without step-up may go on (`WithoutStepUp`), read in the caller's transaction after the user's
 * device lock (`lockUser`), which every writer that verifies, turns on or removes a device takes: so no such change
 * commits between this read and the caller's commit. Recovery codes are read as committed; a new set needs the
 * step-up once the user has a verified device, so none is made meanwhile without it.
 */
export async function holdsWithoutStepUp(trx: Knex.Transaction, tenantId: string, userId: string, condition: WithoutStepUp | undefined): Promise<boolean> {
  if (condition === undefined) return true;
  const sql =
    condition === 'no-verified-device'
      ? 'select not exists (select 1 from mfa_devices where tenant_id = ? and user_id = ? and verified) as holds'
      : `select not exists (select 1 from mfa_devices where tenant_id = ? and user_id = ? and verified and enabled)
           and not exists (select 1 from mfa_recovery_codes where tenant_id = ? and user_id = ? and used_at is null) as holds`;
  const params = condition === 'no-verified-device' ? [tenantId, userId] : [tenantId, userId, tenantId, userId];
  const { rows } = await trx.raw<{ rows: Array<{ holds: boolean }> }>(sql, params);
  return rows[0]!.holds;
}

export const READ_CACHE_EPOCH = 'select epoch from trusted_device_cache_epoch';
/**
 * The bump, in two statements of one transaction: the row lock first (it waits for the writers that hold the epoch,
 * FOR SHARE), then the new epoch stamped with the time it is written, so `bumped_at` is at most a commit before the
 * moment other instances can read it. In one UPDATE the stamp would be taken before that wait.
 */
const LOCK_CACHE_EPOCH = "select epoch, (to_jsonb(e) -> 'bumped_at') is not null as dated from trusted_device_cache_epoch e for update";
const BUMP_CACHE_EPOCH = 'update trusted_device_cache_epoch set epoch = epoch + 1, bumped_at = clock_timestamp() returning epoch';
/** Before migration 0008 (code deployed ahead of its migration): the bump as it was. */
const BUMP_UNDATED_CACHE_EPOCH = 'update trusted_device_cache_epoch set epoch = epoch + 1 returning epoch';
/**
 * FOR SHARE: a bump (an UPDATE) waits for this transaction, and under READ COMMITTED this read waits for a bump in
 * flight and returns the epoch it committed. Milliseconds since the bump on the database's clock; `bumped_at` read
 * through `to_jsonb` so that a database before migration 0008 answers null (never dated) rather than an error.
 */
const HOLD_CACHE_EPOCH = `select epoch, (extract(epoch from clock_timestamp() - (to_jsonb(e) ->> 'bumped_at')::timestamptz) * 1000)::float8 as since_ms
  from trusted_device_cache_epoch e for share`;

/** The one cache epoch (a row migration 0002 makes), as a number; throws when the migrations have not run. */
export function epochOf(rows: Array<{ epoch: string }>): number {
  if (!rows[0]) throw new Error('trusted_device_cache_epoch is empty: run the migrations');
  return Number(rows[0].epoch);
}

/** The cache epoch in the caller's transaction, for its `BeforeTrustedCommit` hook. */
export function epochIn(trx: Knex.Transaction): CacheEpochInTransaction {
  return {
    read: async () => epochOf((await trx.raw<{ rows: Array<{ epoch: string }> }>(READ_CACHE_EPOCH)).rows),
    hold: async () => {
      const { rows } = await trx.raw<{ rows: Array<{ epoch: string; since_ms: number | null }> }>(HOLD_CACHE_EPOCH);
      return { epoch: epochOf(rows), sinceBumpMs: rows[0]!.since_ms };
    },
    bump: () => bumpEpoch(trx),
  };
}

/**
 * Bumps the cache epoch in `trx` (see BUMP_CACHE_EPOCH) and returns the new one. It waits for the writers holding the
 * epoch, each for a Redis call and a commit; at most 2 s in all (a holder that hangs, or new holders that keep the
 * row shared): then the bump fails, as a 503 of its change or a retry on the timer, instead of holding its own locks
 * and connection.
 */
export async function bumpEpoch(trx: Knex.Transaction): Promise<number> {
  // lock_timeout bounds one wait, statement_timeout a row kept shared by holder after holder.
  await trx.raw("select set_config('lock_timeout', '2s', true), set_config('statement_timeout', '2s', true)");
  const { rows } = await trx.raw<{ rows: Array<{ epoch: string; dated: boolean }> }>(LOCK_CACHE_EPOCH);
  epochOf(rows);
  return epochOf((await trx.raw<{ rows: Array<{ epoch: string }> }>(rows[0]!.dated ? BUMP_CACHE_EPOCH : BUMP_UNDATED_CACHE_EPOCH)).rows);
}
