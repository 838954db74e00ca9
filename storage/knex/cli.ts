/** What the command-line tools (`npm run migrate`, `reencrypt`, `cleanup`) share. */
import knexFactory, { type Knex } from 'knex';

const quiet = (): void => {};

/**
 * knex (client `pg`) on `url` with a small pool, its own log lines off: a tool reports a failure itself, in one line,
 * by the driver's code (`failureCode`); knex's lines carry a stack and, for a failed query, its SQL.
 */
export const cliKnex = (url: string, poolMax: number): Knex =>
  knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: poolMax }, log: { warn: quiet, error: quiet, debug: quiet, deprecate: quiet } });
