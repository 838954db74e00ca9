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
import { createTrustedDevices, redisCache, REDIS_CACHE_CLIENT_OPTIONS, silentLogger, type MfaStorage, type MfaDeviceStore, type TrustedDeviceCache, type TrustedDeviceStore, type UserDataStore } from '../index.js';
import { KEY_A, migratedStorage, type TestDb } from './support/fixtures.js';
import { as, mfaApp, oathtool } from './support/mfa.js';
import { redisUrl, requireRedis } from './support/redis.js';

const internal = { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' };
const never = new Promise<never>(() => undefined);

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
    const url = await redisUrl();
    requireRedis(this, url);
    db = await migratedStorage();
    client = new Redis(url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    await client.connect();
    cache = redisCache({ client, keyPrefix: `crash:${randomBytes(4).toString('hex')}:`, logger: silentLogger });
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

describe('a revocation on an instance that has not yet read the newest cache epoch (shared Redis)', function () {
  this.timeout(30_000);
  let db: TestDb;
  let client: Redis;
  let cache: TrustedDeviceCache;
  const services: Array<{ close(): void }> = [];

  before(async function () {
    const url = await redisUrl();
    requireRedis(this, url);
    db = await migratedStorage();
    client = new Redis(url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    await client.connect();
    cache = redisCache({ client, keyPrefix: `split:${randomBytes(4).toString('hex')}:`, logger: silentLogger });
  });
  after(async () => {
    for (const service of services) service.close();
    await cache?.close?.();
    client?.disconnect();
    await db?.drop();
  });

  it('another instance that read the bumped epoch and cached "trusted" under it answers false once the revocation returns', async () => {
    // The writer re-reads the epoch every second: each read is awaited here, so the bump below lands right after one.
    let epochRead: (() => void) | undefined;
    const store = Object.create(db.storage.trustedDevices) as TrustedDeviceStore;
    store.cacheEpoch = async () => {
      const epoch = await db.storage.trustedDevices.cacheEpoch();
      epochRead?.();
      return epoch;
    };
    const writer = createTrustedDevices({ storage: { trustedDevices: store }, cache, logger: silentLogger, epochRefreshMs: 1000 });
    const reader = createTrustedDevices({ storage: db.storage, cache, logger: silentLogger, epochRefreshMs: 20 });
    services.push(writer, reader);
    const device = await writer.trust('acme', 'split', { fingerprint: 'fp-split' });
    expect(await reader.check('acme', 'split', 'fp-split')).to.include({ trusted: true });

    // The writer has just read epoch E; another instance, whose cache call failed, bumps it to E + 1.
    await new Promise<void>((resolve) => (epochRead = resolve));
    epochRead = undefined;
    await db.storage.trustedDevices.bumpCacheEpoch();
    // The reader reads E + 1 within 20 ms, misses, and caches "trusted" under E + 1; the writer still uses E.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await reader.check('acme', 'split', 'fp-split')).to.include({ trusted: true });
    expect(await reader.check('acme', 'split', 'fp-split')).to.include({ trusted: true });

    expect(await writer.revoke('acme', 'split', device.id)).to.equal(true);
    expect(await reader.check('acme', 'split', 'fp-split')).to.deep.equal({ trusted: false });
    expect(await writer.check('acme', 'split', 'fp-split')).to.deep.equal({ trusted: false });
  });
});
