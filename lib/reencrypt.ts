/** Key rotation: moves every sealed column to the key ring's active key, in small batches, while the service keeps running. */
import type { Knex } from 'knex';
import { isProblemError } from './errors.js';
import type { KeyRing } from './keyring.js';
import { aad } from './keyring.js';
import { getDefaultLogger, type Logger } from './logger.js';
import { kitTransaction } from '../storage/knex/user-locks.js';

/** A table holding sealed values: unique on (tenant_id, id), associated data `aad(tenant_id, user_id, id)`. */
export interface SealedTable {
  table: string;
  /** Column with the key id. */
  keyIdColumn: string;
  /** Column with nonce ‖ ciphertext ‖ tag. */
  dataColumn: string;
}

/** The kit's sealed columns; a table that does not exist (a part not installed) is passed over. */
export const SEALED_TABLES: readonly SealedTable[] = [
  { table: 'mfa_devices', keyIdColumn: 'secret_key_id', dataColumn: 'secret_ciphertext' },
  { table: 'sync_records', keyIdColumn: 'vault_key_id', dataColumn: 'vault_ciphertext' },
];

/** Options of `reencrypt()`. */
export interface ReencryptOptions {
  knex: Knex;
  /** Must hold the active (new) key first and every key rows may still be sealed with. */
  keyRing: KeyRing;
  /**
   * Rows per transaction.
   * @default 200
   */
  batchSize?: number;
  /**
   * Progress and rows that cannot be opened (ids and key ids only).
   * @default pino at LOG_LEVEL on stdout
   */
  logger?: Logger;
  /**
   * Tables to walk.
   * @default SEALED_TABLES
   */
  tables?: readonly SealedTable[];
}

/** What `reencrypt()` did to one table. */
export interface ReencryptResult {
  table: string;
  /** Rows moved to the active key by this run. */
  rows: number;
  /** Rows that could not be opened (key not in the ring, or damaged); left as they were. */
  failed: number;
  /**
   * Rows still sealed with another key than the active one once this run had walked the table: the `failed` ones,
   * and any an instance wrote meanwhile with an older ring (whose first key is not the active one yet). Only when
   * this is 0 everywhere is no row left that needs an older key.
   */
  remaining: number;
}

/** Default rows per batch: small enough that each transaction holds its row locks for milliseconds. */
export const DEFAULT_REENCRYPT_BATCH_SIZE = 200;

interface SealedRow {
  tenant_id: string;
  user_id: string;
  id: string;
  key_id: string;
  data: Buffer;
}

/** Rows sealed under a key id the ring does not hold, by table and key id (`unreadableKeyIds`). */
export interface UnreadableKeyId {
  table: string;
  keyId: string;
  rows: number;
}

/**
 * The key ids of sealed rows (`SEALED_TABLES`) that `keyRing` does not hold, with how many rows each: what no instance on
 * this ring can open (each such row answers 500). One grouped scan of each table, for a start-up check.
 */
export async function unreadableKeyIds(knex: Knex, keyRing: KeyRing, tables: readonly SealedTable[] = SEALED_TABLES): Promise<UnreadableKeyId[]> {
  const found: UnreadableKeyId[] = [];
  for (const spec of tables) {
    const { rows } = await knex.raw<{ rows: Array<{ key_id: string; n: string }> }>('select ?? as key_id, count(*) as n from ?? where ?? <> all(?) group by ??', [
      spec.keyIdColumn,
      spec.table,
      spec.keyIdColumn,
      [...keyRing.keyIds],
      spec.keyIdColumn,
    ]);
    for (const row of rows) found.push({ table: spec.table, keyId: row.key_id, rows: Number(row.n) });
  }
  return found;
}

/** A key id of the ring whose key opened none of the rows sealed under that id that were tried (`mismatchedKeyIds`). */
export interface MismatchedKeyId {
  table: string;
  keyId: string;
  /** Rows tried, none of which opened. */
  tried: number;
}

/**
 * The key ids of the ring whose key is not the one their rows were sealed with: for each table and key id, up to
 * `sample` rows sealed under it are opened, and an id none of whose rows opens is reported. The same id with another
 * key (mistyped, or generated anew) passes `unreadableKeyIds` but opens nothing; one damaged row among good ones is
 * not reported. For a start-up check: one read per table and key id, which stops at its `sample`-th row (an id with few
 * rows left on a big table scans it, as `unreadableKeyIds` does).
 */
export async function mismatchedKeyIds(knex: Knex, keyRing: KeyRing, tables: readonly SealedTable[] = SEALED_TABLES, sample = 3): Promise<MismatchedKeyId[]> {
  const found: MismatchedKeyId[] = [];
  for (const spec of tables) {
    if (!(await knex.schema.hasTable(spec.table))) continue;
    for (const keyId of keyRing.keyIds) {
      const rows = (await knex(spec.table)
        .select('tenant_id', 'user_id', 'id', { data: spec.dataColumn })
        .where(spec.keyIdColumn, keyId)
        .limit(sample)) as Array<Omit<SealedRow, 'key_id'>>;
      const opens = (row: Omit<SealedRow, 'key_id'>): boolean => {
        try {
          keyRing.open({ keyId, data: row.data }, aad(row.tenant_id, row.user_id, String(row.id)));
          return true;
        } catch (err) {
          if (!isProblemError(err)) throw err;
          return false;
        }
      };
      if (rows.length > 0 && !rows.some(opens)) found.push({ table: spec.table, keyId, tried: rows.length });
    }
  }
  return found;
}

/**
 * Re-seals, with the active key, every row of the kit's tables sealed with another key, and reports
 * per existing table how many rows moved. No downtime: rows are walked in primary-key order, each
 * batch in its own short transaction, and each row is written only if it still holds exactly the
 * ciphertext that was read, so a row the service rewrote meanwhile is left alone. Safe to stop and
 * re-run; a second run finds nothing to do. Rows it cannot open are counted in `failed` and logged
 * by id, never by content.
 */
export async function reencrypt(options: ReencryptOptions): Promise<ReencryptResult[]> {
  const { knex, keyRing } = options;
  if (typeof knex !== 'function' || typeof keyRing?.seal !== 'function' || typeof keyRing.open !== 'function') {
    throw new TypeError('express-mfa-kit: reencrypt() needs { knex, keyRing }: reencrypt({ knex, keyRing: keyRing(process.env.MFA_ENCRYPTION_KEYS) })');
  }
  const batchSize = options.batchSize ?? DEFAULT_REENCRYPT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
    throw new TypeError('express-mfa-kit: reencrypt() option batchSize must be an integer from 1 to 10000');
  }
  const logger = options.logger ?? getDefaultLogger();
  const active = keyRing.activeKeyId;
  const results: ReencryptResult[] = [];

  for (const spec of options.tables ?? SEALED_TABLES) {
    if (!(await knex.schema.hasTable(spec.table))) continue;
    const result: ReencryptResult = { table: spec.table, rows: 0, failed: 0, remaining: 0 };
    let after: { tenantId: string; id: string } | undefined;
    for (;;) {
      const batch = await knex.transaction(async (trx) => {
        const query = trx(spec.table)
          .select('tenant_id', 'user_id', 'id', { key_id: spec.keyIdColumn, data: spec.dataColumn })
          .whereNot(spec.keyIdColumn, active)
          .orderBy([{ column: 'tenant_id' }, { column: 'id' }])
          .limit(batchSize);
        if (after) void query.andWhereRaw('(tenant_id, id) > (?, ?)', [after.tenantId, after.id]);
        const rows = (await query) as SealedRow[];
        for (const row of rows) {
          const where = aad(row.tenant_id, row.user_id, String(row.id));
          let sealed;
          try {
            sealed = keyRing.seal(keyRing.open({ keyId: row.key_id, data: row.data }, where), where);
          } catch (err) {
            if (!isProblemError(err)) throw err;
            result.failed += 1;
            logger.warn({ table: spec.table, tenant_id: row.tenant_id, id: row.id, key_id: row.key_id }, 'reencrypt: cannot open this row with the key ring (is its key missing from MFA_ENCRYPTION_KEYS?); left unchanged');
            continue;
          }
          const updated = await trx(spec.table)
            .where({ tenant_id: row.tenant_id, id: row.id, [spec.keyIdColumn]: row.key_id, [spec.dataColumn]: row.data })
            .update({ [spec.keyIdColumn]: sealed.keyId, [spec.dataColumn]: sealed.data });
          result.rows += updated;
        }
        return rows;
      }, kitTransaction());
      const last = batch[batch.length - 1];
      if (!last || batch.length < batchSize) break;
      after = { tenantId: last.tenant_id, id: String(last.id) };
    }
    const left = (await knex(spec.table).whereNot(spec.keyIdColumn, active).count({ n: '*' }).first()) as { n: string | number } | undefined;
    result.remaining = Number(left?.n ?? 0);
    logger.info({ table: spec.table, rows: result.rows, failed: result.failed, remaining: result.remaining, key_id: active }, 'reencrypt: table done');
    results.push(result);
  }
  return results;
}
