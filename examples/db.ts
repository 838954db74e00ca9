/**
 * `createKnex(url)`: the example server's knex on PostgreSQL, with every wait bounded so a slow,
 * stopped or frozen database turns into a quick 503 instead of a hanging request.
 */
import os from 'node:os';
import knexFactory, { type Knex } from 'knex';
import type { Logger } from '../lib/logger.js';
import { throttledWarn } from '../lib/throttled-log.js';

export interface DbTimeouts {
  /** Server-side `statement_timeout` (includes lock waits): a stuck query is cancelled (57014 → 503). @default 5000 */
  statementTimeoutMs?: number;
  /** Opening a TCP connection + Postgres start-up handshake. @default 3000 */
  connectTimeoutMs?: number;
  /** Waiting for a pooled connection (pool exhausted, or creation failing). @default 4000 */
  acquireTimeoutMs?: number;
  /**
   * Client-side cap on one query, for a server that no longer answers at all (frozen host, network
   * partition) where `statement_timeout` never fires. @default statementTimeoutMs + 1000
   */
  queryTimeoutMs?: number;
  /** Largest number of pooled connections. @default twice the cores, at least 4 (`DEFAULT_POOL_MAX`) */
  poolMax?: number;
}

export interface CreateKnexOptions extends DbTimeouts {
  /** Where knex's own warnings go (e.g. "Connection Error: …" when a pooled connection died); never SQL. */
  logger?: Logger;
}

/** How long knex waits for a transaction's ROLLBACK before it gives up on it (knex/lib/execution/transaction.js). */
const KNEX_ROLLBACK_WAIT_MS = 5000;

/**
 * The longest one database statement can keep a request waiting with `timeouts` before it fails (and the request
 * answers 503): a pooled connection's wait, then the client-side cap on the query, then, inside a transaction, knex's
 * wait for the ROLLBACK that follows. A stopping server gives its in-flight requests at least this long.
 */
export function longestStatementWaitMs(timeouts: DbTimeouts = {}): number {
  const statement = timeouts.statementTimeoutMs ?? 5000;
  const query = timeouts.queryTimeoutMs ?? statement + 1000;
  return (timeouts.acquireTimeoutMs ?? 4000) + query + Math.min(query, KNEX_ROLLBACK_WAIT_MS);
}

/** The longest database timeout one may set: an hour. */
export const MAX_DB_TIMEOUT_MS = 3_600_000;

/** The defaults, read from `DB_STATEMENT_TIMEOUT_MS`, `DB_CONNECT_TIMEOUT_MS`, `DB_ACQUIRE_TIMEOUT_MS`, `DB_POOL_MAX` when set. */
export function timeoutsFromEnv(env: NodeJS.ProcessEnv = process.env): DbTimeouts {
  // At most an hour: Node's timers take at most 2^31 - 1 ms (24.8 days) and fire at once past it, and pg's read
  // timeout is the statement's plus a margin.
  const read = (name: string, max: number): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new TypeError(`${name} must be an integer from 1 to ${max} (${name.endsWith('_MS') ? 'milliseconds' : 'connections'}), got '${raw.slice(0, 32)}'`);
    return n;
  };
  const out: DbTimeouts = {};
  const statement = read('DB_STATEMENT_TIMEOUT_MS', MAX_DB_TIMEOUT_MS);
  const connect = read('DB_CONNECT_TIMEOUT_MS', MAX_DB_TIMEOUT_MS);
  const acquire = read('DB_ACQUIRE_TIMEOUT_MS', MAX_DB_TIMEOUT_MS);
  const poolMax = read('DB_POOL_MAX', 1000);
  if (statement !== undefined) out.statementTimeoutMs = statement;
  if (connect !== undefined) out.connectTimeoutMs = connect;
  if (acquire !== undefined) out.acquireTimeoutMs = acquire;
  if (poolMax !== undefined) out.poolMax = poolMax;
  return out;
}

/**
 * A knex log message made safe to log: its first line, without the SQL knex puts in front of a
 * driver error (`Connection Error: Error: select … - read ECONNRESET` → `Connection Error: read ECONNRESET`).
 */
export function scrubKnexMessage(message: unknown): string {
  if (typeof message !== 'string') return 'knex message';
  const first = message.split('\n', 1)[0] ?? '';
  const cut = first.lastIndexOf(' - ');
  const label = /^[A-Za-z][\w ]*:/.exec(first)?.[0] ?? '';
  const text = cut === -1 ? first : `${label} ${first.slice(cut + 3)}`.trim();
  // Belt and braces: a message that still reads like SQL is not logged at all.
  return /\b(select|insert|update|delete|from|where)\b/i.test(text) ? `${label} (message withheld: it held query text)`.trim() : text.slice(0, 200);
}

/**
 * Pool size per process: about two connections per core (PostgreSQL's and HikariCP's rule of thumb). More
 * connections than the database can run at once only queue inside Postgres, with a backend process each to
 * wake and switch to, on the same cores as the server when both run on one machine.
 */
export const DEFAULT_POOL_MAX = Math.max(4, 2 * os.availableParallelism());

/** knex (client `pg`) on `url` with the bounded timeouts above; one helper for the server and the fault tests. */
export function createKnex(url: string, options: CreateKnexOptions = {}): Knex {
  const statementTimeoutMs = options.statementTimeoutMs ?? 5000;
  const logger = options.logger;
  // knex logs through console by default, and its "Connection Error" warnings carry the failed query's SQL. While the
  // database is down it warns once per failed connection attempt (hundreds a second under load): at most one line
  // per 10 s, with the count of those left out, as the cache's warnings.
  const warn = logger && throttledWarn(logger);
  const log = (level: 'warn' | 'error' | 'debug') => (message: unknown) => {
    if (level === 'warn') warn?.({ component: 'knex' }, scrubKnexMessage(message));
    else logger?.[level]({ component: 'knex' }, scrubKnexMessage(message));
  };
  return knexFactory({
    client: 'pg',
    connection: {
      connectionString: url,
      statement_timeout: statementTimeoutMs,
      // A session left inside a transaction (its client gone quiet) gives up its row locks after this; the kit's
      // transactions never wait on a client between statements.
      idle_in_transaction_session_timeout: 2 * statementTimeoutMs,
      query_timeout: options.queryTimeoutMs ?? statementTimeoutMs + 1000,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
      // Detect a peer that vanished without a FIN (host down) on idle pooled connections.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    },
    pool: { min: 0, max: options.poolMax ?? DEFAULT_POOL_MAX },
    acquireConnectionTimeout: options.acquireTimeoutMs ?? 4000,
    log: { warn: log('warn'), error: log('error'), debug: log('debug'), deprecate: log('warn') },
  });
}
