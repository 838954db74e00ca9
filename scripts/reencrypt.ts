/**
 * `npm run reencrypt`: moves every sealed secret to the active (first) key of MFA_ENCRYPTION_KEYS,
 * online and re-runnable. Put the new key first and keep the old ones after it until this reports
 * 0 failed; then the old keys can go. Prints counts and key ids, never keys or secrets.
 */
import knexFactory from 'knex';
import { keyRing } from '../lib/keyring.js';
import { silentLogger } from '../lib/logger.js';
import { reencrypt } from '../lib/reencrypt.js';

const url = process.env.DATABASE_URL;
const keys = process.env.MFA_ENCRYPTION_KEYS;
if (!url || !keys?.trim()) {
  console.error('DATABASE_URL and MFA_ENCRYPTION_KEYS must be set: DATABASE_URL=postgres://… MFA_ENCRYPTION_KEYS=new:<base64>,old:<base64> npm run reencrypt');
  process.exit(2);
}
let ring;
try {
  ring = keyRing(keys);
} catch (err) {
  // keyRing's messages name the key id and what is wrong, never the key material.
  console.error(err instanceof Error ? err.message : 'MFA_ENCRYPTION_KEYS is not valid');
  process.exit(2);
}
const batchSize = process.env.REENCRYPT_BATCH_SIZE ? Number(process.env.REENCRYPT_BATCH_SIZE) : undefined;

const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 2 } });
try {
  console.log(`active key: ${ring.activeKeyId}; keys able to open: ${ring.keyIds.join(', ')}`);
  const results = await reencrypt({
    knex,
    keyRing: ring,
    ...(batchSize === undefined ? {} : { batchSize }),
    // Warnings carry table, tenant, row id and key id only.
    logger: { ...silentLogger, warn: (obj) => console.error(`cannot open: ${JSON.stringify(obj)}`) },
  });
  for (const r of results) console.log(`${r.table}: ${r.rows} re-encrypted, ${r.failed} failed`);
  if (results.length === 0) console.log('no sealed tables found (run `npm run migrate` first?)');
  process.exitCode = results.some((r) => r.failed > 0) ? 1 : 0;
} finally {
  await knex.destroy();
}
