/** The verification lockout counter on Postgres: one row per tenant + user, every decision one atomic statement on the database clock. */
import type { Knex } from 'knex';
import type { ChargeResult, FailureRecord, LockoutPolicy, VerificationThrottleStore } from '../types.js';
import { query, statement } from './statements.js';

interface StateRow {
  failures: number;
  locked: boolean;
  newly_locked: boolean;
  retry_after: number | null;
}

const TABLE = 'mfa_verification_failures';

// Branches, in order: a running lock refuses as is; an ended lock or a counter untouched for a whole cool-down
// starts over; a full counter locks now (attempts still in flight filled it); otherwise the attempt is counted.
// SET expressions all see the row as it was.
const CHARGE = statement(`INSERT INTO ${TABLE} AS f (tenant_id, user_id, failures, updated_at) VALUES (?, ?, 1, now())
       ON CONFLICT (tenant_id, user_id) DO UPDATE SET
         failures = CASE
           WHEN f.locked_until > now() THEN f.failures
           WHEN f.locked_until IS NOT NULL OR f.updated_at <= now() - (?::int * interval '1 second') THEN 1
           WHEN f.failures >= ?::int THEN f.failures
           ELSE f.failures + 1 END,
         locked_at = CASE
           WHEN f.locked_until > now() THEN f.locked_at
           WHEN f.locked_until IS NOT NULL OR f.updated_at <= now() - (?::int * interval '1 second') THEN NULL
           WHEN f.failures >= ?::int THEN now()
           ELSE NULL END,
         locked_until = CASE
           WHEN f.locked_until > now() THEN f.locked_until
           WHEN f.locked_until IS NOT NULL OR f.updated_at <= now() - (?::int * interval '1 second') THEN NULL
           WHEN f.failures >= ?::int THEN now() + (?::int * interval '1 second')
           ELSE NULL END,
         updated_at = now()
       RETURNING failures,
         coalesce(locked_until > now(), false) AS locked,
         coalesce(locked_at = now(), false) AS newly_locked,
         greatest(1, ceil(extract(epoch FROM locked_until - now())))::int AS retry_after`);
const RESET = statement(`DELETE FROM ${TABLE} WHERE tenant_id = ? AND user_id = ?`);
const REFUND = statement(`UPDATE ${TABLE} SET failures = failures - 1
       WHERE tenant_id = ? AND user_id = ? AND failures > 0 AND (locked_until IS NULL OR locked_until <= now())`);
// A failed attempt: locks the counter the attempt's charge filled (unless a lock already runs), else reads its state.
const LOCK_IF_FULL = statement(`UPDATE ${TABLE} SET locked_at = now(), locked_until = now() + (?::int * interval '1 second'), updated_at = now()
       WHERE tenant_id = ? AND user_id = ? AND failures >= ?::int AND (locked_until IS NULL OR locked_until <= now())
       RETURNING failures, true AS locked, true AS newly_locked, greatest(1, ceil(extract(epoch FROM locked_until - now())))::int AS retry_after`);
const CURRENT_STATE = statement(`SELECT failures, coalesce(locked_until > now(), false) AS locked, false AS newly_locked,
         greatest(1, ceil(extract(epoch FROM locked_until - now())))::int AS retry_after
       FROM ${TABLE} WHERE tenant_id = ? AND user_id = ?`);

export class KnexVerificationThrottleStore implements VerificationThrottleStore {
  /** @param prepared named prepared statements for the statements of every verification (storage/knex/statements.ts) */
  constructor(
    private readonly knex: Knex,
    private readonly prepared = true,
  ) {}

  async charge(tenantId: string, userId: string, policy: LockoutPolicy): Promise<ChargeResult> {
    const cool = policy.cooldownSeconds;
    const max = policy.maxFailures;
    // CHARGE's branches are above. Prepared (storage/knex/statements.ts): every verification runs it.
    const rows = await query<StateRow>(this.knex, CHARGE, [tenantId, userId, cool, max, cool, max, cool, max, cool], this.prepared);
    const row = rows[0]!;
    if (!row.locked) return { status: 'OK' };
    return { status: 'LOCKED', retryAfterSeconds: row.retry_after ?? cool, newlyLocked: row.newly_locked };
  }

  async recordFailure(tenantId: string, userId: string, policy: LockoutPolicy): Promise<FailureRecord> {
    const rows = await query<StateRow>(this.knex, LOCK_IF_FULL, [policy.cooldownSeconds, tenantId, userId, policy.maxFailures], this.prepared);
    const row = rows[0];
    if (row) return { locked: true, newlyLocked: true, retryAfterSeconds: row.retry_after ?? policy.cooldownSeconds };
    const [state] = await query<StateRow>(this.knex, CURRENT_STATE, [tenantId, userId], this.prepared);
    return state?.locked ? { locked: true, newlyLocked: false, retryAfterSeconds: state.retry_after ?? policy.cooldownSeconds } : { locked: false, newlyLocked: false, retryAfterSeconds: 0 };
  }

  async reset(tenantId: string, userId: string): Promise<void> {
    await query(this.knex, RESET, [tenantId, userId], this.prepared);
  }

  async refund(tenantId: string, userId: string): Promise<void> {
    await query(this.knex, REFUND, [tenantId, userId], this.prepared);
  }

  async lockedFor(tenantId: string, userId: string): Promise<number> {
    const [state] = await query<StateRow>(this.knex, CURRENT_STATE, [tenantId, userId], this.prepared);
    return state?.locked ? (state.retry_after ?? 1) : 0;
  }
}
