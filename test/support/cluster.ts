/**
 * "Instances" of the example app for multi-instance and fault tests: each its own Express app, its own
 * knex pool (configured as the example server's) and its own ioredis client, all on one database and
 * one Redis — as two processes behind a load balancer would be. Log lines and sent codes are captured.
 */
import { Writable } from 'node:stream';
import type { Express } from 'express';
import { Redis } from 'ioredis';
import type { Knex } from 'knex';
import { pino } from 'pino';
import request from 'supertest';
import { knexStorage, redisCache, REDIS_CACHE_CLIENT_OPTIONS, type MfaCodeMessage, type TrustedDeviceCache } from '../../index.js';
import { createExampleApp } from '../../examples/app.js';
import { createKnex } from '../../examples/db.js';
import { KEY_A, ring } from './fixtures.js';
import { JWT_SECRET, token } from './mfa.js';

export interface AppInstance {
  app: Express;
  knex: Knex;
  /** The instance's own Redis client (cache and rate-limit counters), when it has one. */
  redis: Redis | undefined;
  cache: TrustedDeviceCache | undefined;
  /** Every log line the instance wrote (JSON), at debug level and up. */
  logs: string[];
  /** Every sms/email code the instance sent. */
  sent: MfaCodeMessage[];
  destroy(): Promise<void>;
}

export interface InstanceOptions {
  databaseUrl: string;
  /** With it: a `redisCache` and Redis rate-limit counters, as the example server does with REDIS_URL. */
  redisUrl?: string;
  /** Cache key prefix shared by the instances of one test (keeps a shared Redis clean). */
  keyPrefix?: string;
}

/** One instance of the example app (see the file comment). */
export async function exampleInstance(options: InstanceOptions): Promise<AppInstance> {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const knex = createKnex(options.databaseUrl, { logger, poolMax: 6 });
  const storage = knexStorage({ knex });
  const sent: MfaCodeMessage[] = [];
  let redis: Redis | undefined;
  let cache: TrustedDeviceCache | undefined;
  if (options.redisUrl !== undefined) {
    redis = new Redis(options.redisUrl, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    await redis.connect();
    cache = redisCache({ client: redis, logger, ...(options.keyPrefix !== undefined && { keyPrefix: options.keyPrefix }) });
  }
  const backed = cache;
  const app = createExampleApp({
    storage,
    ...(backed && { cache: backed, cachePing: () => backed.ping() }),
    ...(redis && { rateLimitRedis: redis }),
    codeSender: { send: (m) => void sent.push(m) },
    internalKeys: [KEY_A],
    keyRing: ring,
    jwtSecret: JWT_SECRET,
    logger,
  });
  return {
    app,
    knex,
    redis,
    cache,
    logs,
    sent,
    async destroy() {
      await cache?.close?.();
      redis?.disconnect();
      await knex.destroy();
    },
  };
}

export const internalHeaders = (tenant = 'acme'): Record<string, string> => ({ 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': tenant });
export const bearer = (userId: string, tenant: string | null = 'acme'): Record<string, string> => ({ Authorization: `Bearer ${token(userId, tenant)}` });

/** Enrols and verifies a TOTP device for `userId` through `app`; returns its id and secret. */
export async function enrolTotp(app: Express, userId: string, code: (secret: string) => string, tenant = 'acme'): Promise<{ id: string; secret: string }> {
  const enrolled = await request(app).post('/auth/mfa/devices/totp').set(bearer(userId, tenant)).send({ deviceName: 'Phone' });
  if (enrolled.status !== 201) throw new Error(`enrolment: ${enrolled.status} ${enrolled.text}`);
  const { device, secret } = enrolled.body as { device: { id: string }; secret: string };
  const verified = await request(app).post(`/auth/mfa/devices/${device.id}/verify`).set(bearer(userId, tenant)).send({ code: code(secret) });
  if (verified.status !== 200) throw new Error(`enrolment verify: ${verified.status} ${verified.text}`);
  return { id: device.id, secret };
}
