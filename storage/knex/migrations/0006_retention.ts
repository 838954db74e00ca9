/**
 * Indexes for the retention sweep (storage/knex/cleanup.ts): each finds the expired rows of its table
 * without reading the live ones, whatever the table's size.
 */
import type { Knex } from 'knex';

export const name = '0006_retention';

export async function up(knex: Knex): Promise<void> {
  // IF NOT EXISTS: on a large table, create them beforehand with CREATE INDEX CONCURRENTLY (same names) so that
  // this migration does not hold trusted-device writes while it builds them; it then finds them there.
  await knex.raw('CREATE INDEX IF NOT EXISTS trusted_devices_expiry_idx ON trusted_devices (trusted_until)');
  // Only unverified devices expire; the index holds just those (a handful at any time).
  await knex.raw('CREATE INDEX IF NOT EXISTS mfa_devices_unverified_expiry_idx ON mfa_devices (expires_at) WHERE NOT verified');
  await knex.raw('CREATE INDEX IF NOT EXISTS mfa_otp_codes_expiry_idx ON mfa_otp_codes (expires_at)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX IF EXISTS mfa_otp_codes_expiry_idx');
  await knex.raw('DROP INDEX IF EXISTS mfa_devices_unverified_expiry_idx');
  await knex.raw('DROP INDEX IF EXISTS trusted_devices_expiry_idx');
}
