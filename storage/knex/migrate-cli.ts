/** `npm run migrate`: applies the kit's migrations to DATABASE_URL. */
import knexFactory from 'knex';
import { migrate } from './migrate.js';

const url = process.env.DATABASE_URL;
if (!url) {
  console.error('DATABASE_URL is not set: DATABASE_URL=postgres://user:pass@host:5432/db npm run migrate');
  process.exit(2);
}
const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 2 } });
try {
  const applied = await migrate(knex);
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'already up to date');
} finally {
  await knex.destroy();
}
