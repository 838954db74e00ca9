/**
 * Trusted devices ("remember this device", NIST SP 800-63B §5.2.3): one row per tenant + user + fingerprint,
 * a per-user generation bumped by every change (the cache's staleness guard), and the global cache epoch.
 */
import type { Knex } from 'knex';

export const name = '0002_trusted_devices';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('trusted_devices', (t) => {
    t.text('tenant_id').notNullable();
    t.uuid('id').notNullable();
    t.text('user_id').notNullable();
    t.text('fingerprint').notNullable();
    t.text('device_name');
    t.text('device_type');
    t.text('browser');
    t.text('os');
    t.text('ip');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('trusted_until', { useTz: true }).notNullable();
    t.primary(['tenant_id', 'id']);
    // The check's lookup, and the "one row per fingerprint" rule a renew upserts on.
    t.unique(['tenant_id', 'user_id', 'fingerprint'], { indexName: 'trusted_devices_fingerprint_key' });
    t.index(['tenant_id', 'user_id', 'created_at', 'id'], 'trusted_devices_user_idx');
  });

  // Bumped in the same transaction as every trust, renew and revocation of the user's devices;
  // a cache entry is only believed while it carries the current generation (lib/trusted-devices.ts).
  await knex.schema.createTable('trusted_device_generations', (t) => {
    t.text('tenant_id').notNullable();
    t.text('user_id').notNullable();
    t.bigint('generation').notNullable();
    t.primary(['tenant_id', 'user_id']);
  });

  // One row. Part of every cache key: bumped when a change could not be written to the cache,
  // which orphans everything cached before (lib/trusted-devices.ts).
  await knex.schema.createTable('trusted_device_cache_epoch', (t) => {
    t.boolean('singleton').notNullable().defaultTo(true).primary();
    t.bigint('epoch').notNullable();
  });
  await knex.raw('ALTER TABLE trusted_device_cache_epoch ADD CONSTRAINT trusted_device_cache_epoch_singleton_chk CHECK (singleton)');
  await knex('trusted_device_cache_epoch').insert({ singleton: true, epoch: 1 });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('trusted_device_cache_epoch');
  await knex.schema.dropTable('trusted_device_generations');
  await knex.schema.dropTable('trusted_devices');
}
