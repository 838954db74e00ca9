/**
 * The trusted-device cache epoch starts at a random value instead of 1. It is part of every cache key
 * (storage/cache/types.ts), and the epoch was 1 in every new database: two deployments with their own databases
 * and one Redis (staging and production, two products) read each other's entries, so a device remembered in one
 * was trusted in the other. A random start (40 bits) gives each database its own keys; a database that had an
 * epoch moves on by the same random step, which, like any bump, starts its cache afresh once.
 */
import { randomInt } from 'node:crypto';
import type { Knex } from 'knex';

export const name = '0007_cache_namespace';

/** Largest random step: with the bumps still to come, far below 2^53 (the epoch is read as a JavaScript number). */
const MAX_STEP = 2 ** 40;

export async function up(knex: Knex): Promise<void> {
  await knex.raw('UPDATE trusted_device_cache_epoch SET epoch = epoch + ?', [randomInt(1, MAX_STEP)]);
}

export async function down(): Promise<void> {
  // Nothing to undo: any epoch is a valid one.
}
