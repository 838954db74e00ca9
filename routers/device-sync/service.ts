/**
 * The device-sync use cases over storage and the key ring, returning status unions; only the
 * route handlers turn them into HTTP. Plaintext vaults live here only in memory, never in a log.
 */
import { isProblemError, ProblemError } from '../../lib/errors.js';
import type { PageQuery, SyncCreateResult, SyncRecord } from '../../storage/types.js';
import type { DeviceSyncRouterConfig } from './options.js';
import { newSyncRecordId, newSyncToken, openVault, sealVault, toDeviceSyncResponse, toUnreadableListItem, type DeviceSyncListItem, type DeviceSyncResponse, type WriteBody } from './vault.js';

/** What a write came to. `conflict` names the record's current token, or `null` when it no longer exists. */
export type WriteOutcome =
  | { status: 'created' | 'updated'; record: DeviceSyncResponse }
  | { status: 'conflict'; current: { id: string; syncToken: string } | null }
  | { status: 'limit-reached' };

/** What a delete came to: `conflict` when the record no longer carries the `sync_token` the caller named. */
export type DeleteOutcome = { status: 'deleted' | 'not-found' } | { status: 'conflict'; current: { id: string; syncToken: string } };

/** Creates whose record vanished between the conflict and the read are retried this often. */
const CREATE_ATTEMPTS = 3;

export interface SyncService {
  /**
   * A record whose vault does not open under a key the ring holds (a damaged row) is listed without it (logged, with
   * `requestId`); one sealed with a key id the ring does not hold fails the list (500).
   */
  list(tenantId: string, userId: string, page: PageQuery, requestId?: string): Promise<{ items: DeviceSyncListItem[]; total: number }>;
  get(tenantId: string, userId: string, id: string): Promise<DeviceSyncResponse | null>;
  write(tenantId: string, userId: string, body: WriteBody): Promise<WriteOutcome>;
  delete(tenantId: string, userId: string, id: string, expectedToken?: string): Promise<DeleteOutcome>;
}

export function syncService(config: DeviceSyncRouterConfig): SyncService {
  const { keyRing } = config;
  const store = config.storage.syncRecords;

  const present = (record: SyncRecord): DeviceSyncResponse => {
    let vault: string;
    try {
      vault = openVault(keyRing, record);
    } catch (err) {
      // Ids and key id only: enough to find the row, nothing of its content; logged with the request id by the error handler.
      if (!isProblemError(err)) throw err;
      throw ProblemError.from(err.key, { logFields: { reason: 'sync record vault did not decrypt', tenant_id: record.tenantId, record_id: record.id, key_id: record.vault.keyId } });
    }
    return toDeviceSyncResponse(record, vault);
  };

  const settle = (result: SyncCreateResult, vaultJson: string): WriteOutcome => {
    switch (result.status) {
      case 'conflict':
        return { status: 'conflict', current: result.current && { id: result.current.id, syncToken: result.current.syncToken } };
      case 'limit-reached':
        return result;
      case 'created':
      case 'updated':
        return { status: result.status, record: toDeviceSyncResponse(result.record, vaultJson) };
    }
  };

  async function create(tenantId: string, userId: string, body: WriteBody, vaultJson: string): Promise<WriteOutcome> {
    let outcome: WriteOutcome = { status: 'conflict', current: null };
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      const id = newSyncRecordId();
      const result = await store.create({
        tenantId,
        id,
        userId,
        deviceFingerprint: body.device_fingerprint,
        deviceName: body.device_name,
        syncToken: newSyncToken(),
        vault: sealVault(keyRing, tenantId, userId, id, vaultJson),
      }, { maxRecords: config.maxRecords });
      outcome = settle(result, vaultJson);
      // A conflict with no current record: it was deleted in between, so the fingerprint is free again.
      if (outcome.status !== 'conflict' || outcome.current !== null) return outcome;
    }
    return outcome;
  }

  async function update(tenantId: string, userId: string, body: WriteBody, token: string, vaultJson: string): Promise<WriteOutcome> {
    const existing = await store.findByFingerprint(tenantId, userId, body.device_fingerprint);
    if (!existing) return { status: 'conflict', current: null };
    // Plainly stale: answer without writing. Equal tokens still go through the compare-and-set,
    // which is what decides among concurrent writers.
    if (existing.syncToken !== token) return { status: 'conflict', current: { id: existing.id, syncToken: existing.syncToken } };
    const result = await store.updateIfToken(
      { tenantId, userId, deviceFingerprint: body.device_fingerprint, id: existing.id },
      token,
      { deviceName: body.device_name, syncToken: newSyncToken(), vault: sealVault(keyRing, tenantId, userId, existing.id, vaultJson) },
    );
    return settle(result, vaultJson);
  }

  return {
    async list(tenantId, userId, page, requestId) {
      const { items, total } = await store.list(tenantId, userId, page);
      const listed = items.map((record) => {
        try {
          return present(record);
        } catch (err) {
          // A key id this ring does not hold fails the list as before (500): in a rolling key rotation another instance
          // may hold it, and a client that overwrote the record listed without its vault would lose that vault.
          if (!isProblemError(err) || !keyRing.keyIds.includes(record.vault.keyId)) throw err;
          // As the MFA device list's destination that does not open: a warning, which a polling client repeats.
          config.logger.warn({ ...err.logFields, ...(requestId !== undefined && { request_id: requestId }) }, 'sync record listed without its vault: it did not decrypt');
          return toUnreadableListItem(record);
        }
      });
      return { items: listed, total };
    },
    async get(tenantId, userId, id) {
      const record = await store.get(tenantId, userId, id);
      return record && present(record);
    },
    write(tenantId, userId, body) {
      // The canonical form of the validated entries: every device reads back the same string.
      const vaultJson = JSON.stringify(body.totp_devices);
      const bytes = Buffer.byteLength(vaultJson);
      if (bytes > config.maxVaultBytes) {
        throw ProblemError.invalid('totp_devices', 'range', `totp_devices: must be at most ${config.maxVaultBytes} bytes as JSON (this vault is ${bytes})`);
      }
      const token = body.sync_token ?? undefined;
      return token === undefined ? create(tenantId, userId, body, vaultJson) : update(tenantId, userId, body, token, vaultJson);
    },
    async delete(tenantId, userId, id, expectedToken) {
      if (await store.delete(tenantId, userId, id, expectedToken)) return { status: 'deleted' };
      if (expectedToken === undefined) return { status: 'not-found' };
      // Nothing deleted: the record is gone, or it carries another token (a write since the caller's read).
      const current = await store.get(tenantId, userId, id);
      return current ? { status: 'conflict', current: { id: current.id, syncToken: current.syncToken } } : { status: 'not-found' };
    },
  };
}
