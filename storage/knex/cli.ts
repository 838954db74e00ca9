/** What the command-line tools (`npm run migrate`, `reencrypt`, `cleanup`) share. */
import knexFactory, { type Knex } from 'knex';
import { summarizeError } from '../../lib/problem.js';

const quiet = (): void => {};

/**
 * knex (client `pg`) on `url` with a small pool, its own log lines off: a tool reports a failure itself, in one line
 * (`failureLine`); knex's lines carry a stack and, for a failed query, its SQL.
 */
export const cliKnex = (url: string, poolMax: number): Knex =>
  knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: poolMax }, log: { warn: quiet, error: quiet, debug: quiet, deprecate: quiet } });

/**
 * A failure in one line: the driver's code and its message without the SQL knex puts before it or a refused value
 * (`summarizeError`), e.g. `ECONNREFUSED (connect ECONNREFUSED 127.0.0.1:5432)` or knex's "Migration table is already
 * locked". Never the connection string: pg's messages do not quote it.
 */
export function failureLine(err: unknown): string {
  const { code, message } = summarizeError(err);
  return code === undefined ? message : `${code} (${message})`;
}
