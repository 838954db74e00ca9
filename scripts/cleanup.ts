/**
 * `npm run cleanup`: deletes the rows that expired (storage/knex/cleanup.ts), online and re-runnable; run it
 * from cron. CLEANUP_KEEP_LAST keeps expired rows that long first: `30d`, `12h`, `90m`, `45s` or seconds
 * (default 0). Prints the rows deleted per table, never a row.
 */
import { cleanupExpired, parseDurationSeconds } from '../storage/knex/cleanup.js';
import { cliKnex, failureLine } from '../storage/knex/cli.js';

const USAGE = 'DATABASE_URL=postgres://… [CLEANUP_KEEP_LAST=30d] [CLEANUP_BATCH_SIZE=1000] npm run cleanup';
const url = process.env.DATABASE_URL;
if (!url) {
  console.error(`DATABASE_URL is not set: ${USAGE}`);
  process.exit(2);
}
const keepLastSeconds = parseDurationSeconds(process.env.CLEANUP_KEEP_LAST ?? '0');
if (keepLastSeconds === null) {
  console.error(`CLEANUP_KEEP_LAST must be a whole number of seconds or a number with s, m, h or d (e.g. 30d): ${USAGE}`);
  process.exit(2);
}
const batchText = process.env.CLEANUP_BATCH_SIZE;
const batchSize = batchText === undefined ? undefined : /^\d{1,6}$/.test(batchText) ? Number(batchText) : NaN;

const knex = cliKnex(url, 1);
try {
  const now = new Date();
  const results = await cleanupExpired({ knex, keepLastSeconds, now, ...(batchSize === undefined ? {} : { batchSize }) });
  console.log(`removed what expired before ${new Date(now.getTime() - keepLastSeconds * 1000).toISOString()}`);
  for (const r of results) console.log(`${r.table}: ${r.deleted} deleted`);
  if (results.length === 0) console.log('no kit tables found (run `npm run migrate` first?)');
} catch (err) {
  // Option errors are ours and say what is wrong; anything else in one line, without SQL.
  console.error(err instanceof TypeError ? err.message : `cleanup failed: ${failureLine(err)}; the batches before it stay deleted, run it again`);
  process.exitCode = err instanceof TypeError ? 2 : 1;
} finally {
  await knex.destroy();
}
