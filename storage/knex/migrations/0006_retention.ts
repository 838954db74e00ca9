/**
 * Indexes for the retention sweep (storage/knex/cleanup.ts): each finds the expired rows of its table
 * without reading the live ones, whatever the table's size.
 */
import type { Knex } from 'knex';

export const name = '0006_retention';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('trusted_devices', (t) => {
    t.index(['trusted_until'], 'trusted_devices_expiry_idx');
  });
  // Only unverified devices expire; the index holds just those (a handful at any time).
  await knex.raw('CREATE INDEX mfa_devices_unverified_expiry_idx ON mfa_devices (expires_at) WHERE NOT verified');
  await knex.schema.alterTable('mfa_otp_codes', (t) => {
    t.index(['expires_at'], 'mfa_otp_codes_expiry_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('mfa_otp_codes', (t) => {
    t.dropIndex([], 'mfa_otp_codes_expiry_idx');
  });
  await knex.raw('DROP INDEX mfa_devices_unverified_expiry_idx');
  await knex.schema.alterTable('trusted_devices', (t) => {
    t.dropIndex([], 'trusted_devices_expiry_idx');
  });
}
