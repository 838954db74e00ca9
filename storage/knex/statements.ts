/**
 * The hot statements (trusted-device check on a cache miss, the trusted-device list, device listings, and each
 * verification's device list, lockout charge, replay guard and lockout reset) as named prepared statements: Postgres parses and plans each once per connection instead of
 * on every request, and pg sends Bind/Execute only. Timestamps are read as epoch milliseconds (`float8`),
 * which pg hands over through `parseFloat`, instead of text that its date parser takes apart per value
 * (40 dates a page). Columns are named, never `*`: a prepared `select *` fails once a migration adds a column.
 * They run on a connection of knex's pool (its limits, timeouts and health checks apply) but not through
 * knex's query runner, whose placeholder rewriting and bookkeeping cost about a third of the query's CPU.
 * knex's `query`, `query-response` and `query-error` events still see them (emitted only when listened to).
 *
 * Under load the hot reads also share statements: storage/coalesce.ts.
 *
 * `preparedStatements: false` in `knexStorage()` sends the same SQL unnamed (a pooler in transaction mode
 * that does not track prepared statements, e.g. PgBouncer before 1.21).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';

export interface Statement {
  /** Derived from the text: one name per text, whatever the connection. */
  readonly name: string;
  /** SQL with pg's `$1` placeholders. */
  readonly text: string;
}

/** A statement from SQL written with `?` placeholders (none may appear inside a literal). */
export function statement(sql: string): Statement {
  let n = 0;
  const text = sql.replace(/\?/g, () => `$${++n}`);
  return { name: `mfa_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`, text };
}

/** `(extract(epoch from <column>) * 1000)::float8 as <alias>`: a timestamp as epoch ms, null stays null. */
export const epochMs = (column: string, alias: string): string => `(extract(epoch from ${column}) * 1000)::float8 as ${alias}`;

/** An epoch-ms column back to a Date (null stays null). */
export const fromEpochMs = (ms: number | null): Date | null => (ms === null ? null : new Date(ms));

/** The part of a pooled pg connection used here. */
interface PgConnection {
  query(config: { name?: string; text: string; values: readonly Knex.RawBinding[] }): Promise<{ rows: unknown[] }>;
}

/** knex's client: its pool hands out pg connections (inside a transaction, the transaction's own). */
interface PooledClient {
  acquireConnection(): Promise<PgConnection>;
  releaseConnection(connection: PgConnection): Promise<void>;
}

/** The events knex emits for a query (`knex.on('query', …)`), so logging and metrics hooks see these reads too. */
interface QueryEvents {
  listenerCount(event: string): number;
  emit(event: string, ...args: unknown[]): boolean;
}

/**
 * A statement that lost a race to a concurrent one: a serialization failure (40001, only under a host's REPEATABLE READ
 * or SERIALIZABLE default) or a deadlock (40P01). Postgres rolled it back whole; on its own (not in a transaction) it
 * is run again, on fresh data, this many more times before the error goes up (a 503 to retry).
 */
const LOST_RACE_RETRIES = 2;
const lostRace = (err: unknown): boolean => {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40001' || code === '40P01';
};

/** Runs `st` with `bindings` (prepared unless `prepared` is false) on a connection of knex's pool; returns its rows. */
export async function query<R>(knex: Knex, st: Statement, bindings: readonly Knex.RawBinding[], prepared: boolean): Promise<R[]> {
  // A transaction's client hands out the transaction's connection: once it is done, that one is back in the pool.
  const trx = knex as unknown as { isTransaction?: boolean; isCompleted?: () => boolean };
  if (trx.isTransaction === true) {
    if (trx.isCompleted?.() === true) throw new Error('Transaction query already complete');
    return run<R>(knex, st, bindings, prepared);
  }
  for (let retries = LOST_RACE_RETRIES; ; retries--) {
    try {
      return await run<R>(knex, st, bindings, prepared);
    } catch (err) {
      if (retries === 0 || !lostRace(err)) throw err;
    }
  }
}

async function run<R>(knex: Knex, st: Statement, bindings: readonly Knex.RawBinding[], prepared: boolean): Promise<R[]> {
  const client = knex.client as unknown as PooledClient;
  const events = knex as unknown as QueryEvents;
  const observed = events.listenerCount('query') + events.listenerCount('query-response') + events.listenerCount('query-error') > 0;
  const described = observed ? { method: 'raw', sql: st.text, bindings, options: prepared ? { name: st.name } : {}, __knexQueryUid: randomUUID() } : undefined;
  const connection = await client.acquireConnection();
  try {
    if (described) events.emit('query', described);
    const response = await connection.query(prepared ? { name: st.name, text: st.text, values: bindings } : { text: st.text, values: bindings });
    if (described) events.emit('query-response', response, described);
    return response.rows as R[];
  } catch (err) {
    if (described) events.emit('query-error', err, described);
    throw err;
  } finally {
    await client.releaseConnection(connection);
  }
}
