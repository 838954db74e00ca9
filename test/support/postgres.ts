/**
 * Fresh, isolated PostgreSQL databases for tests.
 *
 * - With `DATABASE_URL` set, databases are created on that server (the URL
 *   must name a role allowed to CREATE DATABASE; its database is only used
 *   as the maintenance connection).
 * - Without it, ONE embedded Postgres per mocha process is started lazily on
 *   first use in a temporary directory, and stopped (directory removed) by the
 *   root hook in test/support/hooks.ts.
 *
 * Every `freshDatabase()` is a brand-new `mfa_test_<random>` database with its
 * own multi-connection knex pool; `drop()` destroys the pool and drops the
 * database. Databases a test forgot to drop are dropped at the end of the run.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
// The default export: knex is CommonJS, and Node's ESM loader finds no named `knex` export outside mocha.
import createKnex, { type Knex } from 'knex';
import pg from 'pg';

export interface FreshDatabase {
  /** Connection URL of the new database. */
  url: string;
  name: string;
  /** knex on the new database: client `pg`, pool min 0 / max 8. */
  knex: Knex;
  /** Destroy the knex pool and drop the database (WITH (FORCE)). Idempotent. */
  drop(): Promise<void>;
}

interface EmbeddedServer {
  url: string;
  dir: string;
  stop(): Promise<void>;
}

let embedded: Promise<EmbeddedServer> | undefined;
const live = new Map<string, FreshDatabase>();

async function startEmbedded(): Promise<EmbeddedServer> {
  // Imported lazily: the library installs process exit hooks on import, and
  // it is not needed at all when DATABASE_URL is given.
  const { startEmbeddedPostgres } = await import('../../examples/embedded-postgres.js');
  // mkdtemp creates a 0700 directory; the data dir itself is handed over to
  // the `postgres` user when running as root, so it is the mkdtemp directory.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mfa-kit-pg-'));
  try {
    const server = await startEmbeddedPostgres({
      dataDir: dir,
      database: 'postgres',
      // A test server: durability is irrelevant, speed and headroom are not.
      settings: {
        fsync: 'off',
        synchronous_commit: 'off',
        full_page_writes: 'off',
        max_connections: 200,
      },
    });
    process.once('exit', () => killLeftoverPostmaster(dir));
    return { url: server.url, dir, stop: () => server.stop() };
  } catch (err) {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(
      `Could not start an embedded Postgres for the tests (set DATABASE_URL to use an existing server):\n${message}`,
      { cause: err },
    );
  }
}

/** Last-resort cleanup if the process exits without the root hook having run. */
function killLeftoverPostmaster(dir: string): void {
  try {
    const pid = Number.parseInt(readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
    if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGQUIT');
  } catch {
    // Not running (any more): nothing to do.
  }
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // Best effort.
  }
}

/**
 * URL of the maintenance connection on the test server: `DATABASE_URL` or the
 * per-process embedded server (started on first call).
 */
export async function adminUrl(): Promise<string> {
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  embedded ??= startEmbedded();
  return (await embedded).url;
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

async function admin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: await adminUrl() });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function dropDatabase(name: string): Promise<void> {
  await admin(async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
  });
}

export async function freshDatabase(): Promise<FreshDatabase> {
  const name = `mfa_test_${randomBytes(8).toString('hex')}`;
  const server = await adminUrl();
  await admin(async (client) => {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
  });
  const url = withDatabase(server, name);
  const knex = createKnex({
    client: 'pg',
    connection: url,
    pool: { min: 0, max: 8 },
  });

  let dropped: Promise<void> | undefined;
  const db: FreshDatabase = {
    url,
    name,
    knex,
    drop: () => {
      dropped ??= (async () => {
        live.delete(name);
        await knex.destroy();
        await dropDatabase(name);
      })();
      return dropped;
    },
  };
  live.set(name, db);
  return db;
}

/** Root-hook cleanup: drop forgotten databases, stop the embedded server. */
export async function stopPostgres(): Promise<void> {
  const errors: unknown[] = [];
  for (const db of [...live.values()]) {
    await db.drop().catch((err: unknown) => errors.push(err));
  }
  if (embedded !== undefined) {
    const pending = embedded;
    embedded = undefined;
    const server = await pending.catch(() => undefined);
    if (server !== undefined) {
      await server.stop().catch((err: unknown) => errors.push(err));
      await rm(server.dir, { recursive: true, force: true }).catch((err: unknown) => errors.push(err));
    }
  }
  if (errors.length > 0) {
    throw new AggregateError(errors, 'test Postgres cleanup failed');
  }
}
