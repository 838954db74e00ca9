/**
 * `npm run reencrypt`: moves every sealed secret to the active (first) key of MFA_ENCRYPTION_KEYS,
 * online and re-runnable. Put the new key first and keep the old ones after it until this reports
 * 0 failed; then the old keys can go. Prints counts and key ids, never keys or secrets.
 * `npm run reencrypt -- --dry-run` only counts the rows not on the active key, by key id, and changes nothing.
 */
import type { Knex } from 'knex';
import { keyRing, type KeyRing } from '../lib/keyring.js';
import { silentLogger } from '../lib/logger.js';
import { reencrypt, SEALED_TABLES } from '../lib/reencrypt.js';
import { cliKnex, failureLine } from '../storage/knex/cli.js';

const USAGE = 'DATABASE_URL=postgres://… MFA_ENCRYPTION_KEYS=new:<base64>,old:<base64> [REENCRYPT_BATCH_SIZE=200] npm run reencrypt [-- --dry-run]';

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--dry-run');
if (unknown.length > 0) {
  // Nothing is run on an argument this does not know: `--dryrun` must not re-encrypt.
  console.error(`unknown argument ${JSON.stringify(unknown[0]!.slice(0, 40))}: ${USAGE}`);
  process.exit(2);
}
// `npm run reencrypt --dry-run` (without `--`) hands the flag to npm, which runs this with no argument and sets this.
const dryRun = args.includes('--dry-run') || process.env.npm_config_dry_run === 'true';

const url = process.env.DATABASE_URL;
const keys = process.env.MFA_ENCRYPTION_KEYS;
if (!url || !keys?.trim()) {
  console.error(`DATABASE_URL and MFA_ENCRYPTION_KEYS must be set: ${USAGE}`);
  process.exit(2);
}
let ring: KeyRing;
try {
  ring = keyRing(keys);
} catch (err) {
  // keyRing's messages name the key id and what is wrong, never the key material.
  console.error(err instanceof Error ? err.message : 'MFA_ENCRYPTION_KEYS is not valid');
  process.exit(2);
}
const batchText = process.env.REENCRYPT_BATCH_SIZE;
if (batchText !== undefined && !(/^[1-9]\d{0,4}$/.test(batchText) && Number(batchText) <= 10_000)) {
  console.error(`REENCRYPT_BATCH_SIZE must be a whole number from 1 to 10000: ${USAGE}`);
  process.exit(2);
}
const batchSize = batchText === undefined ? undefined : Number(batchText);

/** Rows of each sealed table not on `active`, by key id: what a run would move. */
async function pending(knex: Knex, active: string): Promise<void> {
  let tables = 0;
  for (const spec of SEALED_TABLES) {
    if (!(await knex.schema.hasTable(spec.table))) continue;
    tables++;
    const rows = await knex(spec.table)
      .select({ keyId: spec.keyIdColumn })
      .count({ n: '*' })
      .whereNot(spec.keyIdColumn, active)
      .groupBy(spec.keyIdColumn)
      .orderBy(spec.keyIdColumn);
    const byKey = (rows as Array<{ keyId: string; n: string | number }>).map((r) => `${Number(r.n)} on ${r.keyId}${ring.keyIds.includes(r.keyId) ? '' : ' (not in MFA_ENCRYPTION_KEYS: cannot open)'}`);
    console.log(`${spec.table}: ${byKey.length ? byKey.join(', ') : 'none'} to re-encrypt (dry run: nothing changed)`);
  }
  if (tables === 0) console.log('no sealed tables found (run `npm run migrate` first?)');
}

const knex = cliKnex(url, 2);
try {
  console.log(`active key: ${ring.activeKeyId}; keys able to open: ${ring.keyIds.join(', ')}`);
  if (dryRun) {
    await pending(knex, ring.activeKeyId);
  } else {
    const results = await reencrypt({
      knex,
      keyRing: ring,
      ...(batchSize === undefined ? {} : { batchSize }),
      // Warnings carry table, tenant, row id and key id only.
      logger: { ...silentLogger, warn: (obj) => console.error(`cannot open: ${JSON.stringify(obj)}`) },
    });
    for (const r of results) console.log(`${r.table}: ${r.rows} re-encrypted, ${r.failed} failed, ${r.remaining} still on another key than ${ring.activeKeyId}`);
    if (results.length === 0) console.log('no sealed tables found (run `npm run migrate` first?)');
    const left = results.reduce((n, r) => n + r.remaining, 0);
    if (left > 0) {
      console.error(
        `${left} row(s) still need an older key: keep it in MFA_ENCRYPTION_KEYS. Rows that failed need their key back in the ring; ` +
          `the others were written meanwhile by an instance whose first key is not ${ring.activeKeyId} yet: deploy the ring everywhere, then run this again.`,
      );
    }
    process.exitCode = results.some((r) => r.failed > 0 || r.remaining > 0) ? 1 : 0;
  }
} catch (err) {
  console.error(`reencrypt failed: ${failureLine(err)}; the batches before it stay re-encrypted, run it again`);
  process.exitCode = 1;
} finally {
  await knex.destroy();
}
