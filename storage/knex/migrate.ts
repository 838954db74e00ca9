/** Runs the kit's migrations with knex's migrator (own table `mfa_kit_migrations`, so it coexists with the host's). */
import type { Knex } from 'knex';
import { MIGRATIONS, type Migration } from './migrations/index.js';
import { kitTransaction } from './user-locks.js';

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

/** The kit's advisory-lock namespace (storage/knex/user-locks.ts); this key: a run of the migrations, knex's own tables made first. */
const LOCK_CLASS_MIGRATIONS = 0x4d46_0007;

/**
 * knex's own tables (`mfa_kit_migrations`, `mfa_kit_migrations_lock`) and the lock's one row, made as knex makes them
 * but under a transaction-scoped advisory lock. knex's lock lives in those tables, so knex does not serialise their
 * making: instances starting together on an empty database met `relation … already exists` or `type … already
 * exists`, and two of them that both found the lock table empty each put a row in it, after which knex's lock ("update
 * … where is_locked = 0", which must change exactly one row) refused every later run. A second row, left by such a
 * race before, is removed here.
 */
async function prepareMigrationTables(trx: Knex.Transaction): Promise<void> {
  const lockTable = `${MIGRATIONS_TABLE}_lock`;
  await trx.raw('select pg_advisory_xact_lock(?, 0)', [LOCK_CLASS_MIGRATIONS]);
  if (!(await trx.schema.hasTable(MIGRATIONS_TABLE))) {
    await trx.schema.createTable(MIGRATIONS_TABLE, (t) => {
      t.increments();
      t.string('name');
      t.integer('batch');
      t.timestamp('migration_time');
    });
  }
  if (!(await trx.schema.hasTable(lockTable))) {
    await trx.schema.createTable(lockTable, (t) => {
      t.increments('index').primary();
      t.integer('is_locked');
    });
  }
  const rows = (await trx(lockTable).select('index').orderBy('index')) as Array<{ index: number }>;
  if (rows.length === 0) await trx(lockTable).insert({ is_locked: 0 });
  if (rows.length > 1) await trx(lockTable).where('index', '>', rows[0]!.index).delete();
}

/**
 * Brings the schema up to date; safe to run from several instances at once: one transaction, READ COMMITTED whatever
 * the database's default (`kitTransaction`), holds the advisory lock from the making of knex's tables
 * (`prepareMigrationTables`) to the last migration, so the others wait for it and then find nothing to do. (Under
 * REPEATABLE READ or SERIALIZABLE knex's own lock, a row update, answers a waiting instance with a serialization
 * failure instead.) Returns the names applied.
 */
export async function migrate(knex: Knex): Promise<string[]> {
  return knex.transaction(async (trx) => {
    await prepareMigrationTables(trx);
    const [, applied] = (await trx.migrate.latest(config())) as [number, string[]];
    return applied;
  }, kitTransaction());
}

/** Rolls back every kit migration (tests and uninstall). */
export async function rollbackAll(knex: Knex): Promise<void> {
  await knex.migrate.rollback(config(), true);
}
