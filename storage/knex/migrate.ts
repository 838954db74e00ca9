/** Runs the kit's migrations with knex's migrator (own table `mfa_kit_migrations`, so it coexists with the host's). */
import type { Knex } from 'knex';
import { MIGRATIONS, type Migration } from './migrations/index.js';

export const MIGRATIONS_TABLE = 'mfa_kit_migrations';

const source: Knex.MigrationSource<Migration> = {
  getMigrations: () => Promise.resolve([...MIGRATIONS]),
  getMigrationName: (m) => m.name,
  getMigration: (m) => Promise.resolve(m),
};

/**
 * A database migrated by a later version of the kit (a rolling deploy, a rollback) still serves this one: each
 * migration only adds what the versions before it do not read, so knex's refusal of names it does not know ("the
 * migration directory is corrupt") is turned off.
 */
const config = (): Knex.MigratorConfig => ({ migrationSource: source, tableName: MIGRATIONS_TABLE, disableMigrationsListValidation: true });

/** Brings the schema up to date; safe to run from several instances at once (knex takes a lock). Returns the names applied. */
export async function migrate(knex: Knex): Promise<string[]> {
  const [, applied] = (await knex.migrate.latest(config())) as [number, string[]];
  return applied;
}

/** Rolls back every kit migration (tests and uninstall). */
export async function rollbackAll(knex: Knex): Promise<void> {
  await knex.migrate.rollback(config(), true);
}
