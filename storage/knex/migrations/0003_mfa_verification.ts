/** Verification state: per-device TOTP skew, and the consecutive-failure lockout counter (per tenant + user). */
import type { Knex } from 'knex';

export const name = '0003_mfa_verification';

export async function up(knex: Knex): Promise<void> {
  // Skew is stored per device like algorithm/digits/period, so changing the router default
  // never changes what an enrolled authenticator is held to.
  await knex.schema.alterTable('mfa_devices', (t) => {
    t.smallint('totp_skew');
  });
  await knex.schema.createTable('mfa_verification_failures', (t) => {
    t.text('tenant_id').notNullable();
    t.text('user_id').notNullable();
    // Attempts charged since the last success (in-flight ones included).
    t.integer('failures').notNullable().defaultTo(0);
    t.timestamp('locked_at', { useTz: true });
    t.timestamp('locked_until', { useTz: true });
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['tenant_id', 'user_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('mfa_verification_failures');
  await knex.schema.alterTable('mfa_devices', (t) => {
    t.dropColumn('totp_skew');
  });
}
