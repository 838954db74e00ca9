/**
 * The hot reads (trusted-device check on a cache miss, the trusted-device list, device listings, every
 * verification) as named prepared statements: Postgres parses and plans each once per connection instead of
 * on every request, and pg sends Bind/Execute only. Timestamps are read as epoch milliseconds (`float8`),
 * which pg hands over through `parseFloat`, instead of text that its date parser takes apart per value
 * (40 dates a page). Columns are named, never `*`: a prepared `select *` fails once a migration adds a column.
 *
 * `preparedStatements: false` in `knexStorage()` sends the same SQL unnamed (a pooler in transaction mode
 * that does not track prepared statements, e.g. PgBouncer before 1.21).
 */
import { createHash } from 'node:crypto';
import type { Knex } from 'knex';

export interface Statement {
  /** Derived from the text: one name per text, whatever the connection. */
  readonly name: string;
  /** SQL with knex's `?` placeholders. */
  readonly text: string;
}

export function statement(text: string): Statement {
  return { name: `mfa_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`, text };
}

/** `(extract(epoch from <column>) * 1000)::float8 as <alias>`: a timestamp as epoch ms, null stays null. */
export const epochMs = (column: string, alias: string): string => `(extract(epoch from ${column}) * 1000)::float8 as ${alias}`;

/** An epoch-ms column back to a Date (null stays null). */
export const fromEpochMs = (ms: number | null): Date | null => (ms === null ? null : new Date(ms));

/** Runs `st` with `bindings` (prepared unless `prepared` is false) and returns its rows. */
export async function query<R>(knex: Knex, st: Statement, bindings: readonly Knex.RawBinding[], prepared: boolean): Promise<R[]> {
  const raw = knex.raw<{ rows: R[] }>(st.text, bindings);
  const { rows } = await (prepared ? raw.options({ name: st.name }) : raw);
  return rows;
}
