/** Erasure of everything the kit keeps about one user, on Postgres, in one transaction. */
import type { Knex } from 'knex';
import type { BeforeTrustedCommit, ErasedUserData, UserDataStore } from '../types.js';
import { bumpGeneration, epochIn, kitTransaction, lockRecoveryCodes, lockUser } from './user-locks.js';
import { SYNC_RECORDS_TABLE } from './sync-records.js';

export class KnexUserDataStore implements UserDataStore {
  constructor(private readonly knex: Knex) {}

  async erase(tenantId: string, userId: string, beforeCommit?: BeforeTrustedCommit): Promise<{ erased: ErasedUserData; trustedGeneration: number }> {
    return this.knex.transaction(async (trx) => {
      // The locks the user's other writers take, in the one order of storage/knex/user-locks.ts (the removal of a
      // last device takes all three in it too; every other writer takes one), so no cycle: devices (enrolment,
      // verification, removal), recovery codes (replacement), then the trusted-device generation row.
      await lockUser(trx, tenantId, userId);
      await lockRecoveryCodes(trx, tenantId, userId);
      // An upsert, as every trusted-device writer bumps (not a plain UPDATE): it waits for a first trust still in
      // flight, whose row an UPDATE would not see, and whose "trusted" the cache would then keep after the erasure.
      const trustedGeneration = await bumpGeneration(trx, tenantId, userId);
      const mine = { tenant_id: tenantId, user_id: userId };
      // Pending sms/email codes go with their devices (foreign key, on delete cascade).
      const mfaDevices = await trx('mfa_devices').where(mine).delete();
      const recoveryCodes = await trx('mfa_recovery_codes').where(mine).delete();
      const trustedDevices = await trx('trusted_devices').where(mine).delete();
      const syncRecords = await trx(SYNC_RECORDS_TABLE).where(mine).delete();
      await trx('mfa_verification_failures').where(mine).delete();
      if (trustedDevices > 0) await beforeCommit?.(trustedGeneration, epochIn(trx));
      return { erased: { mfaDevices, recoveryCodes, trustedDevices, syncRecords }, trustedGeneration };
    }, kitTransaction());
  }
}
