/** Sync records: one encrypted authenticator vault per device of a user ([4/7], seed 001). */
import type { Knex } from 'knex';

export const name = '0004_sync_records';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('sync_records', (t) => {
    t.text('tenant_id').notNullable();
    t.text('id').notNullable();
    t.text('user_id').notNullable();
    t.text('device_fingerprint').notNullable();
    t.text('device_name').notNullable();
    t.text('sync_token').notNullable();
    t.text('vault_key_id').notNullable();
    t.binary('vault_ciphertext').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_sync_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['tenant_id', 'id']);
    // The arbiter of `INSERT … ON CONFLICT DO NOTHING`: one record per device of a user.
    t.unique(['tenant_id', 'user_id', 'device_fingerprint'], { indexName: 'sync_records_fingerprint_uq' });
    t.index(['tenant_id', 'user_id', 'created_at', 'id'], 'sync_records_user_idx');
    // Re-encryption finds the rows still sealed with a retired key.
    t.index(['vault_key_id'], 'sync_records_key_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('sync_records');
}
