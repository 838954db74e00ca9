/**
 * The vault a device syncs: the request schema (entries validated one by one, errors pointing at
 * `totp_devices[3].secret`), the wire shape of seed 001, and sealing with the key ring.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { duplicateMemberMessage, firstDuplicateMember } from '../../lib/duplicate-members.js';
import type { KeyRing, Sealed } from '../../lib/keyring.js';
import { isoSeconds } from '../../lib/pagination.js';
import { MAX_TOTP_PERIOD, MIN_TOTP_PERIOD } from '../../lib/totp.js';
import { deviceNameText, displayText, isStorable, namedKeys, STORABLE_RULE, storableText } from '../../lib/validation.js';
import { syncRecordAad } from '../../storage/knex/sync-records.js';
import type { SyncRecord } from '../../storage/types.js';

/** Seed 001 `dto.DeviceSyncResponse`. */
export interface DeviceSyncResponse {
  id: string;
  device_fingerprint: string;
  device_name: string;
  sync_token: string;
  /** The decrypted entries as a JSON **string** (seed 001), e.g. `[{"secret":"JBSWY3DPEHPK3PXP"}]`. */
  totp_devices: string;
  created_at: string;
  last_sync_at: string;
}

/**
 * An item of the list: a record, or one whose vault does not open under a key the ring holds (a damaged row, a row
 * moved to another user), listed without `totp_devices` so that the others still sync and the client can overwrite it
 * (with its `sync_token`) or delete it; `GET /:id` of it is a 500. (A key id the ring does not hold fails the list.)
 */
export type DeviceSyncListItem = DeviceSyncResponse | (Omit<DeviceSyncResponse, 'totp_devices'> & { vault_unreadable: true });

/** A record whose vault could not be opened, as the list gives it: its response without `totp_devices`. */
export function toUnreadableListItem(record: SyncRecord): DeviceSyncListItem {
  const { totp_devices: _vault, ...fields } = toDeviceSyncResponse(record, '');
  return { ...fields, vault_unreadable: true };
}

/** Record ids: the seed's `devsync_` prefix and 128 random bits. */
export const SYNC_RECORD_ID = /^devsync_[0-9a-f]{32}$/;
export const newSyncRecordId = (): string => `devsync_${randomBytes(16).toString('hex')}`;
/** A new opaque sync token: 128 random bits, hex. */
export const newSyncToken = (): string => randomBytes(16).toString('hex');
/**
 * A `sync_token` as clients send it back (the body's member, the delete's query parameter). Storable text: the delete
 * compares it in SQL, where a NUL is an error of Postgres's, not a mismatch.
 */
export const SYNC_TOKEN = z
  .string({ error: 'must be the sync_token string of the last read or write' })
  .min(1)
  .max(128)
  .refine(isStorable, { message: STORABLE_RULE, params: { kind: 'format' } });

const BASE32 = /^[A-Za-z2-7]*=*$/;
/**
 * RFC 4648 §6: eight characters carry five bytes, and a last group of 2, 4, 5 or 7 data characters carries 1 to 4
 * whole bytes (1, 3 or 6 carry none); padded, the group is filled with `=` to eight. Other lengths cannot come
 * from any key, so an app could never make a code from them.
 */
const BASE32_PADDING: Readonly<Record<number, number>> = { 0: 0, 2: 6, 4: 4, 5: 3, 7: 1 };
/** At least 16 data characters (80 bits, the shortest secrets apps issue); at most 256 characters as sent, padding included. */
const BASE32_LENGTH = { min: 16, max: 256 };

/** What is wrong with a vault entry's `secret`, the field-violation kind and its message; `undefined` when nothing is. */
function base32Violation(s: string): { kind: 'range' | 'format'; message: string } | undefined {
  if (!BASE32.test(s)) return { kind: 'format', message: 'must be base32 (A-Z, 2-7, optional = padding)' };
  const data = s.replace(/=+$/, '');
  if (data.length < BASE32_LENGTH.min || s.length > BASE32_LENGTH.max) return { kind: 'range', message: `must be ${BASE32_LENGTH.min} to ${BASE32_LENGTH.max} base32 characters` };
  const padding = BASE32_PADDING[data.length % 8];
  const padded = s.length - data.length;
  if (padding === undefined || (padded !== 0 && padded !== padding)) {
    return { kind: 'format', message: 'must be base32 of whole bytes (RFC 4648): a length that no key has, or wrong = padding' };
  }
  return undefined;
}

/** An integer within bounds, every failure told the same way. */
const intFrom = (min: number, max: number) => {
  const message = `must be an integer from ${min} to ${max}`;
  return z.number({ error: message }).int({ message }).min(min, { message }).max(max, { message });
};

/** One TOTP entry of a vault. Unknown members are refused rather than dropped: nothing a client sends is lost silently. */
export const vaultEntrySchema = z.strictObject(
  {
    secret: z
      .string({ error: (iss) => (iss.input === undefined ? undefined : 'must be a base32 string') })
      .superRefine((s, ctx) => {
        const violation = base32Violation(s);
        if (violation) ctx.addIssue({ code: 'custom', message: violation.message, params: { kind: violation.kind } });
      }),
    // Shown to people by authenticator apps, as the device name is: display text (lib/validation.ts).
    issuer: displayText(0, 255).optional(),
    account: displayText(0, 255).optional(),
    digits: intFrom(6, 8).optional(),
    // The periods the kit's own devices take: a URI the kit hands out always fits the vault.
    period: intFrom(MIN_TOTP_PERIOD, MAX_TOTP_PERIOD).optional(),
    algorithm: z.enum(['SHA1', 'SHA256', 'SHA512'], { error: 'must be SHA1, SHA256 or SHA512' }).optional(),
  },
  {
    error: (iss) => {
      if (iss.code === 'unrecognized_keys') {
        return `unknown entry field ${namedKeys(iss.keys)}: allowed are secret, issuer, account, digits, period, algorithm`;
      }
      return iss.input === undefined ? undefined : 'must be an object {secret, issuer?, account?, digits?, period?, algorithm?}';
    },
  },
);

export type VaultEntry = z.output<typeof vaultEntrySchema>;

/**
 * `totp_devices` arrives as an array or as a JSON string holding one (as seed 001 sends it back). The string is held
 * to what `jsonBody()` holds the body to: a member named twice in one object is refused (I-JSON), not one of the two
 * kept without a word.
 */
const jsonStringToValue = (value: unknown, ctx: z.core.$RefinementCtx): unknown => {
  if (typeof value !== 'string') return value;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an array of entries, or a JSON string holding one', params: { kind: 'format' } });
    return z.NEVER;
  }
  const member = firstDuplicateMember(value);
  if (member === undefined) return parsed;
  ctx.addIssue({ code: 'custom', message: duplicateMemberMessage(member), params: { kind: 'duplicate' } });
  return z.NEVER;
};

/** Longest `device_name` of a sync record. */
export const MAX_SYNC_DEVICE_NAME_LENGTH = 128;

/** The body of `POST /` for a vault of at most `maxEntries` entries. Unknown top-level members are ignored (clients may echo a whole record back). */
export function writeBodySchema(maxEntries: number) {
  return z.object(
    {
      device_fingerprint: storableText(1, 256),
      // As `mfaDevicesRouter` takes a name: trimmed, display text, not blank.
      device_name: deviceNameText(MAX_SYNC_DEVICE_NAME_LENGTH),
      totp_devices: z.preprocess(
        jsonStringToValue,
        z
          .array(vaultEntrySchema, { error: (iss) => (iss.input === undefined ? undefined : 'must be an array of entries, or a JSON string holding one') })
          .max(maxEntries, { message: `must hold at most ${maxEntries} entries` }),
      ),
      // null is "no token", as some clients send absent members.
      sync_token: SYNC_TOKEN.nullish(),
    },
    { error: (iss) => (iss.input === undefined ? 'a JSON object body is required' : 'the body must be a JSON object') },
  );
}

export type WriteBody = z.output<ReturnType<typeof writeBodySchema>>;

/** Seals a vault's JSON for one record. */
export const sealVault = (keyRing: KeyRing, tenantId: string, userId: string, id: string, vaultJson: string): Sealed =>
  keyRing.seal(vaultJson, syncRecordAad(tenantId, userId, id));

/** Opens a record's vault; throws the key ring's 500 `DECRYPTION_FAILED` Problem when it does not open. */
export const openVault = (keyRing: KeyRing, record: SyncRecord): string =>
  keyRing.openText(record.vault, syncRecordAad(record.tenantId, record.userId, record.id));

export function toDeviceSyncResponse(record: SyncRecord, vaultJson: string): DeviceSyncResponse {
  return {
    id: record.id,
    device_fingerprint: record.deviceFingerprint,
    device_name: record.deviceName,
    sync_token: record.syncToken,
    totp_devices: vaultJson,
    created_at: isoSeconds(record.createdAt),
    last_sync_at: isoSeconds(record.lastSyncAt),
  };
}
