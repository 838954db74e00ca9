/**
 * `npx tsx scripts/bench/middleware-cost.ts`: CPU time per request of the hot-path check, in process and
 * without a network (requests are injected into the apps on a socket that discards what it is sent), for
 * bare Express, bare Express + helmet (defaults, or the example app's API set) / + pino-http, and the example app. The minimum over interleaved
 * rounds is reported: it stays put when other work competes for the machine, where req/s does not.
 * Needs Postgres (DATABASE_URL or the embedded one) and Redis (REDIS_URL or redis-server on PATH).
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import express, { type RequestHandler } from 'express';
import helmet from 'helmet';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { pinoHttp } from 'pino-http';
import { createExampleApp } from '../../examples/app.js';
import { apiSecurityHeaders } from '../../examples/security-headers.js';
import { generateKey, keyRing, knexStorage, memoryCache, redisCache, REDIS_CACHE_CLIENT_OPTIONS } from '../../index.js';
import { freshDatabase, stopPostgres } from '../../test/support/postgres.js';
import { redisUrl, stopRedisServers } from '../../test/support/redis.js';

type App = (req: IncomingMessage, res: ServerResponse) => void;

function inject(app: App, url: string, headers: Record<string, string>): Promise<number> {
  const socket = new Duplex({
    read() {},
    write(_chunk, _encoding, done) {
      done();
    },
  }) as unknown as Socket;
  const req = new IncomingMessage(socket);
  req.method = 'GET';
  req.url = url;
  req.headers = headers;
  req.push(null);
  const res = new ServerResponse(req);
  res.assignSocket(socket);
  return new Promise((resolve) => {
    // As node:http's server does once a response has finished (resOnFinish): 'close' on the next tick. Without
    // it, whatever waits for 'close' (the example app's request log line) would never run and go unmeasured.
    res.on('finish', () => process.nextTick(() => res.emit('close')));
    res.on('close', () => resolve(res.statusCode));
    app(req, res);
  });
}

const PATH = '/internal/session/trusted-devices/check';
const URL = `${PATH}?user_id=u1&device_fingerprint=fp-1`;
const BODY = { trusted: true, device_id: '0b0e1d2c-1234-4321-8888-123456789abc', trusted_until: '2026-12-23T18:00:00Z' };
// Written as the example server writes its log (examples/server.ts): asynchronously. A synchronous destination costs
// a write(2) a line and read ~25 µs a request more than the server pays (BENCHMARKS.md, twentieth round).
const devNull = (level = 'info') => pino({ level }, pino.destination({ dest: '/dev/null', sync: false }));
const requestLog = (): RequestHandler =>
  pinoHttp({
    logger: devNull(),
    wrapSerializers: false,
    serializers: { req: (r: { method?: string; url?: string }) => ({ method: r.method, path: (r.url ?? '').split('?', 1)[0] }), res: (r: { statusCode?: number }) => ({ status: r.statusCode }) },
  });
const bare = (middleware: RequestHandler[]): App => {
  const app = express();
  app.disable('x-powered-by');
  for (const m of middleware) app.use(m);
  app.get(PATH, (_req, res) => {
    res.json(BODY);
  });
  return app;
};

const db = await freshDatabase();
const redis = await redisUrl();
const client = redis ? new Redis(redis, REDIS_CACHE_CLIENT_OPTIONS) : undefined;
try {
  const storage = knexStorage({ knex: db.knex });
  await storage.migrate();
  const key = 'middleware-cost-internal-key-0123456789';
  const kit = (cache: 'memory' | 'redis', level: string): App =>
    createExampleApp({
      storage,
      internalKeys: [key],
      keyRing: keyRing([generateKey('bench')]),
      jwtSecret: 'middleware-cost-jwt-secret-0123456789',
      cache: cache === 'redis' && client ? redisCache({ client, logger: devNull('warn') }) : memoryCache(),
      logger: devNull(level),
    });
  const internal = { 'x-internal-api-key': key, 'x-tenant-id': 'bench' };
  const apps: Array<[string, App, Record<string, string>]> = [
    ['bare Express', bare([]), {}],
    ['bare + helmet', bare([helmet()]), {}],
    ['bare + API security headers', bare([apiSecurityHeaders()]), {}],
    ['bare + pino-http', bare([requestLog()]), {}],
    ['bare + helmet + pino-http', bare([helmet(), requestLog()]), {}],
    ['example app, memory cache, LOG_LEVEL=warn', kit('memory', 'warn'), internal],
    ['example app, memory cache', kit('memory', 'info'), internal],
    ...(client ? [['example app, Redis cache', kit('redis', 'info'), internal] as [string, App, Record<string, string>]] : []),
  ];
  // Warm-up (JIT; the first check of the kit fills the cache: every later one is a hit).
  for (const [, app, headers] of apps) for (let i = 0; i < 3000; i++) await inject(app, URL, headers);
  const ROUNDS = Number(process.env.ROUNDS ?? 12);
  const PER_ROUND = 800;
  const perRequest = new Map<string, number[]>(apps.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, app, headers] of apps) {
      const before = process.cpuUsage();
      for (let i = 0; i < PER_ROUND; i++) {
        const status = await inject(app, URL, headers);
        if (status !== 200) throw new Error(`${name} answered ${status}`);
      }
      const used = process.cpuUsage(before);
      perRequest.get(name)!.push((used.user + used.system) / PER_ROUND);
    }
  }
  const base = Math.min(...perRequest.get('bare Express')!);
  console.log(`CPU µs per request, in process (min of ${ROUNDS} interleaved rounds of ${PER_ROUND}; median in brackets)\n`);
  for (const [name, values] of perRequest) {
    values.sort((a, b) => a - b);
    const min = values[0]!;
    console.log(`${name.padEnd(44)} ${min.toFixed(0).padStart(6)} µs  (${values[Math.floor(values.length / 2)]!.toFixed(0)})  ×${(min / base).toFixed(2)} bare`);
  }
} finally {
  client?.disconnect();
  await db.drop();
  await stopPostgres();
  await stopRedisServers();
}
