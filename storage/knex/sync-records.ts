/**
 * Sync records on Postgres. Writes are decided by Postgres alone, so any number of instances can
 * race: a create is `INSERT … ON CONFLICT DO NOTHING`, an update is one compare-and-set `UPDATE`
 * on the sync token.
 */
import type { Knex } from 'knex';
import { aad } from '../../lib/keyring.js';
import type { NewSyncRecord, Page, PageQuery, SyncCreateResult, SyncRecord, SyncRecordChange, SyncRecordKey, SyncRecordStore, SyncWriteResult } from '../types.js';
import { kitTransaction, lockSyncRecords } from './user-locks.js';

export const SYNC_RECORDS_TABLE = 'sync_records';

/** A `sync_records` row as pg returns it. */
export interface SyncRecordRow {
  tenant_id: string;
  id: string;
  user_id: string;
  device_fingerprint: string;
  device_name: string;
  sync_token: string;
  vault_key_id: string;
  vault_ciphertext: Buffer;
  created_at: Date;
  last_sync_at: Date;
}

export function toSyncRecord(row: SyncRecordRow): SyncRecord {
  return {
    tenantId: row.tenant_id,
    id: row.id,
    userId: row.user_id,
    deviceFingerprint: row.device_fingerprint,
    deviceName: row.device_name,
    syncToken: row.sync_token,
    vault: { keyId: row.vault_key_id, data: row.vault_ciphertext },
    createdAt: row.created_at,
    lastSyncAt: row.last_sync_at,
  };
}

/**
 * The associated data a vault is sealed with (tenant, user, record id): a ciphertext moved to
 * another row or user does not open. Record ids carry the `devsync_` prefix, so they never equal
 * the id of another table's sealed value.
 */
export const syncRecordAad = (tenantId: string, userId: string, id: string): string => aad(tenantId, userId, id);

/**
 * Under REPEATABLE READ or SERIALIZABLE (a host's `default_transaction_isolation`), Postgres reports
 * a lost race as a serialization failure instead of updating nothing: the same outcome, a conflict.
 */
const isSerializationFailure = (err: unknown): boolean => typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '40001';

export class KnexSyncRecordStore implements SyncRecordStore {
  constructor(private readonly knex: Knex) {}

  private table() {
    return this.knex<SyncRecordRow>(SYNC_RECORDS_TABLE);
  }

  async list(tenantId: string, userId: string, page: PageQuery): Promise<Page<SyncRecord>> {
    const scoped = this.table().where({ tenant_id: tenantId, user_id: userId });
    // One round trip: the window count rides along with the page.
    const rows = (await scoped
      .clone()
      .select('*', this.knex.raw('count(*) over () as full_count'))
      .orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'desc' }])
      .limit(page.limit)
      .offset(page.offset)) as Array<SyncRecordRow & { full_count: string }>;
    const total = rows[0] ? Number(rows[0].full_count) : page.offset === 0 ? 0 : Number((await scoped.clone().count({ n: '*' }).first())?.n ?? 0);
    return { items: rows.map(toSyncRecord), total };
  }

  async get(tenantId: string, userId: string, id: string): Promise<SyncRecord | null> {
    const row = await this.table().where({ tenant_id: tenantId, user_id: userId, id }).first<SyncRecordRow | undefined>();
    return row ? toSyncRecord(row) : null;
  }

  async findByFingerprint(tenantId: string, userId: string, deviceFingerprint: string): Promise<SyncRecord | null> {
    const row = await this.table().where({ tenant_id: tenantId, user_id: userId, device_fingerprint: deviceFingerprint }).first<SyncRecordRow | undefined>();
    return row ? toSyncRecord(row) : null;
  }

  async create(record: NewSyncRecord, limits?: { maxRecords: number }): Promise<SyncCreateResult> {
    if (limits === undefined) return this.insertOnce(this.knex, record);
    // READ COMMITTED whatever the database's default: the count, read after the lock, must see the records of the
    // creates that held it before (a REPEATABLE READ snapshot is taken before the lock is granted).
    return this.knex.transaction(
      async (trx) => {
        await lockSyncRecords(trx, record.tenantId, record.userId);
        const mine = trx<SyncRecordRow>(SYNC_RECORDS_TABLE).where({ tenant_id: record.tenantId, user_id: record.userId });
        const count = Number((await mine.clone().count({ n: '*' }).first())?.n ?? 0);
        if (count < limits.maxRecords) return this.insertOnce(trx, record);
        // At the limit, the device's own record is still a conflict (a create that should have been an update).
        const own = await mine.clone().where({ device_fingerprint: record.deviceFingerprint }).first<SyncRecordRow | undefined>();
        return own ? { status: 'conflict' as const, current: toSyncRecord(own) } : { status: 'limit-reached' as const };
      },
      kitTransaction(),
    );
  }

  private async insertOnce(db: Knex, record: NewSyncRecord): Promise<SyncWriteResult> {
    const rows = await this.lostRaceAsEmpty(
      db<SyncRecordRow>(SYNC_RECORDS_TABLE)
        .insert({
          tenant_id: record.tenantId,
          id: record.id,
          user_id: record.userId,
          device_fingerprint: record.deviceFingerprint,
          device_name: record.deviceName,
          sync_token: record.syncToken,
          vault_key_id: record.vault.keyId,
          vault_ciphertext: record.vault.data,
        })
        // A concurrent creator of the same fingerprint waits for the winner's commit, then inserts nothing.
        .onConflict(['tenant_id', 'user_id', 'device_fingerprint'])
        .ignore()
        .returning<SyncRecordRow[]>('*'),
    );
    if (rows[0]) return { status: 'created', record: toSyncRecord(rows[0]) };
    const current = await db<SyncRecordRow>(SYNC_RECORDS_TABLE)
      .where({ tenant_id: record.tenantId, user_id: record.userId, device_fingerprint: record.deviceFingerprint })
      .first<SyncRecordRow | undefined>();
    return { status: 'conflict', current: current ? toSyncRecord(current) : null };
  }

  async updateIfToken(key: SyncRecordKey, expectedToken: string, change: SyncRecordChange): Promise<SyncWriteResult> {
    // Under READ COMMITTED a writer blocked on the row re-checks the WHERE against the winner's
    // version, finds a new token and updates nothing: exactly one of the racers wins.
    const rows = await this.lostRaceAsEmpty(
      this.table()
        .where({ tenant_id: key.tenantId, user_id: key.userId, device_fingerprint: key.deviceFingerprint, id: key.id, sync_token: expectedToken })
        .update({
          device_name: change.deviceName,
          sync_token: change.syncToken,
          vault_key_id: change.vault.keyId,
          vault_ciphertext: change.vault.data,
          last_sync_at: this.knex.fn.now(),
        })
        .returning<SyncRecordRow[]>('*'),
    );
    if (rows[0]) return { status: 'updated', record: toSyncRecord(rows[0]) };
    return { status: 'conflict', current: await this.findByFingerprint(key.tenantId, key.userId, key.deviceFingerprint) };
  }

  private async lostRaceAsEmpty(write: Promise<SyncRecordRow[]>): Promise<SyncRecordRow[]> {
    try {
      return await write;
    } catch (err) {
      if (isSerializationFailure(err)) return [];
      throw err;
    }
  }

  async delete(tenantId: string, userId: string, id: string, expectedToken?: string): Promise<boolean> {
    const n = await this.table()
      .where({ tenant_id: tenantId, user_id: userId, id, ...(expectedToken !== undefined && { sync_token: expectedToken }) })
      .delete();
    return n > 0;
  }
}
