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

/**
 * What an instance meets when another creates knex's own tables (`mfa_kit_migrations`, `_lock`) at the same moment,
 * on an empty database: knex's lock lives in those tables, so nothing serialises their creation. `42P07`: the table
 * exists; `42710` and `23505`: its row type does (`pg_type_typname_nsp_index`); and knex's "already locked" when its lock row is
 * not there yet (the other instance has made the table, not yet its row). Once both are there, knex's lock (a row
 * updated in the migrations' transaction) makes the others wait.
 */
const RACED_TABLE_CREATION = new Set(['42P07', '42710', '23505']);
const LOCK_ROW_MISSING = 'Migration table is already locked';
const MIGRATE_ATTEMPTS = 8;

const racedCreation = (err: unknown): boolean => {
  const { code, message } = err as { code?: unknown; message?: unknown };
  return (typeof code === 'string' && RACED_TABLE_CREATION.has(code)) || message === LOCK_ROW_MISSING;
};

/**
 * Brings the schema up to date; safe to run from several instances at once: knex takes a lock for the migrations,
 * and an instance that met another creating knex's own tables on an empty database tries again, a moment later
 * (about 1.4 s in all). Returns the names applied.
 */
export async function migrate(knex: Knex): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      const [, applied] = (await knex.migrate.latest(config())) as [number, string[]];
      return applied;
    } catch (err) {
      if (attempt >= MIGRATE_ATTEMPTS || !racedCreation(err)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
    }
  }
}

/** Rolls back every kit migration (tests and uninstall). */
export async function rollbackAll(knex: Knex): Promise<void> {
  await knex.migrate.rollback(config(), true);
}
