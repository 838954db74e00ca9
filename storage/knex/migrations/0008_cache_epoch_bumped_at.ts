/**
 * When the trusted-device cache epoch was last bumped (`bumped_at`, the database's clock): for up to twice
 * `epochRefreshMs` after a bump some instances still read the keys of the epoch before it, so a revocation made in
 * that time answers its caller only once that time has passed (lib/trusted-devices.ts, point 4). `null`: never
 * bumped since this column was added.
 */
import type { Knex } from 'knex';

export const name = '0008_cache_epoch_bumped_at';

export async function up(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE trusted_device_cache_epoch ADD COLUMN bumped_at timestamptz');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE trusted_device_cache_epoch DROP COLUMN bumped_at');
}
