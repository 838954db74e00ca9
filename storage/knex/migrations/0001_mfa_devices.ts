/** MFA devices: one row per second factor of a user; secrets and destinations sealed (AES-256-GCM). */
import type { Knex } from 'knex';

export const name = '0001_mfa_devices';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('mfa_devices', (t) => {
    t.text('tenant_id').notNullable();
    t.uuid('id').notNullable();
    t.text('user_id').notNullable();
    t.text('method').notNullable();
    t.text('device_name').notNullable();
    t.boolean('enabled').notNullable().defaultTo(true);
    t.boolean('verified').notNullable().defaultTo(false);
    t.text('secret_key_id').notNullable();
    t.binary('secret_ciphertext').notNullable();
    t.text('totp_algorithm');
    t.smallint('totp_digits');
    t.integer('totp_period');
    t.bigint('last_step');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_used_at', { useTz: true });
    t.timestamp('verified_at', { useTz: true });
    t.timestamp('expires_at', { useTz: true });
    t.primary(['tenant_id', 'id']);
    t.index(['tenant_id', 'user_id', 'created_at', 'id'], 'mfa_devices_user_idx');
    t.index(['secret_key_id'], 'mfa_devices_key_idx');
  });
  await knex.raw(`ALTER TABLE mfa_devices ADD CONSTRAINT mfa_devices_method_chk CHECK (method IN ('totp', 'sms', 'email'))`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('mfa_devices');
}
