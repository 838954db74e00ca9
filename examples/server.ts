/**
 * `npm start`: the example server. Env as in CONTRACT.md §7. With no DATABASE_URL it runs an
 * embedded real Postgres (data in ./.data); with no REDIS_URL an in-process cache. In development
 * missing secrets are generated and printed; with NODE_ENV=production it refuses to start without them.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Server } from 'node:http';
import { Redis } from 'ioredis';
import knexFactory from 'knex';
import { pino } from 'pino';
import { generateKey, keyRing, knexStorage, memoryCache, redisCache, REDIS_CACHE_CLIENT_OPTIONS, type TrustedDeviceCache } from '../index.js';
import { REDACT_PATHS } from '../lib/logger.js';
import { createExampleApp } from './app.js';
import { DEV_SECRETS_FILE, reuseDevEncryptionKey, saveDevSecrets } from './dev-secrets.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';

const logger = pino({ name: 'mfa-kit-example', level: process.env.LOG_LEVEL ?? 'info', redact: [...REDACT_PATHS] });

interface ServerEnv {
  port: number;
  host: string;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  jwtSecret: string;
  internalKeys: string[];
  encryptionKeys: string[];
  /** Names of the secrets generated for this run (development only). */
  generated: string[];
}

function loadEnv(): ServerEnv {
  const production = process.env.NODE_ENV === 'production';
  if (!production) reuseDevEncryptionKey(); // [7/7] the embedded Postgres keeps its rows across restarts: keep their key too
  const missing = ['JWT_SECRET', 'INTERNAL_API_KEYS', 'MFA_ENCRYPTION_KEYS'].filter((name) => !process.env[name]?.trim());
  if (production && missing.length > 0) {
    logger.fatal({ missing }, `NODE_ENV=production: refusing to start while ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} unset`);
    process.exit(1);
  }
  const port = Number(process.env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    logger.fatal({ port: process.env.PORT }, 'PORT must be an integer from 0 to 65535');
    process.exit(1);
  }
  const split = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return {
    port,
    host: process.env.HOST ?? '127.0.0.1',
    databaseUrl: process.env.DATABASE_URL || undefined,
    redisUrl: process.env.REDIS_URL || undefined,
    jwtSecret: process.env.JWT_SECRET?.trim() || randomBytes(32).toString('base64url'),
    internalKeys: split(process.env.INTERNAL_API_KEYS).length ? split(process.env.INTERNAL_API_KEYS) : [randomBytes(24).toString('base64url')],
    encryptionKeys: split(process.env.MFA_ENCRYPTION_KEYS).length ? split(process.env.MFA_ENCRYPTION_KEYS) : [generateKey('dev')],
    generated: missing,
  };
}

async function main(): Promise<void> {
  const env = loadEnv();
  const ring = keyRing(env.encryptionKeys); // fails fast on a malformed key
  if (process.env.NODE_ENV !== 'production') saveDevSecrets(env.generated, { JWT_SECRET: env.jwtSecret, INTERNAL_API_KEYS: env.internalKeys[0]!, MFA_ENCRYPTION_KEYS: env.encryptionKeys[0]! }); // [7/7] for `npm run demo`
  const cleanups: Array<() => Promise<void>> = [];

  let databaseUrl = env.databaseUrl;
  if (!databaseUrl) {
    const embedded = await startEmbeddedPostgres({ dataDir: path.resolve('.data', 'postgres') });
    cleanups.unshift(() => embedded.stop());
    databaseUrl = embedded.url;
    logger.info({ data_dir: '.data/postgres' }, 'no DATABASE_URL: started an embedded PostgreSQL');
  }
  const knex = knexFactory({
    client: 'pg',
    connection: { connectionString: databaseUrl, statement_timeout: 5000, connectionTimeoutMillis: 3000 },
    pool: { min: 0, max: Number(process.env.DB_POOL_MAX ?? 10) },
    acquireConnectionTimeout: 4000,
  });
  cleanups.unshift(() => knex.destroy());
  const storage = knexStorage({ knex });
  const applied = await storage.migrate();
  if (applied.length) logger.info({ applied }, 'migrations applied');

  // [2/7] The trusted-device cache: Redis when REDIS_URL is set (shared by every instance), else in-process.
  let cache: TrustedDeviceCache;
  let cachePing: (() => Promise<boolean>) | undefined;
  // [3/7] The same client keeps the verify routes' rate-limit counters, shared by every instance.
  let rateLimitRedis: Redis | undefined;
  if (env.redisUrl) {
    // Not awaited: the server starts (and answers from Postgres) while Redis is unreachable, and ioredis keeps reconnecting.
    const redis = new Redis(env.redisUrl, REDIS_CACHE_CLIENT_OPTIONS);
    const redisBacked = redisCache({ client: redis, logger });
    rateLimitRedis = redis;
    cache = redisBacked;
    cachePing = () => redisBacked.ping();
    cleanups.unshift(async () => {
      await redisBacked.close?.();
      await redis.quit().catch(() => redis.disconnect());
    });
  } else {
    cache = memoryCache();
  }

  const app = createExampleApp({
    storage,
    cache,
    ...(cachePing && { cachePing }),
    internalKeys: env.internalKeys,
    keyRing: ring,
    jwtSecret: env.jwtSecret,
    logger,
    ...(rateLimitRedis && { rateLimitRedis }),
  });

  const server: Server = app.listen(env.port, env.host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : env.port;
  const base = `http://${env.host}:${port}`;
  logger.info({ url: base, cache: env.redisUrl ? 'redis' : 'in-process' }, 'express-mfa-kit example server listening');

  if (env.generated.length > 0) {
    // Development only: print what was generated so the server can be called right away.
    const lines = [
      '',
      `Generated for this run (set them to keep them): ${env.generated.join(', ')}`,
      env.generated.includes('INTERNAL_API_KEYS') ? `  INTERNAL_API_KEYS=${env.internalKeys[0]}` : '',
      env.generated.includes('JWT_SECRET') ? `  JWT_SECRET=${env.jwtSecret}` : '',
      env.generated.includes('MFA_ENCRYPTION_KEYS') ? `  MFA_ENCRYPTION_KEYS=<random dev key, kept in ${DEV_SECRETS_FILE}: reused after a restart only with the embedded Postgres>` : '',
      `  (saved to ${DEV_SECRETS_FILE} for \`npm run demo\`)`,
      '',
      'Try:',
      `  curl -s -H 'X-Internal-API-Key: ${env.internalKeys[0]}' -H 'X-Tenant-ID: acme' '${base}/internal/mfa/totp/devices?user_id=alice'`,
      `  curl -s -H 'X-Internal-API-Key: ${env.internalKeys[0]}' -H 'X-Tenant-ID: acme' '${base}/internal/session/trusted-devices/check?user_id=alice&device_fingerprint=fp1'`,
      '',
    ].filter((l, i, all) => l !== '' || all[i - 1] !== '');
    process.stdout.write(lines.join('\n') + '\n');
  }

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: no new connections, finishing in-flight requests');
    const force = setTimeout(() => {
      logger.warn({}, 'in-flight requests did not finish in 8 s: closing connections');
      server.closeAllConnections();
    }, 8000);
    force.unref();
    server.close(() => {
      void (async () => {
        for (const cleanup of cleanups) await cleanup().catch((err: unknown) => logger.warn({ err: String(err) }, 'cleanup failed'));
        logger.info({}, 'stopped');
        process.exit(0);
      })();
    });
    server.closeIdleConnections();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  logger.fatal({ error: err instanceof Error ? err.message : String(err) }, 'failed to start');
  process.exit(1);
});
