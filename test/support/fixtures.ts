/** Shared test fixtures: keys, a key ring, a migrated storage on a fresh database, and row inserts. */
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { aad, keyRing, knexStorage, type KnexStorage } from '../../index.js';
import { freshDatabase } from './postgres.js';

export const KEY_A = 'test-internal-key-aaaaaaaaaaaaaaaaaaaa';
export const KEY_B = 'test-internal-key-bbbbbbbbbbbbbbbbbbbb';
export const ENCRYPTION_KEYS = ['k2:' + Buffer.alloc(32, 2).toString('base64'), 'k1:' + Buffer.alloc(32, 1).toString('base64')];
export const ring = keyRing(ENCRYPTION_KEYS);

export interface TestDb {
  knex: Knex;
  storage: KnexStorage;
  drop(): Promise<void>;
}

/** A fresh database with the kit's schema. */
export async function migratedStorage(): Promise<TestDb> {
  const db = await freshDatabase();
  const storage = knexStorage({ knex: db.knex });
  await storage.migrate();
  return { knex: db.knex, storage, drop: () => db.drop() };
}

export interface DeviceSeed {
  tenantId: string;
  userId: string;
  method?: 'totp' | 'sms' | 'email';
  deviceName?: string;
  verified?: boolean;
  enabled?: boolean;
  secret?: string;
  createdAt?: Date;
  lastUsedAt?: Date | null;
}

/** Inserts an MFA device row directly (for list tests that must not depend on enrolment). */
export async function insertDevice(knex: Knex, seed: DeviceSeed): Promise<string> {
  const id = randomUUID();
  const sealed = ring.seal(seed.secret ?? 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', aad(seed.tenantId, seed.userId, id));
  const method = seed.method ?? 'totp';
  await knex('mfa_devices').insert({
    tenant_id: seed.tenantId,
    id,
    user_id: seed.userId,
    method,
    device_name: seed.deviceName ?? 'Phone',
    enabled: seed.enabled ?? true,
    verified: seed.verified ?? true,
    secret_key_id: sealed.keyId,
    secret_ciphertext: sealed.data,
    totp_algorithm: method === 'totp' ? 'SHA1' : null,
    totp_digits: method === 'totp' ? 6 : null,
    totp_period: method === 'totp' ? 30 : null,
    created_at: seed.createdAt ?? new Date(),
    last_used_at: seed.lastUsedAt ?? null,
  });
  return id;
}
