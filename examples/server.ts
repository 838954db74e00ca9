/**
 * `npm start`: the example server. Env as in CONTRACT.md §7. With no DATABASE_URL it runs an
 * embedded real Postgres (data in ./.data); with no REDIS_URL an in-process cache. In development
 * missing secrets are generated and printed; with NODE_ENV=production it refuses to start without them.
 * `WORKERS=N` (default 1) runs N processes sharing the port: see `primary()`.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Server } from 'node:http';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Knex } from 'knex';
import { generateKey, keyRing, knexStorage, memoryCache, migrate, redisCache, REDIS_CACHE_CLIENT_OPTIONS, unreadableKeyIds, mismatchedKeyIds, type KeyRing, type StepUpOptions, type TrustedDeviceCache } from '../index.js';
import { MAX_STEP_UP_AGE_SECONDS } from '../lib/step-up.js';
import { LOG_LEVELS, REDACT_PATHS } from '../lib/logger.js';
import { isDevelopment } from '../lib/options.js';
import { summarizeError } from '../lib/problem.js';
import { createExampleApp, createExampleServer, drainOnStop } from './app.js';
import { createKnex, longestStatementWaitMs, timeoutsFromEnv } from './db.js';
import { startRetentionSweep } from './retention.js';
import { MAX_KEEP_LAST_SECONDS, parseDurationSeconds } from '../storage/knex/cleanup.js';
import { DEV_SECRETS_FILE, reuseDevEncryptionKey, saveDevSecrets } from './dev-secrets.js';
import type { EmbeddedPostgresOptions, EmbeddedPostgresServer } from './embedded-postgres.js';

// Written asynchronously: lines written while a write is in flight leave together in the next one, instead of
// one blocking write(2) per request line; pino flushes what is left when the process exits.
// An empty variable is an unset one (`LOG_LEVEL=${LOG_LEVEL}` in a template), as for every variable below.
const logLevel = process.env.LOG_LEVEL?.trim() || 'info';
const logger = pino({ name: 'mfa-kit-example', level: LOG_LEVELS.includes(logLevel) ? logLevel : 'info', redact: [...REDACT_PATHS] }, pino.destination({ dest: 1, sync: false }));

/** Logs why the server does not start, and exits 1. The fields never hold a secret, a key or a URL (it may carry a password). */
function refuse(message: string, fields: Record<string, unknown> = {}): never {
  logger.fatal(fields, message);
  process.exit(1);
}

/**
 * `NODE_ENV`: `production`, or development (unset, `development`, `test`), where missing secrets are generated and
 * printed. Anything else (`staging`, `prod`) is neither: it starts only with every secret set, and prints none.
 */
const nodeEnv = process.env.NODE_ENV?.trim() ?? '';
const production = nodeEnv === 'production';
const development = isDevelopment(nodeEnv);

/**
 * The embedded-postgres package installs async-exit-hook when it is imported, which answers SIGINT/SIGTERM
 * by exiting (130/143) as soon as Postgres is stopped — before in-flight requests finish. So it is loaded
 * only when there is no DATABASE_URL, and its signal handlers are taken back: the shutdown below stops
 * Postgres last.
 */
async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresServer> {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const before = new Map(signals.map((s) => [s, process.listeners(s)]));
  const embedded = await import('./embedded-postgres.js');
  for (const s of signals) for (const l of process.listeners(s)) if (!before.get(s)!.includes(l)) process.removeListener(s, l);
  return embedded.startEmbeddedPostgres(options);
}

interface ServerEnv {
  port: number;
  host: string;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  /** `JWT_SECRET` (HS256), or `JWT_PUBLIC_KEY` (PEM, RS256 / ES256). */
  jwt: { jwtSecret: string } | { jwtPublicKey: string };
  internalKeys: string[];
  encryptionKeys: string[];
  /** Names of the secrets generated for this run (development only). */
  generated: string[];
  /** `REQUEST_LOG=off`: no line per request (a proxy in front logs them); errors and MFA events still are. */
  requestLog: boolean;
  /** `READYZ_CACHE=optional`: a cache outage leaves `/readyz` ready (reported as `cache: 'down'`); `required` by default. */
  readyzCache: 'required' | 'optional';
  /** `CLEANUP_EVERY` / `CLEANUP_KEEP_LAST`: the retention sweep's interval (off when unset) and how long expired rows are kept, in seconds. */
  cleanup: { everySeconds: number; keepLastSeconds: number } | undefined;
  /** `STEP_UP_AMR` / `STEP_UP_MAX_AGE`: the step-up both user routers ask for; off when unset. */
  stepUp: StepUpOptions | undefined;
}

/** A duration from the environment (`30d`, `12h`, `90m`, `45s`, seconds); exits naming the variable when it is not one. */
function durationFromEnv(name: string, min: number, max: number): number | undefined {
  const text = process.env[name]?.trim();
  if (!text) return undefined;
  const seconds = parseDurationSeconds(text);
  if (seconds === null || seconds < min || seconds > max) {
    refuse(`${name} must be a duration from ${min} to ${max} s: 30d, 12h, 90m, 45s or seconds`, { [name]: text });
  }
  return seconds;
}

/** `DATABASE_URL` when set: a postgres:// URL, else it refuses to start. */
function databaseUrlFromEnv(): string | undefined {
  const text = process.env.DATABASE_URL?.trim();
  if (!text) return undefined;
  if (!/^postgres(?:ql)?:$/.test(parsedUrl(text)?.protocol ?? '')) refuse('DATABASE_URL must be a URL like postgres://user:password@host:5432/database');
  return text;
}

/**
 * `REDIS_URL` when set: redis:// or rediss:// with at most a database number for a path, else it refuses to start. ioredis
 * takes `127.0.0.1:6379/7` as host and port and drops the `/7` (database 0, maybe another app's), and `http://…` as a
 * Unix socket's path: both would start and stay degraded, or share a database.
 */
function redisUrlFromEnv(): string | undefined {
  const text = process.env.REDIS_URL?.trim();
  if (!text) return undefined;
  const url = parsedUrl(text);
  if (!url || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || !/^\/?(?:\d{1,4})?$/.test(url.pathname)) {
    refuse('REDIS_URL must be a URL like redis://[user:password@]host:6379[/database number] (rediss:// for TLS)');
  }
  return text;
}

const parsedUrl = (text: string): URL | undefined => {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
};

function loadEnv(): ServerEnv {
  if (!LOG_LEVELS.includes(logLevel)) refuse(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`, { LOG_LEVEL: logLevel.slice(0, 32) });
  if (development) reuseDevEncryptionKey(); // [7/7] the embedded Postgres keeps its rows across restarts: keep their key too
  const split = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  // A PEM in one line of env has its line breaks as `\n`.
  const jwtPublicKey = process.env.JWT_PUBLIC_KEY?.trim().replaceAll('\\n', '\n') || undefined;
  if (jwtPublicKey !== undefined && process.env.JWT_SECRET?.trim()) {
    refuse('set JWT_SECRET (HS256 tokens) or JWT_PUBLIC_KEY (RS256 / ES256 tokens), not both');
  }
  // A private key here would verify too (its public half), but it must not be on this server: the identity provider keeps it.
  if (jwtPublicKey !== undefined && /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(jwtPublicKey)) {
    refuse('JWT_PUBLIC_KEY holds a private key: give its public key (`openssl pkey -in key.pem -pubout`); the identity provider keeps the private one');
  }
  // A list of nothing (",", " , ") is unset too: production must not fall back to a random key.
  const missing = ['JWT_SECRET', 'INTERNAL_API_KEYS', 'MFA_ENCRYPTION_KEYS'].filter((name) =>
    name === 'JWT_SECRET' ? !process.env[name]?.trim() && jwtPublicKey === undefined : split(process.env[name]).length === 0,
  );
  if (!development && missing.length > 0) {
    const why = production ? '' : ' (secrets are generated only in development: NODE_ENV unset, development or test)';
    refuse(`NODE_ENV=${nodeEnv.slice(0, 32)}: refusing to start while ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} unset${why}`, { missing });
  }
  const port = Number(process.env.PORT?.trim() || 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    refuse('PORT must be an integer from 0 to 65535', { port: process.env.PORT });
  }
  const requestLog = process.env.REQUEST_LOG?.trim() || 'on';
  if (requestLog !== 'on' && requestLog !== 'off') {
    refuse('REQUEST_LOG must be on or off', { requestLog: process.env.REQUEST_LOG });
  }
  const readyzCache = process.env.READYZ_CACHE?.trim() || 'required';
  if (readyzCache !== 'required' && readyzCache !== 'optional') {
    refuse('READYZ_CACHE must be required or optional', { READYZ_CACHE: process.env.READYZ_CACHE?.slice(0, 32) });
  }
  // At most 7 days: a longer setInterval delay than 2^31 - 1 ms (24.8 days) would fire every millisecond.
  const cleanupEvery = durationFromEnv('CLEANUP_EVERY', 1, 7 * 86_400);
  const keepLastSeconds = durationFromEnv('CLEANUP_KEEP_LAST', 0, MAX_KEEP_LAST_SECONDS);
  if (keepLastSeconds !== undefined && cleanupEvery === undefined) refuse('CLEANUP_KEEP_LAST needs CLEANUP_EVERY: how often the retention sweep runs, e.g. CLEANUP_EVERY=1h');
  const stepUpAmr = split(process.env.STEP_UP_AMR);
  const stepUpMaxAge = durationFromEnv('STEP_UP_MAX_AGE', 1, MAX_STEP_UP_AGE_SECONDS);
  if (stepUpMaxAge !== undefined && stepUpAmr.length === 0) {
    refuse('STEP_UP_MAX_AGE needs STEP_UP_AMR: the amr values your tokens carry after a second factor, e.g. STEP_UP_AMR=mfa');
  }
  return {
    port,
    requestLog: requestLog === 'on',
    readyzCache,
    cleanup: cleanupEvery === undefined ? undefined : { everySeconds: cleanupEvery, keepLastSeconds: keepLastSeconds ?? 0 },
    stepUp: stepUpAmr.length === 0 ? undefined : { amr: stepUpAmr, ...(stepUpMaxAge !== undefined && { maxAgeSeconds: stepUpMaxAge }) },
    host: process.env.HOST?.trim() || '127.0.0.1',
    databaseUrl: databaseUrlFromEnv(),
    redisUrl: redisUrlFromEnv(),
    jwt: jwtPublicKey !== undefined ? { jwtPublicKey } : { jwtSecret: process.env.JWT_SECRET?.trim() || randomBytes(32).toString('base64url') },
    internalKeys: split(process.env.INTERNAL_API_KEYS).length ? split(process.env.INTERNAL_API_KEYS) : [randomBytes(24).toString('base64url')],
    encryptionKeys: split(process.env.MFA_ENCRYPTION_KEYS).length ? split(process.env.MFA_ENCRYPTION_KEYS) : [generateKey('dev')],
    // A cluster worker gets the primary's generated secrets in its env; the first one prints them.
    generated: process.env.MFA_KIT_GENERATED?.split(',').filter(Boolean) ?? missing,
  };
}

/**
 * Rows sealed under a key id the ring does not hold answer 500 on every instance: a deploy that dropped a key too early
 * (before `npm run reencrypt` reported none left on it) stops here, naming the key ids, while the instances on the old
 * ring go on serving. So does an id given another key than its rows were sealed with. A key generated for this run
 * (development) only warns: rows of an earlier run stay unreadable.
 */
async function checkKeysInUse(knex: Knex, ring: KeyRing, env: ServerEnv): Promise<void> {
  const problem = await keyProblem(knex, ring);
  if (!problem) return;
  if (env.generated.includes('MFA_ENCRYPTION_KEYS')) {
    logger.warn(problem.fields, `rows sealed under key id ${problem.ids} do not open with this run's generated key: set MFA_ENCRYPTION_KEYS to the key they were sealed with`);
    return;
  }
  throw new TypeError(problem.refusal);
}

/** The first of checkKeysInUse's two faults found: an id with another key, else ids the ring does not hold. */
async function keyProblem(knex: Knex, ring: KeyRing): Promise<{ ids: string; fields: object; refusal: string } | undefined> {
  const idsOf = (found: ReadonlyArray<{ keyId: string }>) => [...new Set(found.map((f) => f.keyId))].join(', ');
  // The right id with another key (mistyped, generated anew): every row under it would answer 500.
  const mismatched = await mismatchedKeyIds(knex, ring);
  if (mismatched.length > 0) {
    const ids = idsOf(mismatched);
    return {
      ids,
      fields: { mismatched: mismatched.map((m) => ({ table: m.table, key_id: m.keyId, tried: m.tried })) },
      refusal:
        `MFA_ENCRYPTION_KEYS: the key with id ${ids} opens none of the stored secrets sealed under that id (${mismatched.map((m) => `${m.tried} tried in ${m.table}`).join(', ')}): ` +
        'it is not the key they were sealed with; set that id to its original key',
    };
  }
  const unreadable = await unreadableKeyIds(knex, ring);
  if (unreadable.length === 0) return undefined;
  const ids = idsOf(unreadable);
  return {
    ids,
    fields: { unreadable: unreadable.map((u) => ({ table: u.table, key_id: u.keyId, rows: u.rows })) },
    refusal:
      `MFA_ENCRYPTION_KEYS holds no key with id ${ids}, under which ${unreadable.reduce((n, u) => n + u.rows, 0)} stored secret(s) are sealed (${unreadable.map((u) => `${u.rows} in ${u.table}`).join(', ')}): ` +
      'add that key back (a key leaves the list only once `npm run reencrypt` reports 0 still on another key); should it be lost for good, those devices and vaults must be removed and enrolled again',
  };
}

/** How long start-up waits for Redis before going on without it. */
const REDIS_CONNECT_WAIT_MS = 1000;

/** Resolves once `redis` is ready, or after `ms` (whichever comes first); never rejects. */
function connected(redis: Redis, ms: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    redis.once('ready', done);
  });
}

/** Every secret set, as in a deployment, but NODE_ENV left unset: development, in which the demo sender prints codes. */
function warnDevelopmentWithSecrets(env: ServerEnv): void {
  if (development && env.generated.length === 0 && nodeEnv !== 'test') {
    logger.warn({ node_env: nodeEnv || null }, 'development mode: sms/email codes are printed on stdout ([demo sender] lines), not sent; set NODE_ENV=production in a deployment');
  }
}

async function main(): Promise<void> {
  const env = loadEnv();
  const ring = keyRing(env.encryptionKeys); // fails fast on a malformed key
  if (development) saveDevSecrets(env.generated, { JWT_SECRET: 'jwtSecret' in env.jwt ? env.jwt.jwtSecret : '', INTERNAL_API_KEYS: env.internalKeys[0]!, MFA_ENCRYPTION_KEYS: env.encryptionKeys[0]! }); // [7/7] for `npm run demo`
  const cleanups: Array<() => Promise<void>> = [];

  let databaseUrl = env.databaseUrl;
  if (!databaseUrl) {
    const embedded = await startEmbeddedPostgres({ dataDir: path.resolve('.data', 'postgres') });
    cleanups.unshift(() => embedded.stop());
    databaseUrl = embedded.url;
    logger.info({ data_dir: '.data/postgres' }, 'no DATABASE_URL: started an embedded PostgreSQL');
  }
  const timeouts = timeoutsFromEnv();
  const knex = createKnex(databaseUrl, { ...timeouts, logger });
  cleanups.unshift(() => knex.destroy());
  const storage = knexStorage({ knex });

  // [2/7] The trusted-device cache: Redis when REDIS_URL is set (shared by every instance), else in-process.
  let cache: TrustedDeviceCache;
  let cachePing: (() => Promise<boolean>) | undefined;
  // [3/7] The same client keeps the verify routes' rate-limit counters, shared by every instance.
  let rateLimitRedis: Redis | undefined;
  if (env.redisUrl) {
    const redis = new Redis(env.redisUrl, REDIS_CACHE_CLIENT_OPTIONS);
    // First, as it listens for the client's errors: a failed connect logs a line, not ioredis's "Unhandled error event".
    const redisBacked = redisCache({ client: redis, logger });
    // A moment for the connection, so the rate limiters load their scripts now rather than at their first
    // request; not longer: the server starts (and answers from Postgres) while Redis is unreachable, and
    // ioredis keeps reconnecting.
    await connected(redis, REDIS_CONNECT_WAIT_MS);
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
    ...env.jwt,
    logger,
    requestLog: env.requestLog,
    readyzCache: env.readyzCache,
    ...(rateLimitRedis && { rateLimitRedis }),
    ...(env.stepUp && { stepUp: env.stepUp }),
  });

  // After the app is built, so that an option it refuses (a short JWT_SECRET) stops a deploy before it changes the
  // schema. With WORKERS > 1 the primary has migrated already.
  if (cluster.isPrimary) {
    const applied = await storage.migrate();
    if (applied.length) logger.info({ applied }, 'migrations applied');
    await checkKeysInUse(knex, ring, env);
  }
  // One process sweeps: this one, or with WORKERS > 1 the first worker.
  if (env.cleanup && (cluster.isPrimary || process.env.MFA_KIT_CLEANUP === '1')) {
    cleanups.unshift(startRetentionSweep({ knex, ...env.cleanup, logger }));
  }

  const server: Server = createExampleServer(app).listen(env.port, env.host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : env.port;
  const base = `http://${env.host}:${port}`;
  // Said once: by the one process, or by the first worker (the one the primary marks with MFA_KIT_CLEANUP).
  if (!env.stepUp && !development && (!cluster.isWorker || process.env.MFA_KIT_CLEANUP === '1')) {
    logger.warn('STEP_UP_AMR is unset: any valid user token may change the user\'s factors and read their vault; keep tokens issued before the second factor off these routes, or set STEP_UP_AMR');
  }
  logger.info({ url: base, cache: env.redisUrl ? 'redis' : 'in-process' }, 'express-mfa-kit example server listening');
  // With WORKERS > 1 the primary says it (a worker's env does not tell what the primary generated).
  if (cluster.isPrimary) warnDevelopmentWithSecrets(env);

  if (env.generated.length > 0) {
    // Development only: print what was generated so the server can be called right away. A key the operator set
    // is theirs: never printed, the examples name it instead.
    const internalKey = env.generated.includes('INTERNAL_API_KEYS') ? env.internalKeys[0]! : '<one of your INTERNAL_API_KEYS>';
    const lines = [
      '',
      `Generated for this run (set them to keep them): ${env.generated.join(', ')}`,
      env.generated.includes('INTERNAL_API_KEYS') ? `  INTERNAL_API_KEYS=${env.internalKeys[0]}` : '',
      env.generated.includes('JWT_SECRET') && 'jwtSecret' in env.jwt ? `  JWT_SECRET=${env.jwt.jwtSecret}` : '',
      env.generated.includes('MFA_ENCRYPTION_KEYS')
        ? env.databaseUrl && process.env.MFA_KIT_EMBEDDED !== '1'
          ? '  MFA_ENCRYPTION_KEYS=<random dev key for this run only: with DATABASE_URL, what it seals does not open after a restart; set MFA_ENCRYPTION_KEYS to keep it>'
          : `  MFA_ENCRYPTION_KEYS=<dev key of the embedded Postgres, kept in ${DEV_SECRETS_FILE} and reused after a restart>`
        : '',
      'jwtSecret' in env.jwt ? `  (saved to ${DEV_SECRETS_FILE} for \`npm run demo\`)` : `  (saved to ${DEV_SECRETS_FILE}; \`npm run demo\` signs HS256 tokens: it needs a server on JWT_SECRET)`,
      '',
      'Try:',
      `  curl -s -H 'X-Internal-API-Key: ${internalKey}' -H 'X-Tenant-ID: acme' '${base}/internal/mfa/totp/devices?user_id=alice'`,
      `  curl -s -H 'X-Internal-API-Key: ${internalKey}' -H 'X-Tenant-ID: acme' '${base}/internal/session/trusted-devices/check?user_id=alice&device_fingerprint=fp1'`,
      '',
    ].filter((l, i, all) => l !== '' || all[i - 1] !== '');
    process.stdout.write(lines.join('\n') + '\n');
  }

  let stopping = false;
  // In-flight requests get at least 8 s, and as long as one database statement can wait before its 503 (a hung
  // database: a pooled connection's wait, the query's cap, a transaction's rollback; 15 s by default), plus a margin.
  const graceMs = Math.max(8000, longestStatementWaitMs(timeouts) + 2000);
  // Once stopping, every connection ends with the answer it is writing, so keep-alive clients move off at once and
  // their next connection is refused, instead of holding the server open until the force timer.
  const drain = drainOnStop(server);
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: no new connections, finishing in-flight requests');
    const force = setTimeout(() => {
      logger.warn({ grace_ms: graceMs }, 'in-flight requests did not finish in time: closing connections');
      server.closeAllConnections();
    }, graceMs);
    force.unref();
    server.close(() => {
      void (async () => {
        for (const cleanup of cleanups) await cleanup().catch((err: unknown) => logger.warn({ err: String(err) }, 'cleanup failed'));
        logger.info({}, 'stopped');
        process.exit(0);
      })();
    });
    drain.stopping();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/**
 * `WORKERS` > 1 (node:cluster): the primary starts the embedded Postgres (when there is no DATABASE_URL)
 * and migrates, once; then forks the workers with one set of secrets (generated ones included, so every
 * worker accepts the same keys and tokens); they share the listening port. SIGTERM / SIGINT stops every
 * worker (each finishes its in-flight requests) before Postgres; a worker that dies stops the whole server,
 * so a supervisor sees it.
 */
async function primary(workers: number): Promise<void> {
  const env = loadEnv();
  keyRing(env.encryptionKeys); // fails fast on a malformed key
  if (!env.redisUrl) {
    // The in-process cache and rate limits are per process: a revocation on one worker would not reach the others.
    refuse('WORKERS > 1 needs REDIS_URL: the in-process cache is per process', { workers });
  }
  let databaseUrl = env.databaseUrl;
  let stopDatabase = () => Promise.resolve();
  if (!databaseUrl) {
    const embedded = await startEmbeddedPostgres({ dataDir: path.resolve('.data', 'postgres') });
    stopDatabase = () => embedded.stop();
    databaseUrl = embedded.url;
    logger.info({ data_dir: '.data/postgres' }, 'no DATABASE_URL: started an embedded PostgreSQL');
  }
  const knex = createKnex(databaseUrl, { ...timeoutsFromEnv(), poolMax: 1, logger });
  // The workers build the app; built here too (and dropped), an option it refuses stops the start before the schema changes.
  try {
    createExampleApp({ storage: knexStorage({ knex }), cache: memoryCache(), internalKeys: env.internalKeys, keyRing: keyRing(env.encryptionKeys), ...env.jwt, logger, ...(env.stepUp && { stepUp: env.stepUp }) });
  } catch (err) {
    await knex.destroy();
    await stopDatabase();
    throw err;
  }
  const applied = await migrate(knex);
  if (applied.length) logger.info({ applied }, 'migrations applied');
  await checkKeysInUse(knex, keyRing(env.encryptionKeys), env).finally(() => knex.destroy());

  // The workers inherit JWT_PUBLIC_KEY with the rest of the environment; a secret (maybe generated) goes to them as JWT_SECRET.
  const shared = { DATABASE_URL: databaseUrl, ...('jwtSecret' in env.jwt && { JWT_SECRET: env.jwt.jwtSecret }), INTERNAL_API_KEYS: env.internalKeys.join(','), MFA_ENCRYPTION_KEYS: env.encryptionKeys.join(',') };
  // MFA_KIT_EMBEDDED: the DATABASE_URL the workers get is the embedded one (its generated key is kept, as a single process's).
  for (let i = 0; i < workers; i++) cluster.fork({ ...shared, MFA_KIT_GENERATED: i === 0 ? env.generated.join(',') : '', MFA_KIT_CLEANUP: i === 0 ? '1' : '', MFA_KIT_EMBEDDED: env.databaseUrl ? '' : '1' });
  logger.info({ workers }, 'started the workers');
  warnDevelopmentWithSecrets(env);

  let stopping = false;
  const stop = (code: number) => {
    if (stopping) return;
    stopping = true;
    const alive = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
    void Promise.all(alive.map((w) => new Promise((resolve) => w.once('exit', resolve).process.kill('SIGTERM'))))
      .then(() => stopDatabase())
      .catch((err: unknown) => logger.warn({ err: String(err) }, 'cleanup failed'))
      .finally(() => process.exit(code));
  };
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    logger.error({ worker: worker.id, code, signal }, 'a worker stopped: stopping the server');
    stop(1);
  });
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));
}

const workers = Number(process.env.WORKERS?.trim() || 1);
if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
  refuse('WORKERS must be an integer from 1 to 64', { workers: process.env.WORKERS });
}
(cluster.isPrimary && workers > 1 ? primary(workers) : main()).catch((err: unknown) => {
  // A set-up error (a TypeError naming the option and its fix) as it is; anything else without the SQL knex puts in
  // front of a driver's message (a role without CREATE, a database gone).
  refuse('failed to start', { error: err instanceof TypeError ? err.message : summarizeError(err) });
});
