/**
 * "Remember this device" and the user's trusted-device routes of `mfaDevicesRouter` over HTTP on real
 * Postgres (and Redis across two instances): what the login verify trusts, the internal check sees.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { memoryCache, redisCache, REDIS_CACHE_CLIENT_OPTIONS, silentLogger, type MfaDevicesRouterOptions, type MfaEventMap, type MfaEventName, type TrustedDeviceCache } from '../index.js';
import { KEY_A, migratedStorage, type TestDb } from './support/fixtures.js';
import { as, mfaApp, oathtool, TestClock } from './support/mfa.js';
import { redisUrl, requireRedis } from './support/redis.js';

const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('mfaDevicesRouter: remember this device, trusted devices', () => {
  let db: TestDb;
  let seq = 0;
  const user = (p: string) => `${p}-${++seq}`;

  before(async () => {
    db = await migratedStorage();
  });
  after(async () => {
    await db.drop();
  });

  function setup(options: Partial<MfaDevicesRouterOptions> = {}, cache: TrustedDeviceCache = memoryCache()) {
    const clock = new TestClock();
    const events: Array<{ name: MfaEventName; payload: MfaEventMap[MfaEventName][0] }> = [];
    const { app, router } = mfaApp(db.storage, { now: clock.now, rateLimit: false, cache, ...options });
    for (const name of ['mfa.succeeded', 'trusted_device.created', 'trusted_device.revoked', 'device.removed'] as const) {
      router.events.on(name, (payload: MfaEventMap[typeof name][0]) => events.push({ name, payload }));
    }
    return { app, clock, events };
  }

  async function verifiedDevice(app: express.Express, clock: TestClock, u: string, tenant = 'acme') {
    const res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), u, tenant);
    const ok = await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code: oathtool(res.body.secret as string, clock.ms) }), u, tenant);
    expect(ok.status).to.equal(200);
    clock.step(1);
    return { id: res.body.device.id as string, secret: res.body.secret as string };
  }

  const check = (app: express.Express, u: string, fingerprint: string, tenant = 'acme') =>
    request(app)
      .get('/internal/session/trusted-devices/check')
      .query({ user_id: u, device_fingerprint: fingerprint })
      .set('X-Internal-API-Key', KEY_A)
      .set('X-Tenant-ID', tenant);

  const rememberBody = (code: string, fingerprint: string) => ({
    code,
    rememberDevice: true,
    device: { fingerprint, name: 'Firefox on Linux', type: 'desktop', browser: 'Firefox', os: 'Linux' },
  });

  it('rememberDevice trusts the device: trustedDevice {id, trustedUntil} in the answer, the internal check says trusted', async () => {
    const { app, clock, events } = setup();
    const u = user('remember');
    const d = await verifiedDevice(app, clock, u);
    const fingerprint = `fp-${randomBytes(8).toString('hex')}`;
    expect((await check(app, u, fingerprint)).body).to.deep.equal({ trusted: false });
    events.length = 0;
    const res = await as(request(app).post('/auth/mfa/verify').send(rememberBody(oathtool(d.secret, clock.ms), fingerprint)), u);
    expect(res.status).to.equal(200);
    expect(res.body).to.have.all.keys('verified', 'method', 'deviceId', 'trustedDevice');
    expect(res.body.trustedDevice).to.have.all.keys('id', 'trustedUntil');
    expect(res.body.trustedDevice.trustedUntil).to.match(ISO_MS);
    const days = (Date.parse(res.body.trustedDevice.trustedUntil as string) - Date.now()) / 86_400_000;
    expect(days).to.be.within(29.9, 30.1);
    const checked = await check(app, u, fingerprint);
    expect(checked.body).to.include({ trusted: true, device_id: res.body.trustedDevice.id });
    expect(events.map((e) => e.name)).to.deep.equal(['mfa.succeeded', 'trusted_device.created']);
    expect(events[1]!.payload).to.include({ trustedDeviceId: res.body.trustedDevice.id, userId: u, tenantId: 'acme', via: 'user' });
    expect(JSON.stringify(events)).not.to.contain(fingerprint);
    // Another user or tenant with the same fingerprint is not trusted.
    expect((await check(app, 'someone-else', fingerprint)).body).to.deep.equal({ trusted: false });
    expect((await check(app, u, fingerprint, 'other')).body).to.deep.equal({ trusted: false });
  });

  it('counts a fingerprint and a name in characters as the route does: 512 / 255 emoji are remembered, one more is a 400 before the code is spent', async () => {
    const { app, clock } = setup();
    const u = user('emoji');
    const d = await verifiedDevice(app, clock, u);
    // An emoji is two UTF-16 units: a check by `length` let the route accept these, then failed to remember them.
    const fingerprint = '\u{1F600}'.repeat(512);
    const res = await as(request(app).post('/auth/mfa/verify').send({ code: oathtool(d.secret, clock.ms), rememberDevice: true, device: { fingerprint, name: '\u{1F4BB}'.repeat(255) } }), u);
    expect(res.status, res.text).to.equal(200);
    expect(res.body).to.have.property('trustedDevice');
    expect((await check(app, u, fingerprint)).body).to.include({ trusted: true, device_id: res.body.trustedDevice.id });
    clock.step(1);
    for (const device of [{ fingerprint: '\u{1F600}'.repeat(513) }, { fingerprint: 'fp-emoji-name', name: '\u{1F4BB}'.repeat(256) }]) {
      const refused = await as(request(app).post('/auth/mfa/verify').send({ code: oathtool(d.secret, clock.ms), rememberDevice: true, device }), u);
      expect(refused.status, JSON.stringify(device).slice(0, 40)).to.equal(400);
    }
    // The code those 400s carried was not spent.
    expect((await as(request(app).post('/auth/mfa/verify').send({ code: oathtool(d.secret, clock.ms) }), u)).status).to.equal(200);
    // The internal route draws the same line.
    const internal = (fp: string) =>
      request(app).post('/internal/session/trusted-devices').set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme').send({ user_id: u, device_fingerprint: fp, device_name: '\u{1F4BB}'.repeat(255) });
    expect((await internal('\u{1F601}'.repeat(512))).status).to.equal(201);
    expect((await internal('\u{1F601}'.repeat(513))).status).to.equal(400);
  });

  it('re-remembering the same fingerprint renews it (same id); a failed verify trusts nothing', async () => {
    const { app, clock } = setup();
    const u = user('renew');
    const d = await verifiedDevice(app, clock, u);
    const fingerprint = `fp-${randomBytes(8).toString('hex')}`;
    const first = await as(request(app).post('/auth/mfa/verify').send(rememberBody(oathtool(d.secret, clock.ms), fingerprint)), u);
    clock.step(1);
    const second = await as(request(app).post('/auth/mfa/verify').send(rememberBody(oathtool(d.secret, clock.ms), fingerprint)), u);
    expect(second.body.trustedDevice.id).to.equal(first.body.trustedDevice.id);
    const other = `fp-${randomBytes(8).toString('hex')}`;
    const failed = await as(request(app).post('/auth/mfa/verify').send(rememberBody(oathtool(d.secret, clock.ms), other)), u); // replay
    expect(failed.status).to.equal(400);
    expect((await check(app, u, other)).body).to.deep.equal({ trusted: false });
  });

  it('a device detail with a control character is a 400 naming it, and loses nothing: the code still verifies', async () => {
    const { app, clock } = setup();
    const u = user('control');
    const d = await verifiedDevice(app, clock, u);
    clock.step(1);
    const code = oathtool(d.secret, clock.ms);
    const fingerprint = `fp-${randomBytes(8).toString('hex')}`;
    const body = rememberBody(code, fingerprint);
    const bad = await as(request(app).post('/auth/mfa/verify').send({ ...body, device: { ...body.device, name: 'Firefox\nTrusted by admin' } }), u);
    expect(bad.status).to.equal(400);
    expect(bad.body.errors[0]).to.deep.include({ field: 'device.name', code: 'format' });
    expect((await check(app, u, fingerprint)).body).to.deep.equal({ trusted: false });
    const good = await as(request(app).post('/auth/mfa/verify').send(body), u);
    expect(good.status).to.equal(200);
    expect((await check(app, u, fingerprint)).body.trusted).to.equal(true);
  });

  it('without rememberDevice (or with it false) nothing is trusted; a recovery code can remember too', async () => {
    const { app, clock } = setup();
    const u = user('no-remember');
    const d = await verifiedDevice(app, clock, u);
    const fingerprint = `fp-${randomBytes(8).toString('hex')}`;
    const res = await as(request(app).post('/auth/mfa/verify').send({ code: oathtool(d.secret, clock.ms), rememberDevice: false, device: { fingerprint } }), u);
    expect(res.status).to.equal(200);
    expect(res.body).not.to.have.property('trustedDevice');
    expect((await check(app, u, fingerprint)).body.trusted).to.equal(false);
    const codes = (await as(request(app).post('/auth/mfa/recovery-codes'), u)).body.codes as string[];
    const viaRecovery = await as(request(app).post('/auth/mfa/verify').send({ recoveryCode: codes[0], rememberDevice: true, device: { fingerprint } }), u);
    expect(viaRecovery.body).to.include({ verified: true, method: 'recovery_code', recoveryCodesRemaining: 9 });
    expect(viaRecovery.body.trustedDevice.id).to.be.a('string');
    expect((await check(app, u, fingerprint)).body.trusted).to.equal(true);
  });

  it('onVerified sees the trusted device, and after a recovery code how many are left', async () => {
    const seen: Array<{ trustedDevice?: unknown; recoveryCodesRemaining?: number; method: string }> = [];
    const { app, clock } = setup({
      onVerified: (ctx) => {
        seen.push({ method: ctx.method, ...(ctx.trustedDevice && { trustedDevice: ctx.trustedDevice }), ...(ctx.recoveryCodesRemaining !== undefined && { recoveryCodesRemaining: ctx.recoveryCodesRemaining }) });
      },
    });
    const u = user('hook');
    const d = await verifiedDevice(app, clock, u);
    const res = await as(request(app).post('/auth/mfa/verify').send(rememberBody(oathtool(d.secret, clock.ms), 'fp-hook')), u);
    expect(seen[0]!.trustedDevice).to.deep.include({ id: res.body.trustedDevice.id });
    expect((seen[0]!.trustedDevice as { trustedUntil: Date }).trustedUntil).to.be.instanceOf(Date);
    expect(seen[0]).to.not.have.property('recoveryCodesRemaining');
    const codes = (await as(request(app).post('/auth/mfa/recovery-codes'), u)).body.codes as string[];
    expect((await as(request(app).post('/auth/mfa/verify').send({ recoveryCode: codes[3] }), u)).status).to.equal(200);
    expect(seen[1]).to.deep.equal({ method: 'recovery_code', recoveryCodesRemaining: 9 });
  });

  describe('GET/DELETE /auth/mfa/trusted-devices', () => {
    it('lists the caller’s own trusted devices (camelCase, no fingerprint), newest first; others see nothing', async () => {
      const { app, clock } = setup();
      const u = user('list');
      const d = await verifiedDevice(app, clock, u);
      await as(request(app).post('/auth/mfa/verify').send(rememberBody(oathtool(d.secret, clock.ms), 'fp-list-1')), u);
      clock.step(1);
      await as(request(app).post('/auth/mfa/verify').send({ code: oathtool(d.secret, clock.ms), rememberDevice: true, device: { fingerprint: 'fp-list-2' } }), u);
      const res = await as(request(app).get('/auth/mfa/trusted-devices'), u);
      expect(res.status).to.equal(200);
      expect(res.headers['x-total-count']).to.equal('2');
      expect(res.body).to.have.length(2);
      expect(res.body[0]).to.have.all.keys('id', 'ip', 'createdAt', 'trustedUntil');
      expect(res.body[1]).to.include({ deviceName: 'Firefox on Linux', deviceType: 'desktop', browser: 'Firefox', os: 'Linux' });
      expect(res.body[1].ip).to.match(/127\.0\.0\.1|::1/);
      expect(res.body[1].createdAt).to.match(ISO_MS);
      expect(JSON.stringify(res.body)).not.to.contain('fp-list');
      expect((await as(request(app).get('/auth/mfa/trusted-devices'), 'stranger')).body).to.deep.equal([]);
      expect((await as(request(app).get('/auth/mfa/trusted-devices'), u, 'other')).body).to.deep.equal([]);
    });

    it('page and page_size page the list (newest first, 20 by default), X-Total-Count the whole; bad values → 400', async () => {
      const { app, clock } = setup();
      const u = user('pages');
      const d = await verifiedDevice(app, clock, u);
      const ids: string[] = [];
      for (const fp of ['fp-p-1', 'fp-p-2', 'fp-p-3']) {
        const res = await as(request(app).post('/auth/mfa/verify').send({ code: oathtool(d.secret, clock.ms), rememberDevice: true, device: { fingerprint: fp } }), u);
        ids.unshift(res.body.trustedDevice.id as string);
        clock.step(1);
      }
      const list = async (query: string) => as(request(app).get(`/auth/mfa/trusted-devices${query}`), u);
      const idsOf = (body: unknown) => (body as Array<{ id: string }>).map((t) => t.id);
      expect(idsOf((await list('')).body)).to.deep.equal(ids);
      // One past its trustedUntil: not listed, not counted.
      await db.knex('trusted_devices').where({ tenant_id: 'acme', id: ids[1] }).update({ trusted_until: new Date(Date.now() - 1000) });
      const live = await list('');
      expect(idsOf(live.body)).to.deep.equal([ids[0], ids[2]]);
      expect(live.headers['x-total-count']).to.equal('2');
      await db.knex('trusted_devices').where({ tenant_id: 'acme', id: ids[1] }).update({ trusted_until: new Date(Date.now() + 86_400_000) });
      let res = await list('?page=2&page_size=2');
      expect(res.status).to.equal(200);
      expect(idsOf(res.body)).to.deep.equal(ids.slice(2));
      expect(res.headers['x-total-count']).to.equal('3');
      res = await list('?page=3&page_size=2');
      expect(res.body).to.deep.equal([]);
      expect(res.headers['x-total-count']).to.equal('3');
      for (const bad of ['?page=abc', '?page=0', '?page_size=1000']) expect((await list(bad)).status, bad).to.equal(400);
      // page_size defaults to 20, as on every list (CONTRACT.md §3).
      const now = new Date(clock.ms);
      for (let i = 0; i < 20; i++) await db.storage.trustedDevices.upsert('acme', u, { fingerprint: `fp-bulk-${i}`, trustedUntil: new Date(clock.ms + 86_400_000) }, now);
      res = await list('');
      expect(res.body).to.have.length(20);
      expect(res.headers['x-total-count']).to.equal('23');
      expect((await list('?page=2')).body).to.have.length(3);
    });

    it('DELETE one → 204 and the internal check is false at once; again → 404; another user’s → 404', async () => {
      const { app, clock, events } = setup();
      const u = user('revoke');
      const d = await verifiedDevice(app, clock, u);
      const trusted = (await as(request(app).post('/auth/mfa/verify').send(rememberBody(oathtool(d.secret, clock.ms), 'fp-revoke')), u)).body.trustedDevice as { id: string };
      expect((await check(app, u, 'fp-revoke')).body.trusted).to.equal(true);
      expect((await as(request(app).delete(`/auth/mfa/trusted-devices/${trusted.id}`), 'thief')).status).to.equal(404);
      expect((await as(request(app).delete(`/auth/mfa/trusted-devices/${trusted.id}`), u, 'other')).status).to.equal(404);
      expect((await check(app, u, 'fp-revoke')).body.trusted).to.equal(true);
      const res = await as(request(app).delete(`/auth/mfa/trusted-devices/${trusted.id}`), u);
      expect(res.status).to.equal(204);
      expect((await check(app, u, 'fp-revoke')).body).to.deep.equal({ trusted: false });
      const again = await as(request(app).delete(`/auth/mfa/trusted-devices/${trusted.id}`), u);
      expect(again.status).to.equal(404);
      expect(again.body.code).to.equal(40400003);
      expect((await as(request(app).delete('/auth/mfa/trusted-devices/not-a-uuid'), u)).status).to.equal(404);
      expect(events.filter((e) => e.name === 'trusted_device.revoked').map((e) => e.payload)).to.have.length(1);
    });

    it('DELETE all → 200 {revoked: n}; every check false; DELETE …/trusted-devices/ (empty id) → 404, nothing revoked', async () => {
      const { app, clock } = setup();
      const u = user('revoke-all');
      const d = await verifiedDevice(app, clock, u);
      for (const fp of ['fp-a', 'fp-b', 'fp-c']) {
        await as(request(app).post('/auth/mfa/verify').send(rememberBody(oathtool(d.secret, clock.ms), fp)), u);
        clock.step(1);
      }
      // An empty id (a trailing slash) names no device: 404, and nothing is revoked.
      const empty = await as(request(app).delete('/auth/mfa/trusted-devices/'), u);
      expect(empty.status).to.equal(404);
      expect(empty.body.code).to.equal(40400003);
      for (const fp of ['fp-a', 'fp-b', 'fp-c']) expect((await check(app, u, fp)).body.trusted, fp).to.equal(true);
      // Nor does a parameter the route does not take, or a body: a 400 (was: every device revoked).
      const listed = (await as(request(app).get('/auth/mfa/trusted-devices'), u)).body as Array<{ id: string }>;
      for (const req of [request(app).delete('/auth/mfa/trusted-devices').query({ id: listed[0]!.id }), request(app).delete('/auth/mfa/trusted-devices').send({ id: listed[0]!.id })]) {
        const refused = await as(req, u);
        expect(refused.status).to.equal(400);
        expect(refused.body.errors[0].code).to.equal('unknown');
      }
      for (const fp of ['fp-a', 'fp-b', 'fp-c']) expect((await check(app, u, fp)).body.trusted, fp).to.equal(true);
      const res = await as(request(app).delete('/auth/mfa/trusted-devices'), u);
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ revoked: 3 });
      for (const fp of ['fp-a', 'fp-b', 'fp-c']) expect((await check(app, u, fp)).body.trusted).to.equal(false);
      expect((await as(request(app).delete('/auth/mfa/trusted-devices'), u)).body).to.deep.equal({ revoked: 0 });
    });
  });

  describe('removing the last verified device', () => {
    it('revokes the user’s trusted devices; removing one of two does not', async () => {
      const { app, clock, events } = setup();
      const u = user('last');
      const a = await verifiedDevice(app, clock, u);
      const b = await verifiedDevice(app, clock, u);
      await as(request(app).post('/auth/mfa/verify').send(rememberBody(oathtool(a.secret, clock.ms), 'fp-last')), u);
      const pending = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Pending' }), u);
      expect((await as(request(app).delete(`/auth/mfa/devices/${a.id}`), u)).status).to.equal(204);
      expect((await check(app, u, 'fp-last')).body.trusted).to.equal(true);
      expect((await as(request(app).delete(`/auth/mfa/devices/${b.id}`), u)).status).to.equal(204);
      // Only an unverified enrolment is left: no second factor, so no remembered device either.
      expect((await check(app, u, 'fp-last')).body).to.deep.equal({ trusted: false });
      const revoked = events.filter((e) => e.name === 'trusted_device.revoked');
      expect(revoked).to.have.length(1);
      expect(revoked[0]!.payload).to.include({ count: 1, reason: 'last_device_removed' });
      const left = (await as(request(app).get('/auth/mfa/devices'), u)).body as Array<{ id: string }>;
      expect(left.map((x) => x.id)).to.deep.equal([pending.body.device.id]);
    });
  });

  describe('two instances on Redis', () => {
    let url: string;
    const clients: Redis[] = [];
    before(async function () {
      const found = await redisUrl();
      requireRedis(this, found);
      url = found;
    });
    after(() => {
      for (const c of clients) c.disconnect();
    });

    it('remembered on one instance → trusted on the other; revoked on the other → refused on the first', async () => {
      const keyPrefix = `test:${randomBytes(6).toString('hex')}:`;
      const cacheOn = () => {
        const client = new Redis(url, REDIS_CACHE_CLIENT_OPTIONS);
        client.on('error', () => undefined);
        clients.push(client);
        return redisCache({ client, keyPrefix, logger: silentLogger });
      };
      const one = setup({}, cacheOn());
      const two = setup({}, cacheOn());
      const u = user('redis');
      const d = await verifiedDevice(one.app, one.clock, u);
      // Warm the second instance's cache with "not trusted" first: the trust must still show at once.
      expect((await check(two.app, u, 'fp-redis')).body.trusted).to.equal(false);
      const res = await as(request(one.app).post('/auth/mfa/verify').send(rememberBody(oathtool(d.secret, one.clock.ms), 'fp-redis')), u);
      expect(res.status).to.equal(200);
      expect((await check(two.app, u, 'fp-redis')).body).to.include({ trusted: true, device_id: res.body.trustedDevice.id });
      expect((await check(one.app, u, 'fp-redis')).body.trusted).to.equal(true);
      expect((await as(request(two.app).delete(`/auth/mfa/trusted-devices/${res.body.trustedDevice.id}`), u)).status).to.equal(204);
      expect((await check(one.app, u, 'fp-redis')).body).to.deep.equal({ trusted: false });
    });
  });
});
