/**
 * Redis faults on a private redis-server: a revocation while Redis is paused or out of reach never leaves
 * a stale "trusted: true" behind, checks keep answering from Postgres, and the cache comes back by itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import request from 'supertest';
import { knexStorage, migrate, redisCache, REDIS_CACHE_CLIENT_OPTIONS, silentLogger, type TrustedDeviceCache } from '../index.js';
import { createExampleApp } from '../examples/app.js';
import { KEY_A, ring } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { findRedisServer, privateRedis, redisCommand, requireRedis, type PrivateRedis } from './support/redis.js';
import { TD, check, del, instance, post, sleep, type Instance } from './support/trusted.js';

const EPOCH_REFRESH_MS = 300;
const CACHE_RETRY_MS = 200;
/** Queries of a check, leaving out the epoch timer's reads that may land in the same window. */
const checkQueries = (sql: string[]) => sql.filter((q) => !q.includes('trusted_device_cache_epoch'));

describe('trusted devices under Redis faults (private redis-server)', function () {
  this.timeout(60_000);
  let db: FreshDatabase;
  let redis: PrivateRedis;
  let raw: Redis;
  const clients: Redis[] = [];
  const caches: TrustedDeviceCache[] = [];
  const instances: Instance[] = [];
  let prefix: string;

  const connect = async (): Promise<Redis> => {
    const client = new Redis(redis.url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    await client.connect();
    clients.push(client);
    return client;
  };
  const node = async (client?: Redis): Promise<Instance> => {
    const cache = redisCache({ client: client ?? (await connect()), keyPrefix: prefix, logger: silentLogger });
    caches.push(cache);
    const inst = instance(db.url, cache, { epochRefreshMs: EPOCH_REFRESH_MS, cacheRetryMs: CACHE_RETRY_MS });
    instances.push(inst);
    return inst;
  };
  /** Polls until a check on `inst` is served by Redis again (no query but the epoch timer's). */
  const untilCached = async (inst: Instance, user: string, fp: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { result, sql } = await inst.queriesDuring(() => check(inst.app, user, fp));
      expect(result.status).to.equal(200);
      if (checkQueries(sql).length === 0) return;
      if (Date.now() > deadline) throw new Error('the cache did not come back into use within 10 s');
      await sleep(50);
    }
  };

  before(async function () {
    // privateRedis() spawns its own server even when REDIS_URL is set: it needs redis-server on PATH.
    requireRedis(this, findRedisServer());
    db = await freshDatabase();
    await migrate(db.knex);
    redis = await privateRedis();
    raw = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: null });
    raw.on('error', () => undefined);
    await raw.connect();
  });
  beforeEach(() => {
    prefix = `faults:${randomBytes(4).toString('hex')}:`;
  });
  afterEach(async () => {
    for (const inst of instances.splice(0)) await inst.destroy();
    for (const cache of caches.splice(0)) await cache.close?.();
    for (const client of clients.splice(0)) client.disconnect();
    await redis.start();
  });
  after(async () => {
    raw?.disconnect();
    await redis?.stop();
    await db?.drop();
  });

  it('CLIENT PAUSE during a revocation: 204, false from Postgres at once, and no instance answers true after Redis is back', async () => {
    const [a, b, c] = [await node(), await node(), await node()];
    const user = `u-${randomBytes(4).toString('hex')}`;
    const t = await post(a.app, { user_id: user, device_fingerprint: 'laptop' });
    for (const inst of [a, b, c]) expect((await check(inst.app, user, 'laptop')).body.trusted).to.equal(true);
    // The positive entry and the generation it is valid under, as they are in Redis before the fault.
    const keys = await raw.keys(`${prefix}*`);
    const entryKey = keys.find((k) => k.includes(':f:'))!;
    const generationKey = keys.find((k) => k.endsWith(':g'))!;
    const staleGeneration = (await raw.get(generationKey))!;
    expect(await raw.get(entryKey)).to.match(new RegExp(`^${staleGeneration}\\|${t.body.id}\\|`));

    const PAUSE_MS = 4000; // the revocation and two checks take ~1.1 s here: room for a machine three times slower
    await redis.pause(PAUSE_MS);
    const pausedAt = Date.now();
    const revoke = await del(a.app, `${TD}/${t.body.id}?user_id=${user}`);
    expect(revoke.status).to.equal(204);
    // Both instances that hold the positive answer from Postgres while Redis does not answer (C stays idle).
    expect((await check(a.app, user, 'laptop')).body).to.deep.equal({ trusted: false });
    expect((await check(b.app, user, 'laptop')).body).to.deep.equal({ trusted: false });
    const during = Date.now() - pausedAt;
    console.log(`      [trusted-devices-faults] the revocation and two checks took ${during} ms of the ${PAUSE_MS} ms pause`);
    expect(during, 'the checks above ran while Redis was paused').to.be.lessThan(PAUSE_MS);

    // Redis is back. The raise A sent during the pause may now have landed late; put the old generation back
    // to stand for a raise that never arrived, so only the epoch stands between the instances and the entry.
    await sleep(Math.max(0, pausedAt + PAUSE_MS + 100 - Date.now()));
    expect(await raw.ping()).to.equal('PONG');
    await raw.set(generationKey, staleGeneration, 'PX', 3_600_000);
    expect(await raw.exists(entryKey), 'the stale positive entry is still in Redis').to.equal(1);

    for (let round = 0; round < 5; round++) {
      for (const [name, inst] of Object.entries({ a, b, c })) {
        expect((await check(inst.app, user, 'laptop')).body, `${name}, round ${round}`).to.deep.equal({ trusted: false });
      }
      await sleep(100);
    }
    // A fresh instance, too.
    const d = await node();
    expect((await check(d.app, user, 'laptop')).body).to.deep.equal({ trusted: false });
    // And the cache serves again by itself.
    for (const inst of [a, b, c]) await untilCached(inst, user, 'laptop');
  });

  it('Redis refusing writes but answering reads (CLIENT PAUSE … WRITE, as in a fail-over) during a revocation: once it answers 204, no instance says trusted', async () => {
    const [a, b] = [await node(), await node()];
    const user = `u-${randomBytes(4).toString('hex')}`;
    const t = await post(a.app, { user_id: user, device_fingerprint: 'laptop' });
    expect((await check(b.app, user, 'laptop')).body.trusted).to.equal(true); // B holds the positive entry
    const reply = await raw.call('CLIENT', 'PAUSE', '3000', 'WRITE');
    expect(reply).to.equal('OK');
    const started = Date.now();
    expect((await del(a.app, `${TD}/${t.body.id}?user_id=${user}`)).status).to.equal(204);
    // The raise timed out and the epoch was bumped; the 204 came only once B could no longer use its old epoch.
    expect(Date.now() - started).to.be.at.least(2 * EPOCH_REFRESH_MS);
    expect((await check(b.app, user, 'laptop')).body).to.deep.equal({ trusted: false });
    expect((await check(a.app, user, 'laptop')).body).to.deep.equal({ trusted: false });
    await raw.call('CLIENT', 'UNPAUSE');
  });

  it('an instance cut off from Redis during a revocation: the revocation answers once the others have dropped the stale positive', async () => {
    const clientA = await connect();
    const [a, b] = [await node(clientA), await node()];
    const user = `u-${randomBytes(4).toString('hex')}`;
    const t = await post(b.app, { user_id: user, device_fingerprint: 'phone' });
    expect((await check(a.app, user, 'phone')).body.trusted).to.equal(true);
    expect((await check(b.app, user, 'phone')).body.trusted).to.equal(true);

    clientA.disconnect(); // a partition of A alone: B still reaches Redis and holds the positive entry
    expect((await del(a.app, `${TD}/${t.body.id}?user_id=${user}`)).status).to.equal(204);
    // B learned the bumped epoch from Postgres before the 204 (each instance refuses an epoch read more than
    // 2 × epochRefreshMs ago, and the revocation waited that long after its bump), with no Redis error to warn it.
    for (let i = 0; i < 5; i++) expect((await check(b.app, user, 'phone')).body.trusted, `B, check ${i}`).to.equal(false);
    expect((await check(a.app, user, 'phone')).body).to.deep.equal({ trusted: false });

    await clientA.connect();
    await untilCached(a, user, 'phone');
    expect((await check(a.app, user, 'phone')).body.trusted).to.equal(false);
  });

  it('Redis stopped: every route keeps working from Postgres, and the cache comes back after a restart', async () => {
    const a = await node();
    const user = `u-${randomBytes(4).toString('hex')}`;
    const kept = await post(a.app, { user_id: user, device_fingerprint: 'kept' });
    const dropped = await post(a.app, { user_id: user, device_fingerprint: 'dropped' });
    await check(a.app, user, 'kept');

    await redis.stop();
    expect((await check(a.app, user, 'kept')).body).to.deep.equal({ trusted: true, device_id: kept.body.id, trusted_until: kept.body.trusted_until });
    expect((await check(a.app, user, 'unknown')).body).to.deep.equal({ trusted: false });
    expect((await del(a.app, `${TD}/${dropped.body.id}?user_id=${user}`)).status).to.equal(204);
    expect((await check(a.app, user, 'dropped')).body.trusted).to.equal(false);
    const added = await post(a.app, { user_id: user, device_fingerprint: 'added' });
    expect(added.status).to.equal(201);
    expect((await check(a.app, user, 'added')).body.trusted).to.equal(true);
    expect((await request(a.app).get(`${TD}?user_id=${user}`).set({ 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' })).body.total).to.equal(2);

    await redis.start();
    await untilCached(a, user, 'kept');
    expect((await check(a.app, user, 'kept')).body.trusted).to.equal(true);
    expect((await check(a.app, user, 'dropped')).body.trusted).to.equal(false);
  });

  it('Redis back from an older snapshot (a restart that loads its RDB): a device revoked after the snapshot is not trusted again, on an instance that saw the revocation or not; then the cache comes back', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mfa-redis-snapshot-'));
    const snapshotted = await privateRedis({ dir });
    try {
      const cacheClient = async () => {
        const client = new Redis(snapshotted.url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
        client.on('error', () => undefined);
        await client.connect();
        clients.push(client);
        return client;
      };
      const a = await node(await cacheClient());
      const b = await node(await cacheClient());
      const user = `u-${randomBytes(4).toString('hex')}`;
      const laptop = await post(a.app, { user_id: user, device_fingerprint: 'laptop' });
      await untilCached(a, user, 'laptop');
      await untilCached(b, user, 'laptop');
      // The snapshot holds the trusted entry and the generation it was stamped with…
      expect(await redisCommand(snapshotted.port, 'SAVE')).to.equal('+OK');
      // …and the revocation comes after it.
      expect((await del(a.app, `${TD}/${laptop.body.id}?user_id=${user}`)).status).to.equal(204);
      expect((await check(a.app, user, 'laptop')).body.trusted).to.equal(false);
      expect((await check(b.app, user, 'laptop')).body.trusted).to.equal(false);

      await snapshotted.stop();
      await snapshotted.start();
      for (const client of clients.slice(-2)) {
        for (let i = 0; i < 100 && client.status !== 'ready'; i++) await sleep(50);
        expect(client.status).to.equal('ready');
      }
      // Redis is back as it was at the SAVE: the entry that says trusted is there again.
      const back = new Redis(snapshotted.url, { lazyConnect: true });
      await back.connect();
      try {
        expect(await back.keys(`${prefix}*`)).to.have.length.greaterThan(1);
      } finally {
        back.disconnect();
      }
      for (let i = 0; i < 10; i++) {
        for (const inst of [a, b]) expect((await check(inst.app, user, 'laptop')).body, `check ${i}`).to.deep.equal({ trusted: false });
        await sleep(20);
      }
      // The cache is used again (after the hold of a generation it had to make again), and still says false.
      await untilCached(a, user, 'laptop');
      await untilCached(b, user, 'laptop');
      expect((await check(a.app, user, 'laptop')).body.trusted).to.equal(false);
      expect((await check(b.app, user, 'laptop')).body.trusted).to.equal(false);
    } finally {
      await snapshotted.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('/readyz of the example app: 503 while only the cache is down (CONTRACT §7), ready again once it is back; READYZ_CACHE=optional only reports it', async () => {
    const client = await connect();
    const cache = redisCache({ client, keyPrefix: prefix, logger: silentLogger, timeoutMs: 300 });
    caches.push(cache);
    const deps = { storage: knexStorage({ knex: db.knex }), cache, cachePing: () => cache.ping(), internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'readyz-test-jwt-secret-0123456789', logger: pino({ level: 'silent' }) };
    const app = createExampleApp(deps);
    const optional = createExampleApp({ ...deps, readyzCache: 'optional' });
    for (const a of [app, optional]) {
      const res = await request(a).get('/readyz');
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ status: 'ready', storage: 'up', cache: 'up' });
    }
    await redis.stop();
    let res = await request(app).get('/readyz');
    expect(res.status).to.equal(503);
    expect(res.headers['retry-after']).to.equal('5');
    expect(res.body).to.include({ status: 'unavailable', storage: 'up', cache: 'down' });
    res = await request(optional).get('/readyz');
    expect(res.status).to.equal(200);
    expect(res.body).to.include({ status: 'ready', storage: 'up', cache: 'down' });
    // The login check still answers meanwhile, from Postgres.
    const checked = await request(app).get('/internal/session/trusted-devices/check').set({ 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'readyz' }).query({ user_id: 'u1', device_fingerprint: 'fp' });
    expect(checked.status, checked.text).to.equal(200);
    expect(checked.body).to.deep.equal({ trusted: false });
    await redis.start();
    const deadline = Date.now() + 10_000;
    for (;;) {
      res = await request(app).get('/readyz');
      if (res.status === 200) break;
      expect(Date.now(), 'not ready again within 10 s of the cache coming back').to.be.below(deadline);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(res.body).to.include({ status: 'ready', storage: 'up', cache: 'up' });
  });

  it("createExampleApp refuses a readyzCache other than 'required' or 'optional'", () => {
    const deps = { storage: knexStorage({ knex: db.knex }), internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'readyz-test-jwt-secret-0123456789', logger: pino({ level: 'silent' }) };
    expect(() => createExampleApp({ ...deps, readyzCache: 'yes' as never })).to.throw(TypeError, /readyzCache must be 'required' or 'optional'/);
  });
});
