/**
 * An instance that dies right after a change of a user's trusted devices commits (killed, out of memory, a deploy
 * that does not drain) leaves no cached "trusted" behind: the cache is told in the change's transaction, before the
 * commit (lib/trusted-devices.ts, point 3). Each writer's storage call is wrapped so that, once the real call has
 * committed and returned, the "instance" never goes on: no step after the commit runs. Another instance on the same
 * Postgres and Redis must then answer "not trusted" at once.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { createTrustedDevices, isStorageUnavailable, redisCache, REDIS_CACHE_CLIENT_OPTIONS, silentLogger, type TrustScope, type MfaStorage, type MfaDeviceStore, type TrustedDeviceCache, type TrustedDeviceStore, type UserDataStore } from '../index.js';
import { KEY_A, migratedStorage, type TestDb } from './support/fixtures.js';
import { as, mfaApp, oathtool } from './support/mfa.js';
import { redisUrl, requireRedis } from './support/redis.js';

const internal = { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' };
const never = new Promise<never>(() => undefined);

/** A migrated database of its own, and the shared Redis (REDIS_URL) under a key prefix of its own. */
async function databaseAndCache(ctx: Mocha.Context, name: string): Promise<{ db: TestDb; client: Redis; cache: TrustedDeviceCache }> {
  const url = await redisUrl();
  requireRedis(ctx, url);
  const db = await migratedStorage();
  const client = new Redis(url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
  await client.connect();
  return { db, client, cache: redisCache({ client, keyPrefix: `${name}:${randomBytes(4).toString('hex')}:`, logger: silentLogger }) };
}

describe('an instance that dies right after a change of trusted devices commits (shared Redis)', function () {
  this.timeout(30_000);
  let db: TestDb;
  let client: Redis;
  let cache: TrustedDeviceCache;
  /** The instance that dies after each commit, and a healthy one on the same database and Redis. */
  let dying: express.Express;
  let healthy: express.Express;
  /** Every call the dying instance's storage made, so a test can wait for the commit it stops after. */
  let committed: string[];
  let seq = 0;

  before(async function () {
    ({ db, client, cache } = await databaseAndCache(this, 'crash'));
    committed = [];
    /** `name` commits as usual, then the instance is gone: its caller never hears back. */
    const dies = <A extends unknown[], R>(name: string, call: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        await call(...args);
        committed.push(name);
        return never;
      };
    const real = db.storage;
    const trustedDevices = Object.create(real.trustedDevices) as TrustedDeviceStore;
    trustedDevices.revoke = dies('revoke', real.trustedDevices.revoke.bind(real.trustedDevices));
    trustedDevices.revokeAll = dies('revokeAll', real.trustedDevices.revokeAll.bind(real.trustedDevices));
    const mfaDevices = Object.create(real.mfaDevices) as MfaDeviceStore;
    mfaDevices.remove = dies('remove', real.mfaDevices.remove.bind(real.mfaDevices));
    const users = Object.create(real.users) as UserDataStore;
    users.erase = dies('erase', real.users.erase.bind(real.users));
    const storage: MfaStorage = Object.assign(Object.create(real) as MfaStorage, { trustedDevices, mfaDevices, users });
    dying = mfaApp(storage, { rateLimit: false, cache }).app;
    healthy = mfaApp(real, { rateLimit: false, cache }).app;
  });
  after(async () => {
    await cache?.close?.();
    client?.disconnect();
    await db?.drop();
  });

  const check = (user: string) =>
    request(healthy).get('/internal/session/trusted-devices/check').query({ user_id: user, device_fingerprint: 'fp-laptop' }).set(internal);

  /** A user with a verified TOTP device and a trusted laptop whose "trusted" is in the cache. */
  async function trustedUser(): Promise<{ user: string; deviceId: string; trustedId: string }> {
    const user = `crash-${++seq}`;
    const enrol = await as(request(healthy).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), user);
    expect(enrol.status, enrol.text).to.equal(201);
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    expect((await as(request(healthy).post(`/auth/mfa/devices/${device.id}/verify`).send({ code: oathtool(secret, Date.now()) }), user)).status).to.equal(200);
    const trust = await request(healthy).post('/internal/session/trusted-devices').set(internal).send({ user_id: user, device_fingerprint: 'fp-laptop' });
    expect(trust.status, trust.text).to.equal(201);
    // Twice: the second answer is the cache's (the trust wrote it through); the healthy instance reads no row for it.
    for (let i = 0; i < 2; i++) expect((await check(user)).body).to.include({ trusted: true });
    const cachedKeys = await client.keys('crash:*');
    expect(cachedKeys.length, 'the cache holds entries').to.be.greaterThan(0);
    return { user, deviceId: device.id, trustedId: (trust.body as { id: string }).id };
  }

  /** Starts `send` on the dying instance (it never answers) and waits for the storage call `name` to commit. */
  async function diesAfter(name: string, send: () => request.Test): Promise<void> {
    const before = committed.length;
    send().end(() => undefined);
    const deadline = Date.now() + 10_000;
    while (!committed.slice(before).includes(name)) {
      if (Date.now() > deadline) throw new Error(`${name} did not commit within 10 s`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  const changes: Record<string, { call: string; send: (u: { user: string; deviceId: string; trustedId: string }) => request.Test }> = {
    'an internal revocation of the device': { call: 'revoke', send: ({ user, trustedId }) => request(dying).delete(`/internal/session/trusted-devices/${trustedId}`).query({ user_id: user }).set(internal) },
    "the user's own revocation of the device": { call: 'revoke', send: ({ user, trustedId }) => as(request(dying).delete(`/auth/mfa/trusted-devices/${trustedId}`), user) },
    'a revocation of all the devices': { call: 'revokeAll', send: ({ user }) => request(dying).delete('/internal/session/trusted-devices').query({ user_id: user }).set(internal) },
    'the removal of the last MFA device': { call: 'remove', send: ({ user, deviceId }) => request(dying).delete(`/internal/mfa/totp/devices/${deviceId}`).query({ user_id: user }).set(internal) },
    'the erasure of the user': { call: 'erase', send: ({ user }) => request(dying).delete('/internal/mfa/user-data').query({ user_id: user }).set(internal) },
  };

  for (const [what, { call, send }] of Object.entries(changes)) {
    it(`${what} commits and the instance dies before its next step: another instance answers "not trusted" at once`, async () => {
      const trusted = await trustedUser();
      await diesAfter(call, () => send(trusted));
      const answer = await check(trusted.user);
      expect(answer.status).to.equal(200);
      expect(answer.body).to.deep.equal({ trusted: false });
    });
  }
});

describe('a revocation while instances use different cache epochs for a moment (shared Redis)', function () {
  this.timeout(30_000);
  let db: TestDb;
  let client: Redis;
  let cache: TrustedDeviceCache;
  const services: Array<{ close(): void }> = [];
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  // A database each: every test moves the one cache epoch.
  beforeEach(async function () {
    ({ db, client, cache } = await databaseAndCache(this, 'split'));
  });
  afterEach(async () => {
    for (const service of services.splice(0)) service.close();
    await cache?.close?.();
    client?.disconnect();
    await db?.drop();
  });

  /**
   * A writer still on epoch E (it re-reads the epoch every second, and read it just before the bump below) and a
   * reader that has read E + 1 and cached "trusted" under it.
   */
  async function split(user: string, writerStore: TrustedDeviceStore = db.storage.trustedDevices, writerCache: TrustedDeviceCache = cache) {
    let epochRead: (() => void) | undefined;
    const store = Object.create(writerStore) as TrustedDeviceStore;
    store.cacheEpoch = async () => {
      const epoch = await db.storage.trustedDevices.cacheEpoch();
      epochRead?.();
      return epoch;
    };
    const writer = createTrustedDevices({ storage: { trustedDevices: store }, cache: writerCache, logger: silentLogger, epochRefreshMs: 1000 });
    const reader = createTrustedDevices({ storage: db.storage, cache, logger: silentLogger, epochRefreshMs: 20 });
    services.push(writer, reader);
    const device = await writer.trust('acme', user, { fingerprint: 'fp' });
    expect(await reader.check('acme', user, 'fp')).to.include({ trusted: true });
    // The writer has just read epoch E; another instance, whose cache call failed, bumps it to E + 1.
    await new Promise<void>((resolve) => (epochRead = resolve));
    epochRead = undefined;
    const bumped = await db.storage.trustedDevices.bumpCacheEpoch();
    // The reader reads E + 1 within 20 ms, misses, and caches "trusted" under E + 1; the writer still uses E.
    await sleep(100);
    for (let i = 0; i < 2; i++) expect(await reader.check('acme', user, 'fp')).to.include({ trusted: true });
    return { writer, reader, device, bumped };
  }

  /** The cache, except that a raise under `failing.epoch` fails (a Redis timeout). */
  function failingUnder(failing: { epoch?: number | undefined }): TrustedDeviceCache {
    return Object.assign(Object.create(cache) as TrustedDeviceCache, {
      invalidate: (scope: TrustScope, generation: number) => (scope.epoch === failing.epoch ? Promise.reject(new Error('Command timed out')) : cache.invalidate(scope, generation)),
    });
  }

  it('the reader answers false once the revocation returns: the writer raised under the newest epoch too', async () => {
    const { writer, reader, device } = await split('newest');
    expect(await writer.revoke('acme', 'newest', device.id)).to.equal(true);
    expect(await reader.check('acme', 'newest', 'fp')).to.deep.equal({ trusted: false });
    expect(await writer.check('acme', 'newest', 'fp')).to.deep.equal({ trusted: false });
  });

  it('the raise under the newest epoch times out and the writer dies right after its commit: the change was run again, bumping the epoch, and the reader answers false', async () => {
    const failing: { epoch?: number | undefined } = {};
    let committed = false;
    const dying = Object.create(db.storage.trustedDevices) as TrustedDeviceStore;
    dying.revoke = async (...args: Parameters<TrustedDeviceStore['revoke']>) => {
      await db.storage.trustedDevices.revoke(...args);
      committed = true;
      return never;
    };
    const { writer, reader, device, bumped } = await split('held', dying, failingUnder(failing));
    failing.epoch = bumped;
    void writer.revoke('acme', 'held', device.id);
    while (!committed) await sleep(5);
    expect(await db.storage.trustedDevices.cacheEpoch()).to.equal(bumped + 1);
    // What point 4 bounds: an instance reads the new epoch within 2 × its epochRefreshMs (here 40 ms) of the bump.
    await sleep(60);
    for (let i = 0; i < 3; i++) {
      expect(await reader.check('acme', 'held', 'fp')).to.deep.equal({ trusted: false });
      await sleep(300);
    }
  });

  it('the same, the writer alive (and Postgres refusing its own standalone bumps): the revocation answers after the bump\'s window, and false everywhere', async () => {
    const failing: { epoch?: number | undefined } = {};
    const store = Object.create(db.storage.trustedDevices) as TrustedDeviceStore;
    store.bumpCacheEpoch = () => Promise.reject(new Error('the database refused'));
    const { writer, reader, device, bumped } = await split('alive', store, failingUnder(failing));
    failing.epoch = bumped;
    const started = Date.now();
    expect(await writer.revoke('acme', 'alive', device.id)).to.equal(true);
    expect(Date.now() - started).to.be.at.least(2000); // 2 × epochRefreshMs of the writer
    expect(await reader.check('acme', 'alive', 'fp')).to.deep.equal({ trusted: false });
  });

  it('a store that does not call beforeCommit: a revocation right after a bump answers once an instance still on the epoch before has moved on', async () => {
    const hookless = Object.create(db.storage.trustedDevices) as TrustedDeviceStore;
    hookless.revoke = (tenantId, userId, id) => db.storage.trustedDevices.revoke(tenantId, userId, id);
    const setup = createTrustedDevices({ storage: db.storage, cache, logger: silentLogger, epochRefreshMs: 1000 });
    const stale = createTrustedDevices({ storage: db.storage, cache, logger: silentLogger, epochRefreshMs: 1000 });
    services.push(setup, stale);
    const device = await setup.trust('acme', 'hookless', { fingerprint: 'fp' });
    for (let i = 0; i < 2; i++) expect(await stale.check('acme', 'hookless', 'fp')).to.include({ trusted: true });
    await db.storage.trustedDevices.bumpCacheEpoch();
    const writer = createTrustedDevices({ storage: { trustedDevices: hookless }, cache, logger: silentLogger, epochRefreshMs: 1000 });
    services.push(writer);
    expect(await writer.revoke('acme', 'hookless', device.id)).to.equal(true);
    expect(await stale.check('acme', 'hookless', 'fp')).to.deep.equal({ trusted: false });
  });

  it('a bump that waited for a writer holding the epoch is dated when it is written, not when it began waiting', async () => {
    const setup = createTrustedDevices({ storage: db.storage, cache, logger: silentLogger, epochRefreshMs: 1000 });
    services.push(setup);
    const device = await setup.trust('acme', 'waited', { fingerprint: 'fp' });
    // A writer's transaction holds the epoch (as hold() does) for 1.5 s; a bump waits behind it.
    const trx = await db.knex.transaction();
    await trx.raw('select epoch from trusted_device_cache_epoch for share');
    const bump = db.storage.trustedDevices.bumpCacheEpoch();
    await sleep(1400);
    // An instance starting now reads the epoch before the bump, and caches "trusted" under it.
    const reader = createTrustedDevices({ storage: db.storage, cache, logger: silentLogger, epochRefreshMs: 1000 });
    services.push(reader);
    for (let i = 0; i < 2; i++) expect(await reader.check('acme', 'waited', 'fp')).to.include({ trusted: true });
    await sleep(100);
    await trx.commit();
    await bump;
    const writer = createTrustedDevices({ storage: db.storage, cache, logger: silentLogger, epochRefreshMs: 1000 });
    services.push(writer);
    expect(await writer.revoke('acme', 'waited', device.id)).to.equal(true);
    expect(await reader.check('acme', 'waited', 'fp')).to.deep.equal({ trusted: false });
  });

  it('a bump behind a holder of the epoch that hangs gives up after 2 s: its revocation fails as storage unavailable, nothing revoked, and goes through once the holder is gone', async () => {
    const failing: { epoch?: number | undefined } = {};
    const writer = createTrustedDevices({ storage: db.storage, cache: failingUnder(failing), logger: silentLogger, epochRefreshMs: 1000 });
    services.push(writer);
    const device = await writer.trust('acme', 'frozen', { fingerprint: 'fp' });
    failing.epoch = await db.storage.trustedDevices.cacheEpoch();
    const holder = await db.knex.transaction();
    try {
      await holder.raw('select epoch from trusted_device_cache_epoch for share');
      const started = Date.now();
      const refused = await writer.revoke('acme', 'frozen', device.id).then(() => undefined, (err: unknown) => err);
      expect(Date.now() - started).to.be.within(1500, 6000);
      expect(isStorageUnavailable(refused), String(refused)).to.equal(true);
      expect(await db.knex('trusted_devices').where({ user_id: 'frozen' }).count({ n: '*' })).to.deep.equal([{ n: '1' }]);
    } finally {
      await holder.commit();
    }
    expect(await writer.revoke('acme', 'frozen', device.id)).to.equal(true);
    expect(await writer.check('acme', 'frozen', 'fp')).to.deep.equal({ trusted: false });
  });

  it("a store that runs its transaction again: what the rolled-back attempt's hook did is not kept", async () => {
    let real = 0;
    const failing: { epoch?: number | undefined } = {};
    const store = Object.create(db.storage.trustedDevices) as TrustedDeviceStore;
    store.revoke = async (tenantId, userId, id, beforeCommit) => {
      // Attempt 1: the raise fails, the hook bumps the epoch in the transaction, which then rolls back (a serialization failure, say).
      await beforeCommit!(7, { read: () => Promise.resolve(real), hold: () => Promise.resolve({ epoch: real, sinceBumpMs: null }), bump: () => Promise.resolve(real + 1) });
      failing.epoch = undefined;
      await sleep(10); // past cacheRetryMs: the cache is used again
      // Attempt 2: the raise lands; this one commits.
      await beforeCommit!(7, { read: () => Promise.resolve(real), hold: () => Promise.resolve({ epoch: real, sinceBumpMs: null }), bump: () => Promise.resolve(real + 1) });
      return db.storage.trustedDevices.revoke(tenantId, userId, id);
    };
    const seen: number[] = [];
    const spying = Object.assign(failingUnder(failing), {
      get: (scope: TrustScope, fingerprint: string) => {
        seen.push(scope.epoch);
        return cache.get(scope, fingerprint);
      },
    });
    const service = createTrustedDevices({ storage: { trustedDevices: store }, cache: spying, logger: silentLogger, epochRefreshMs: 1000, cacheRetryMs: 1 });
    services.push(service);
    const device = await service.trust('acme', 'retried', { fingerprint: 'fp' });
    real = await db.storage.trustedDevices.cacheEpoch();
    failing.epoch = real;
    expect(await service.revoke('acme', 'retried', device.id)).to.equal(true);
    expect(await service.check('acme', 'retried', 'fp')).to.deep.equal({ trusted: false });
    expect(seen.at(-1), 'the epoch the instance uses after the revocation').to.equal(real);
  });
});
