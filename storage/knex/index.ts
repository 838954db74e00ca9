/** `knexStorage({ knex })`: the kit's storage on PostgreSQL through knex + pg. */
import type { Knex } from 'knex';
import type { MfaStorage } from '../types.js';
import { KnexMfaDeviceStore } from './mfa-devices.js';
import { KnexVerificationThrottleStore } from './verification-throttle.js';
import { KnexOtpCodeStore } from './otp-codes.js';
import { KnexRecoveryCodeStore } from './recovery-codes.js';
import { KnexSyncRecordStore } from './sync-records.js';
import { migrate } from './migrate.js';
import { guardPool } from './pool-guard.js';
import { KnexTrustedDeviceStore } from './trusted-devices.js';
import { KnexUserDataStore } from './users.js';

export interface KnexStorageOptions {
  /**
   * A knex instance with client `pg`. Its pool is the kit's connection pool; size it for your instances. From then on
   * the pool hands out no connection that is inside a transaction (storage/knex/pool-guard.ts):
   * one is closed instead, as pg's `query_timeout` can leave them.
   */
  knex: Knex;
  /**
   * Named prepared statements for the hot statements (the hot reads, and the writes of every verification):
   * parsed and planned once per connection. Turn off behind a pooler in transaction mode that does not keep
   * prepared statements (PgBouncer before 1.21, or without `max_prepared_statements`). @default true
   */
  preparedStatements?: boolean;
}

export interface KnexStorage extends MfaStorage {
  readonly knex: Knex;
  /** Runs pending migrations (same as `npm run migrate`). */
  migrate(): Promise<string[]>;
}

export function knexStorage(options: KnexStorageOptions): KnexStorage {
  const { knex } = options;
  const prepared = options.preparedStatements ?? true;
  if (typeof prepared !== 'boolean') throw new TypeError('express-mfa-kit: knexStorage() option preparedStatements must be a boolean');
  if (typeof knex !== 'function' || typeof (knex as Partial<Knex>).raw !== 'function') {
    throw new TypeError("express-mfa-kit: knexStorage({ knex }) needs a knex instance: knexStorage({ knex: knex({ client: 'pg', connection: process.env.DATABASE_URL }) })");
  }
  // A connection left inside a transaction (a client-side query timeout) would swallow the kit's writes: pool-guard.ts.
  guardPool(knex);
  return {
    knex,
    mfaDevices: new KnexMfaDeviceStore(knex, prepared),
    verificationThrottle: new KnexVerificationThrottleStore(knex, prepared),
    recoveryCodes: new KnexRecoveryCodeStore(knex),
    otpCodes: new KnexOtpCodeStore(knex),
    syncRecords: new KnexSyncRecordStore(knex),
    trustedDevices: new KnexTrustedDeviceStore(knex, prepared),
    users: new KnexUserDataStore(knex),
    async ping() {
      // A server that takes no writes (a standby after a fail-over, `default_transaction_read_only`) is not ready:
      // every trust, verification and enrolment would fail on it.
      const { rows } = await knex.raw<{ rows: Array<{ read_only: string }> }>("select current_setting('transaction_read_only') as read_only");
      if (rows[0]?.read_only === 'on') throw Object.assign(new Error('the database takes no writes (read-only)'), { code: '25006' });
    },
    migrate: () => migrate(knex),
  };
}

export { migrate, rollbackAll, MIGRATIONS_TABLE } from './migrate.js';
export { syncRecordAad } from './sync-records.js';
