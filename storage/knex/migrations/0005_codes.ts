/** Recovery codes (hashed, single use) and pending sms/email one-time codes (salted hash, expiry, attempt count). */
import type { Knex } from 'knex';

export const name = '0005_codes';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('mfa_recovery_codes', (t) => {
    t.text('tenant_id').notNullable();
    t.text('user_id').notNullable();
    t.binary('code_hash').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('used_at', { useTz: true });
    // The consume looks a code up by exactly this key; the count of unused codes scans the user's prefix.
    t.primary(['tenant_id', 'user_id', 'code_hash']);
  });

  await knex.schema.createTable('mfa_otp_codes', (t) => {
    t.text('tenant_id').notNullable();
    t.uuid('device_id').notNullable();
    t.text('purpose').notNullable();
    t.text('user_id').notNullable();
    t.binary('salt').notNullable();
    t.binary('code_hash').notNullable();
    t.integer('attempts').notNullable().defaultTo(0);
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // One pending code per device and purpose: issuing a new one replaces the old.
    t.primary(['tenant_id', 'device_id', 'purpose']);
    // A removed device takes its pending codes with it.
    t.foreign(['tenant_id', 'device_id'], 'mfa_otp_codes_device_fk').references(['tenant_id', 'id']).inTable('mfa_devices').onDelete('CASCADE');
  });
  await knex.raw(`ALTER TABLE mfa_otp_codes ADD CONSTRAINT mfa_otp_codes_purpose_chk CHECK (purpose IN ('enrollment', 'login'))`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('mfa_otp_codes');
  await knex.schema.dropTable('mfa_recovery_codes');
}
