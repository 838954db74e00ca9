/** Recovery codes on Postgres: hashes only; consumed by one conditional UPDATE so a code works once. */
import type { Knex } from 'knex';
import type { RecoveryCodeStore } from '../types.js';
import { hasVerifiedMfaDevice, kitTransaction, lockRecoveryCodes } from './user-locks.js';

/** `RecoveryCodeStore` on the `mfa_recovery_codes` table. */
export class KnexRecoveryCodeStore implements RecoveryCodeStore {
  constructor(private readonly knex: Knex) {}

  async replace(tenantId: string, userId: string, codeHashes: readonly Buffer[], options: { requireVerifiedMfaDevice?: boolean } = {}): Promise<boolean> {
    return this.knex.transaction(async (trx) => {
      // Two concurrent replacements would otherwise each delete only the rows they can see and
      // both insert, leaving two sets; the per-user lock makes them take turns. A hash collision of
      // two users' keys only makes them wait for each other briefly.
      await lockRecoveryCodes(trx, tenantId, userId);
      // After the lock, which the removal of the last device (and an erasure) takes in its own transaction: either
      // it committed before this read (nothing is written), or it waits for this commit and deletes this set.
      if (options.requireVerifiedMfaDevice && !(await hasVerifiedMfaDevice(trx, tenantId, userId))) return false;
      await trx('mfa_recovery_codes').where({ tenant_id: tenantId, user_id: userId }).delete();
      if (codeHashes.length > 0) {
        await trx('mfa_recovery_codes').insert(codeHashes.map((h) => ({ tenant_id: tenantId, user_id: userId, code_hash: h })));
      }
      return true;
    }, kitTransaction());
  }

  async consume(tenantId: string, userId: string, codeHash: Buffer): Promise<boolean> {
    // Under READ COMMITTED a second concurrent UPDATE waits for the first, re-checks
    // `used_at IS NULL` on the committed row and matches nothing: exactly one caller wins.
    const rows = (await this.knex('mfa_recovery_codes')
      .where({ tenant_id: tenantId, user_id: userId, code_hash: codeHash })
      .whereNull('used_at')
      .update({ used_at: this.knex.fn.now() })
      .returning('tenant_id')) as unknown[];
    return rows.length === 1;
  }

  async countRemaining(tenantId: string, userId: string): Promise<number> {
    const row = (await this.knex('mfa_recovery_codes').where({ tenant_id: tenantId, user_id: userId }).whereNull('used_at').count({ n: '*' }).first()) as { n: string | number } | undefined;
    return Number(row?.n ?? 0);
  }
}
