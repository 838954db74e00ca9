/** Test helpers for trusted devices: app instances with their own knex pool and a query counter, direct row inserts. */
import { randomUUID } from 'node:crypto';
import express from 'express';
import { knex as createKnex, type Knex } from 'knex';
import request from 'supertest';
import { internalRouter, knexStorage, silentLogger, type TrustedDeviceCache, type TrustedDeviceSettings } from '../../index.js';
import { KEY_A } from './fixtures.js';

export const TD = '/internal/session/trusted-devices';

/** One "instance" of the service: its own Express app and its own knex pool on the shared database. */
export interface Instance {
  app: express.Express;
  knex: Knex;
  /** SQL of every query this instance's pool ran, in order. */
  queries: string[];
  /** Queries run while `fn` ran, leaving out the background epoch refresh. */
  queriesDuring<T>(fn: () => Promise<T>): Promise<{ result: T; sql: string[] }>;
  destroy(): Promise<void>;
}

export function instance(url: string, cache: TrustedDeviceCache | undefined, settings: TrustedDeviceSettings = {}): Instance {
  const knex = createKnex({ client: 'pg', connection: url, pool: { min: 0, max: 4 } });
  const queries: string[] = [];
  knex.on('query', (q: { sql: string }) => queries.push(q.sql));
  const app = express();
  app.use('/internal', internalRouter({ storage: knexStorage({ knex }), internalKeys: [KEY_A], logger: silentLogger, ...(cache && { cache }), trustedDevices: settings }));
  return {
    app,
    knex,
    queries,
    async queriesDuring(fn) {
      const start = queries.length;
      const result = await fn();
      return { result, sql: queries.slice(start) };
    },
    destroy: () => knex.destroy(),
  };
}

export const headers = (tenant = 'acme'): Record<string, string> => ({ 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': tenant });

export function get(app: express.Express, path: string, tenant = 'acme') {
  return request(app).get(path).set(headers(tenant));
}
export function post(app: express.Express, body: unknown, tenant = 'acme') {
  return request(app).post(TD).set(headers(tenant)).send(body as object);
}
export function del(app: express.Express, path: string, tenant = 'acme') {
  return request(app).delete(path).set(headers(tenant));
}
export const check = (app: express.Express, user: string, fp: string, tenant = 'acme') =>
  get(app, `${TD}/check?user_id=${encodeURIComponent(user)}&device_fingerprint=${encodeURIComponent(fp)}`, tenant);

export interface TrustedRowSeed {
  tenantId: string;
  userId: string;
  fingerprint?: string;
  deviceName?: string | null;
  createdAt?: Date;
  trustedUntil?: Date;
}

/** Inserts a trusted device directly (lists with exact times, expired rows). */
export async function insertTrusted(knex: Knex, seed: TrustedRowSeed): Promise<string> {
  const id = randomUUID();
  await knex('trusted_devices').insert({
    tenant_id: seed.tenantId,
    id,
    user_id: seed.userId,
    fingerprint: seed.fingerprint ?? `fp-${id}`,
    device_name: seed.deviceName ?? null,
    created_at: seed.createdAt ?? new Date(),
    updated_at: seed.createdAt ?? new Date(),
    trusted_until: seed.trustedUntil ?? new Date(Date.now() + 86_400_000),
  });
  return id;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
