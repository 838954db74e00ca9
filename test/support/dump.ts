/** A crude database dump for "nothing in plaintext" assertions: every row of every table in the current schema, text and bytes. */
import type { Knex } from 'knex';

export interface Dump {
  /** Rows read, over all tables. */
  rowCount: number;
  tables: string[];
  /** Whether `needle` occurs in any value: as text (case-insensitive) or as UTF-8 bytes inside a binary column. */
  contains(needle: string): boolean;
}

export async function dumpTables(knex: Knex): Promise<Dump> {
  const { rows: tables } = await knex.raw<{ rows: { name: string }[] }>(
    "select table_name as name from information_schema.tables where table_schema = current_schema() and table_type = 'BASE TABLE' order by 1",
  );
  const texts: string[] = [];
  const buffers: Buffer[] = [];
  let rowCount = 0;
  for (const { name } of tables) {
    // The row's text form covers every column type (bytea shows as hex there), plus the raw bytes of binary columns.
    const { rows } = await knex.raw<{ rows: { t: string }[] }>('select t::text as t from ?? t', [name]);
    for (const r of rows) texts.push(r.t);
    const raw = (await knex(name).select('*')) as Record<string, unknown>[];
    rowCount += raw.length;
    for (const row of raw) for (const v of Object.values(row)) if (Buffer.isBuffer(v)) buffers.push(v);
  }
  const haystack = texts.join('\n').toLowerCase();
  return {
    rowCount,
    tables: tables.map((t) => t.name),
    contains: (needle) => haystack.includes(needle.toLowerCase()) || buffers.some((b) => b.includes(Buffer.from(needle, 'utf8'))),
  };
}
