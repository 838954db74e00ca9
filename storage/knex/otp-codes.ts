/** Pending sms/email codes on Postgres: one salted hash per device and purpose, attempts counted atomically. */
import type { Knex } from 'knex';
import type { OtpCodeRecord, OtpCodeStore, OtpPurpose } from '../types.js';

type CodeKey = { tenantId: string; userId: string; deviceId: string; purpose: OtpPurpose };

/** `OtpCodeStore` on the `mfa_otp_codes` table. */
export class KnexOtpCodeStore implements OtpCodeStore {
  constructor(private readonly knex: Knex) {}

  async put(record: OtpCodeRecord): Promise<boolean> {
    try {
      // Only for the user's device while it is on (or not verified yet: its enrolment code), read FOR SHARE: a disable
      // that committed first leaves nothing to insert, one still running is waited for (and its delete of the
      // device's codes then finds this one). So no code issued around a disable passes after the device is back on.
      const { rows } = await this.knex.raw<{ rows: unknown[] }>(
        `INSERT INTO mfa_otp_codes (tenant_id, device_id, purpose, user_id, salt, code_hash, attempts, expires_at, created_at)
         SELECT d.tenant_id, d.id, ?, d.user_id, ?, ?, 0, ?, now() FROM mfa_devices d
         WHERE d.tenant_id = ? AND d.id = ? AND d.user_id = ? AND (d.enabled OR NOT d.verified)
         FOR SHARE
         ON CONFLICT (tenant_id, device_id, purpose) DO UPDATE SET
           user_id = excluded.user_id, salt = excluded.salt, code_hash = excluded.code_hash, attempts = 0,
           expires_at = excluded.expires_at, created_at = excluded.created_at
         RETURNING tenant_id`,
        [record.purpose, record.salt, record.codeHash, record.expiresAt, record.tenantId, record.deviceId, record.userId],
      );
      return rows.length === 1;
    } catch (err) {
      // The device is gone (removed meanwhile, or never was): the foreign key says so.
      if ((err as { code?: unknown }).code === '23503') return false;
      throw err;
    }
  }

  async beginAttempt(key: CodeKey, now: Date, maxAttempts: number): Promise<{ salt: Buffer; codeHash: Buffer } | null> {
    // The increment and the checks are one statement: concurrent guesses each take their own
    // attempt (row lock, re-check after wait), so no more than `maxAttempts` are ever compared.
    const rows = await this.knex('mfa_otp_codes')
      .where({ tenant_id: key.tenantId, device_id: key.deviceId, purpose: key.purpose, user_id: key.userId })
      .andWhere('expires_at', '>', now)
      .andWhere('attempts', '<', maxAttempts)
      .increment('attempts', 1)
      .returning<Array<{ salt: Buffer; code_hash: Buffer }>>(['salt', 'code_hash']);
    const row = rows[0];
    return row ? { salt: row.salt, codeHash: row.code_hash } : null;
  }

  async consume(key: CodeKey, codeHash: Buffer): Promise<boolean> {
    // Conditional on the hash just compared: a code re-issued in between is not deleted, and of
    // two callers with the right code only one gets the row.
    const rows = (await this.knex('mfa_otp_codes')
      .where({ tenant_id: key.tenantId, device_id: key.deviceId, purpose: key.purpose, user_id: key.userId, code_hash: codeHash })
      .delete()
      .returning('tenant_id')) as unknown[];
    return rows.length === 1;
  }
}
