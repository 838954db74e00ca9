/**
 * `DELETE /internal/mfa/user-data` over HTTP on real Postgres and Redis: everything kept about one user goes, in one
 * transaction, and a cached "trusted" goes with it on every instance; other users and tenants keep theirs.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type express from 'express';
import request from 'supertest';
import { deviceSyncRouter, silentLogger, type MfaEventMap, type TrustedDeviceCache } from '../index.js';
import { KEY_A, ring } from './support/fixtures.js';
import { as, JWT_SECRET, mfaApp, oathtool, TestClock } from './support/mfa.js';
import { databaseAndRedis } from './support/suite.js';

const ERASE = '/internal/mfa/user-data';
const internal = (tenant = 'acme') => ({ 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': tenant });

describe('internalRouter: DELETE /internal/mfa/user-data (erasure)', () => {
  const suite = databaseAndRedis();
  let seq = 0;
  const user = (p: string) => `${p}-${++seq}`;

  /** One instance: the MFA and internal routers on the shared storage and a Redis cache, and the sync router. */
  function instance(cache: TrustedDeviceCache, clock: TestClock) {
    const { app, router } = mfaApp(suite.db.storage, { now: clock.now, rateLimit: false, cache, sender: { send: () => undefined } });
    app.use('/mfa/devices/sync', deviceSyncRouter({ storage: suite.db.storage, keyRing: ring, jwt: { secret: JWT_SECRET }, logger: silentLogger }));
    const erased: Array<MfaEventMap['user.erased'][0]> = [];
    router.events.on('user.erased', (e) => erased.push(e));
    return { app, erased };
  }
  const redisOn = (keyPrefix: string) => suite.cacheOn(keyPrefix);

  /** Gives `u` of `tenant` one of everything: a verified TOTP device, an sms device, recovery codes, a trusted device (checked, so cached), a synced vault, a failed attempt. */
  async function everything(app: express.Express, clock: TestClock, u: string, tenant = 'acme') {
    const totp = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), u, tenant);
    expect(totp.status).to.equal(201);
    const secret = totp.body.secret as string;
    expect((await as(request(app).post(`/auth/mfa/devices/${totp.body.device.id}/verify`).send({ code: oathtool(secret, clock.ms) }), u, tenant)).status).to.equal(200);
    clock.step(1);
    const sms = await as(request(app).post('/auth/mfa/devices/sms').send({ deviceName: 'Work phone', phoneNumber: '+15555550123' }), u, tenant);
    expect(sms.status, JSON.stringify(sms.body)).to.equal(201);
    const codes = await as(request(app).post('/auth/mfa/recovery-codes'), u, tenant);
    expect(codes.status).to.equal(201);
    const remembered = await as(request(app).post('/auth/mfa/verify').send({ code: oathtool(secret, clock.ms), rememberDevice: true, device: { fingerprint: 'fp-laptop' } }), u, tenant);
    expect(remembered.status, JSON.stringify(remembered.body)).to.equal(200);
    clock.step(1);
    expect((await check(app, u, 'fp-laptop', tenant)).body.trusted).to.equal(true); // now cached in Redis as trusted
    const sync = await as(request(app).post('/mfa/devices/sync').send({ device_fingerprint: 'fp-phone', device_name: 'Phone', totp_devices: [{ secret: 'JBSWY3DPEHPK3PXP', issuer: 'Example' }] }), u, tenant);
    expect(sync.status).to.equal(201);
    expect((await as(request(app).post('/auth/mfa/verify').send({ code: '000000' }), u, tenant)).status).to.equal(400); // a lockout counter row
    return { recoveryCode: (codes.body.codes as string[])[0]! };
  }

  const check = (app: express.Express, u: string, fingerprint: string, tenant = 'acme') =>
    request(app).get('/internal/session/trusted-devices/check').query({ user_id: u, device_fingerprint: fingerprint }).set(internal(tenant));

  /** What the kit answers about `u` through its routes. */
  async function seen(app: express.Express, u: string, tenant = 'acme') {
    const devices = await as(request(app).get('/auth/mfa/devices'), u, tenant);
    const recovery = await as(request(app).get('/auth/mfa/recovery-codes'), u, tenant);
    const trusted = await request(app).get('/internal/session/trusted-devices').query({ user_id: u, include_expired: true }).set(internal(tenant));
    const vaults = await as(request(app).get('/mfa/devices/sync'), u, tenant);
    return { devices: (devices.body as unknown[]).length, recovery: recovery.body.remaining as number, trusted: trusted.body.total as number, vaults: vaults.body.total as number };
  }

  async function rows(u: string): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const table of ['mfa_devices', 'mfa_otp_codes', 'mfa_recovery_codes', 'trusted_devices', 'sync_records', 'mfa_verification_failures']) {
      const row = await suite.db.knex(table).where({ user_id: u }).count({ n: '*' }).first();
      out[table] = Number(row?.n ?? 0);
    }
    return out;
  }

  it('deletes everything kept about the user in that tenant; a cached "trusted" on another instance ends at once; others keep theirs', async () => {
    const keyPrefix = `test:${randomBytes(6).toString('hex')}:`;
    const clock = new TestClock();
    const one = instance(redisOn(keyPrefix), clock);
    const two = instance(redisOn(keyPrefix), clock);
    const u = user('leaver');
    const stayer = user('stayer');
    const { recoveryCode } = await everything(one.app, clock, u);
    await everything(one.app, clock, stayer);
    await everything(one.app, clock, u, 'other'); // the same user id in another tenant
    // Both instances have "trusted" cached (the second reads it from Redis, no query).
    expect((await check(two.app, u, 'fp-laptop')).body.trusted).to.equal(true);
    expect(await rows(u)).to.deep.equal({ mfa_devices: 4, mfa_otp_codes: 2, mfa_recovery_codes: 20, trusted_devices: 2, sync_records: 2, mfa_verification_failures: 2 });

    const res = await request(two.app).delete(ERASE).query({ user_id: u }).set(internal());
    expect(res.status).to.equal(200);
    expect(res.headers['cache-control']).to.equal('no-store');
    expect(res.body).to.deep.equal({ erased: { mfa_devices: 2, recovery_codes: 10, trusted_devices: 1, sync_records: 1 } });
    expect(two.erased).to.have.length(1);
    expect(two.erased[0]).to.deep.include({ tenantId: 'acme', userId: u, mfaDevices: 2, recoveryCodes: 10, trustedDevices: 1, syncRecords: 1 });

    // The other instance's cached "trusted" is not believed any more.
    expect((await check(one.app, u, 'fp-laptop')).body).to.deep.equal({ trusted: false });
    expect((await check(two.app, u, 'fp-laptop')).body).to.deep.equal({ trusted: false });
    expect(await seen(one.app, u)).to.deep.equal({ devices: 0, recovery: 0, trusted: 0, vaults: 0 });
    // Only the other tenant's rows of that user id are left (the pending sms code went with its device).
    expect(await rows(u)).to.deep.equal({ mfa_devices: 2, mfa_otp_codes: 1, mfa_recovery_codes: 10, trusted_devices: 1, sync_records: 1, mfa_verification_failures: 1 });
    expect(await seen(one.app, u, 'other')).to.deep.equal({ devices: 2, recovery: 10, trusted: 1, vaults: 1 });
    expect((await check(one.app, u, 'fp-laptop', 'other')).body.trusted).to.equal(true);
    expect(await seen(one.app, stayer)).to.deep.equal({ devices: 2, recovery: 10, trusted: 1, vaults: 1 });
    expect((await check(two.app, stayer, 'fp-laptop')).body.trusted).to.equal(true);
    // A recovery code of the erased user opens nothing: there is no second factor left.
    const login = await as(request(one.app).post('/auth/mfa/verify').send({ recoveryCode }), u);
    expect(login.status).to.equal(400);
    expect(login.body.type).to.match(/\/mfa-not-enrolled$/);

    // Again: nothing left, all 0, and still a 200 (a retry after a lost answer is safe).
    const again = await request(one.app).delete(ERASE).query({ user_id: u }).set(internal());
    expect(again.status).to.equal(200);
    expect(again.body).to.deep.equal({ erased: { mfa_devices: 0, recovery_codes: 0, trusted_devices: 0, sync_records: 0 } });
    // A user the kit never saw: all 0.
    const stranger = user('never-seen');
    expect((await request(one.app).delete(ERASE).query({ user_id: stranger }).set(internal())).body.erased).to.deep.equal({ mfa_devices: 0, recovery_codes: 0, trusted_devices: 0, sync_records: 0 });
  });

  it('a first trust still in flight when the erasure starts: the erasure waits for it and deletes it, and the cache does not keep it', async () => {
    const keyPrefix = `test:${randomBytes(6).toString('hex')}:`;
    const clock = new TestClock();
    const one = instance(redisOn(keyPrefix), clock);
    const u = user('in-flight');
    // What a first trust() writes, in its order (the generation row first), not yet committed.
    const trust = await suite.db.knex.transaction();
    try {
      await trust.raw('insert into trusted_device_generations (tenant_id, user_id, generation) values (?, ?, 1)', ['acme', u]);
      await trust('trusted_devices').insert({ tenant_id: 'acme', id: '00000000-0000-4000-8000-00000000f117', user_id: u, fingerprint: 'fp-laptop', trusted_until: new Date(Date.now() + 86_400_000) });
      const erasing = request(one.app).delete(ERASE).query({ user_id: u }).set(internal()).then((r) => r);
      let settled = false;
      void erasing.then(() => (settled = true));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(settled, 'the erasure went on without waiting for the trust in flight').to.equal(false);
      await trust.commit();
      const res = await erasing;
      expect(res.status).to.equal(200);
      expect(res.body.erased).to.include({ trusted_devices: 1 });
    } finally {
      if (!trust.isCompleted()) await trust.rollback();
    }
    expect(await suite.db.knex('trusted_devices').where({ user_id: u }).first()).to.equal(undefined);
    expect((await check(one.app, u, 'fp-laptop')).body).to.deep.equal({ trusted: false });
  });

  it('after the erasure the user can start over (enrol, remember a device) like a new user', async () => {
    const clock = new TestClock();
    const one = instance(redisOn(`test:${randomBytes(6).toString('hex')}:`), clock);
    const u = user('returner');
    await everything(one.app, clock, u);
    expect((await request(one.app).delete(ERASE).query({ user_id: u }).set(internal())).status).to.equal(200);
    clock.step(2);
    await everything(one.app, clock, u);
    expect(await seen(one.app, u)).to.deep.equal({ devices: 2, recovery: 10, trusted: 1, vaults: 1 });
  });

  it('racing the user\'s own writes (enrolment, recovery codes, trust): no deadlock, no error, and nothing from before the erasure is left', async () => {
    const clock = new TestClock();
    const one = instance(redisOn(`test:${randomBytes(6).toString('hex')}:`), clock);
    const u = user('racer');
    await everything(one.app, clock, u);
    const before = await suite.db.knex('mfa_devices').where({ tenant_id: 'acme', user_id: u }).pluck('id');
    const statuses = await Promise.all([
      request(one.app).delete(ERASE).query({ user_id: u }).set(internal()),
      as(request(one.app).post('/auth/mfa/devices/totp').send({ deviceName: 'Tablet' }), u),
      as(request(one.app).post('/auth/mfa/recovery-codes'), u),
      request(one.app).post('/internal/session/trusted-devices').set(internal()).send({ user_id: u, device_fingerprint: 'fp-race' }),
      request(one.app).delete(ERASE).query({ user_id: u }).set(internal()),
    ]).then((all) => all.map((r) => r.status));
    // The erasures succeed; the writes either land before one (and are erased) or after (and stay): never a 5xx.
    expect(statuses[0]).to.equal(200);
    expect(statuses[4]).to.equal(200);
    for (const s of statuses) expect(s).to.be.below(500);
    const left = await suite.db.knex('mfa_devices').where({ tenant_id: 'acme', user_id: u }).pluck('id');
    for (const id of before) expect(left).not.to.include(id);
  });

  it('bad input: a 4xx Problem, and nothing is erased', async () => {
    const clock = new TestClock();
    const one = instance(redisOn(`test:${randomBytes(6).toString('hex')}:`), clock);
    const u = user('kept');
    await everything(one.app, clock, u);
    const before = await rows(u);
    const cases: Array<[request.Test, number]> = [
      [request(one.app).delete(ERASE).set(internal()), 400],
      [request(one.app).delete(ERASE).query({ user_id: '' }).set(internal()), 400],
      [request(one.app).delete(`${ERASE}?user_id=${encodeURIComponent(u)}&user_id=x`).set(internal()), 400],
      [request(one.app).delete(`${ERASE}?user_id=%01${encodeURIComponent(u)}`).set(internal()), 400],
      [request(one.app).delete(ERASE).query({ user_id: `${u}\u2028` }).set(internal()), 400],
      [request(one.app).delete(ERASE).query({ user_id: `\u202E${u}` }).set(internal()), 400],
      [request(one.app).delete(ERASE).query({ user_id: 'x'.repeat(129) }).set(internal()), 400],
      [request(one.app).delete(ERASE).query({ user_id: u, keep: 'sync_records' }).set(internal()), 400],
      [request(one.app).delete(ERASE).query({ user_id: u }).set(internal()).send({ keep: ['sync_records'] }), 400],
      [request(one.app).delete(ERASE).query({ user_id: u }).set({ 'X-Tenant-ID': 'acme' }), 401],
      [request(one.app).delete(ERASE).query({ user_id: u }).set({ 'X-Internal-API-Key': KEY_A }), 400],
      [request(one.app).get(ERASE).query({ user_id: u }).set(internal()), 405],
      [request(one.app).post(ERASE).query({ user_id: u }).set(internal()).send({ user_id: u }), 405],
    ];
    for (const [req, status] of cases) {
      const res = await req;
      expect(res.status, JSON.stringify(res.body)).to.equal(status);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
    }
    expect(await rows(u)).to.deep.equal(before);
    expect(await seen(one.app, u)).to.deep.equal({ devices: 2, recovery: 10, trusted: 1, vaults: 1 });
  });
});
