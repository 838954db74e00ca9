/** `npm run migrate`: applies the kit's migrations to DATABASE_URL. */
import { cliKnex, failureLine } from './cli.js';
import { migrate } from './migrate.js';

const url = process.env.DATABASE_URL;
if (!url) {
  console.error('DATABASE_URL is not set: DATABASE_URL=postgres://user:pass@host:5432/db npm run migrate');
  process.exit(2);
}
const knex = cliKnex(url, 2);
try {
  const applied = await migrate(knex);
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'already up to date');
} catch (err) {
  console.error(`migrate failed: ${failureLine(err)}`);
  process.exitCode = 1;
} finally {
  await knex.destroy();
}
