/**
 * Benchmark data: users with TOTP devices of known secrets (inserted through knex, sealed with the
 * server's key ring), trusted devices through the HTTP API, and the bulk rows of the growth phase
 * (`INSERT … SELECT generate_series`). A small RFC 4226/6238 code generator of its own, independent of lib/.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { aad, type KeyRing } from '../../index.js';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** RFC 4226 HOTP, 6 digits, SHA-1 (the kit's default TOTP parameters). */
export function hotp(key: Buffer, counter: number): string {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const n = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, '0');
}

export const TOTP_PERIOD = 30;
export const currentStep = (nowMs = Date.now()): number => Math.floor(nowMs / 1000 / TOTP_PERIOD);

/** A user with one verified TOTP device whose secret the bench knows. */
export interface TotpUser {
  userId: string;
  key: Buffer;
}

/**
 * Inserts `count` users (`${prefix}${i}`), each with `devicesPerUser` verified TOTP devices, sealed with
 * `ring` exactly as the kit stores them (associated data: tenant, user, device id). Returns the first
 * device's key of every user.
 */
export async function insertTotpUsers(knex: Knex, ring: KeyRing, tenantId: string, prefix: string, count: number, devicesPerUser = 1): Promise<TotpUser[]> {
  const users: TotpUser[] = [];
  let batch: Record<string, unknown>[] = [];
  const flush = async () => {
    if (batch.length) await knex('mfa_devices').insert(batch);
    batch = [];
  };
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    const userId = `${prefix}${i}`;
    for (let d = 0; d < devicesPerUser; d++) {
      const key = randomBytes(20);
      if (d === 0) users.push({ userId, key });
      const id = randomUUID();
      const sealed = ring.seal(base32(key), aad(tenantId, userId, id));
      batch.push({
        tenant_id: tenantId,
        id,
        user_id: userId,
        method: 'totp',
        device_name: d === 0 ? 'Phone' : `Backup ${d}`,
        enabled: true,
        verified: true,
        secret_key_id: sealed.keyId,
        secret_ciphertext: sealed.data,
        totp_algorithm: 'SHA1',
        totp_digits: 6,
        totp_period: TOTP_PERIOD,
        created_at: new Date(now - (i * devicesPerUser + d) * 1000),
        verified_at: new Date(now),
      });
      if (batch.length >= 1000) await flush();
    }
  }
  await flush();
  return users;
}

/**
 * Hands out valid, never-repeated verification requests over many users. A code is single-use: the
 * server accepts a step only above the device's last accepted one, within ±1 step of now. So each user
 * is used at most at `step` and then `step + 1`; a user whose turn comes again within the same window
 * is skipped. With enough users (more than req/s × 30 s) nothing is ever skipped and every request is valid.
 */
export class VerifyCodes {
  private next = 0;
  private readonly lastStep: Int32Array;
  /** Requests for which no valid user was left (they are sent anyway and will fail). */
  exhausted = 0;

  constructor(private readonly users: readonly TotpUser[]) {
    this.lastStep = new Int32Array(users.length).fill(-1);
  }

  take(): { userId: string; code: string } {
    const step = currentStep();
    for (let tries = 0; tries < this.users.length; tries++) {
      const i = this.next;
      this.next = (this.next + 1) % this.users.length;
      const last = this.lastStep[i]!;
      const use = last < step ? step : last === step ? step + 1 : -1;
      if (use === -1) continue;
      this.lastStep[i] = use;
      const user = this.users[i]!;
      return { userId: user.userId, code: hotp(user.key, use) };
    }
    this.exhausted++;
    const user = this.users[this.next]!;
    return { userId: user.userId, code: hotp(user.key, step) };
  }
}

/** A trusted device the bench created, for the hot path. */
export interface TrustedSeed {
  userId: string;
  fingerprint: string;
}

/** Trusts `perUser` fingerprints for each of `users` through `POST /internal/session/trusted-devices`. */
export async function trustThroughApi(baseUrl: string, headers: Record<string, string>, users: readonly string[], perUser: number): Promise<TrustedSeed[]> {
  const todo: TrustedSeed[] = users.flatMap((userId) => Array.from({ length: perUser }, (_, d) => ({ userId, fingerprint: `fp-${userId}-${d}` })));
  const CONCURRENCY = 16;
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const seed = todo[next++]!;
      const res = await fetch(`${baseUrl}/internal/session/trusted-devices`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({
          user_id: seed.userId,
          device_fingerprint: seed.fingerprint,
          device_name: 'Laptop',
          device_type: 'desktop',
          browser: 'Firefox 140',
          os: 'Debian 12',
          ip: '192.0.2.10',
        }),
      });
      if (res.status !== 201) throw new Error(`seeding a trusted device: HTTP ${res.status} ${await res.text()}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return todo;
}

/**
 * Adds `rows` trusted devices spread over `users` other users in one statement, then ANALYZE, so the
 * growth phase measures the same queries on a table 1000× larger. Each bulk user also gets a generation
 * row, as a user whose devices went through the API would have.
 */
export async function bulkTrustedDevices(knex: Knex, tenantId: string, rows: number, users: number): Promise<void> {
  await knex.raw(
    `INSERT INTO trusted_devices (tenant_id, id, user_id, fingerprint, device_name, device_type, browser, os, ip, created_at, updated_at, trusted_until)
     SELECT ?, gen_random_uuid(), 'bulk-' || (g % ?), 'fp-bulk-' || g, 'Device ' || g, 'desktop', 'Firefox 140', 'Debian 12', '192.0.2.10',
            now() - make_interval(secs => g), now() - make_interval(secs => g), now() + interval '30 days'
     FROM generate_series(1, ?) AS g`,
    [tenantId, users, rows],
  );
  const hasGenerations = await knex.schema.hasTable('trusted_device_generations');
  if (hasGenerations) {
    await knex.raw(
      `INSERT INTO trusted_device_generations (tenant_id, user_id, generation)
       SELECT ?, 'bulk-' || g, 1 FROM generate_series(0, ? - 1) AS g ON CONFLICT DO NOTHING`,
      [tenantId, users],
    );
  }
  await knex.raw('ANALYZE');
}

/**
 * Copies every trusted device and user generation of `from` into `to` (a freshly migrated database), for the growth
 * phase's second database; returns the number of devices copied.
 */
export async function copyTrustedDevices(from: Knex, to: Knex): Promise<number> {
  const devices = (await from('trusted_devices').select('*')) as Array<Record<string, unknown>>;
  const generations = (await from('trusted_device_generations').select('*')) as Array<Record<string, unknown>>;
  if (devices.length) await to.batchInsert('trusted_devices', devices, 500);
  if (generations.length) await to.batchInsert('trusted_device_generations', generations, 500);
  return devices.length;
}
