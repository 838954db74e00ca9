/**
 * Code verification over HTTP on real Postgres and Redis: the login second factor, the internal
 * verify route, replay refusal, the step window, the shared lockout, rate limiting, two instances
 * racing on one code, the onVerified hook, and the events (never carrying a code).
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type express from 'express';
import { Redis } from 'ioredis';
import { knex as createKnex, type Knex } from 'knex';
import request from 'supertest';
import { knexStorage, ProblemError, silentLogger, type KnexStorage, type MfaDevicesRouterOptions, type MfaEventMap, type MfaEventName, type VerificationThrottleStore } from '../index.js';
import { insertDevice, KEY_A } from './support/fixtures.js';
import { racingDevices } from './support/racing.js';
import { as, mfaApp, oathtool, TestClock, token } from './support/mfa.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { privateRedis, redisUrl, requireRedis } from './support/redis.js';

type Recorded = { name: MfaEventName; payload: MfaEventMap[MfaEventName][0] };
const ALL_EVENTS: MfaEventName[] = [
  'device.enrolled',
  'device.verified',
  'device.updated',
  'device.removed',
  'mfa.succeeded',
  'mfa.failed',
  'replay.refused',
  'lockout',
  'trusted_device.created',
  'trusted_device.revoked',
  'recovery_codes.generated',
  'recovery_codes.revoked',
];

/** A wrong code for `secret` at any time near `atMs` (differs from the codes of steps −3…+3). */
function wrongCode(secret: string, atMs: number): string {
  const near = new Set([-3, -2, -1, 0, 1, 2, 3].map((d) => oathtool(secret, atMs + d * 30_000)));
  for (let n = 0; ; n++) {
    const candidate = String(n).padStart(6, '0');
    if (!near.has(candidate)) return candidate;
  }
}

describe('mfa code verification', () => {
  let fresh: FreshDatabase;
  let storage: KnexStorage;
  let secondKnex: Knex;
  let secondStorage: KnexStorage;

  before(async () => {
    fresh = await freshDatabase();
    storage = knexStorage({ knex: fresh.knex });
    await storage.migrate();
    // A second pool on the same database: a second instance of the service.
    secondKnex = createKnex({ client: 'pg', connection: fresh.url, pool: { min: 0, max: 8 } });
    secondStorage = knexStorage({ knex: secondKnex });
  });
  after(async () => {
    await secondKnex.destroy();
    await fresh.drop();
  });

  /** One app (both routers) on `storage` with a movable clock and recorded events. */
  function setup(options: Partial<MfaDevicesRouterOptions> = {}, on: KnexStorage = storage) {
    const clock = new TestClock(Date.UTC(2026, 3, 3, 12, 0, 5));
    const events: Recorded[] = [];
    const { app, router } = mfaApp(on, { now: clock.now, rateLimit: false, ...options });
    for (const name of ALL_EVENTS) router.events.on(name, (payload: MfaEventMap[typeof name][0]) => events.push({ name, payload }));
    return { app, clock, events, names: () => events.map((e) => e.name) };
  }

  let userSeq = 0;
  const newUser = (prefix: string) => `${prefix}-${++userSeq}-${randomBytes(3).toString('hex')}`;

  /** Enrols and confirms a TOTP device; the clock moves one step on so the next code is fresh. */
  async function verifiedDevice(app: express.Express, clock: TestClock, userId: string, tenantId = 'acme') {
    const res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), userId, tenantId);
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    const { device, secret } = res.body as { device: { id: string }; secret: string };
    const ok = await as(request(app).post(`/auth/mfa/devices/${device.id}/verify`).send({ code: oathtool(secret, clock.ms) }), userId, tenantId);
    expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
    clock.step(1);
    return { id: device.id, secret };
  }

  const login = (app: express.Express, userId: string, body: object, tenantId = 'acme') => as(request(app).post('/auth/mfa/verify').send(body), userId, tenantId);
  const internalVerify = (app: express.Express, body: object, tenantId = 'acme') =>
    request(app).post('/internal/mfa/totp/verify').set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', tenantId).send(body);

  describe('POST /auth/mfa/verify (login second factor)', () => {
    it('200 {verified, method, deviceId} for a code of any usable device; lastUsedAt moves; mfa.succeeded', async () => {
      const { app, clock, events } = setup();
      const user = newUser('login');
      const a = await verifiedDevice(app, clock, user);
      const b = await verifiedDevice(app, clock, user);
      clock.step(1);
      let res = await login(app, user, { code: oathtool(b.secret, clock.ms) });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ verified: true, method: 'totp', deviceId: b.id });
      res = await login(app, user, { code: oathtool(a.secret, clock.ms) });
      expect(res.body).to.deep.equal({ verified: true, method: 'totp', deviceId: a.id });
      const succeeded = events.filter((e) => e.name === 'mfa.succeeded').at(-1)!.payload;
      expect(succeeded).to.include({ tenantId: 'acme', userId: user, deviceId: a.id, method: 'totp', via: 'login' });
      expect(succeeded.requestId).to.match(/^req_/);
      const list = await as(request(app).get('/auth/mfa/devices'), user);
      for (const d of list.body as Array<{ lastUsedAt?: string }>) expect(d.lastUsedAt).to.be.a('string');
    });

    it('with deviceId: only that device; 404 for another user’s device or tenant; 400 not verified / disabled', async () => {
      const { app, clock } = setup();
      const user = newUser('named');
      const a = await verifiedDevice(app, clock, user);
      const b = await verifiedDevice(app, clock, user);
      let res = await login(app, user, { code: oathtool(a.secret, clock.ms), deviceId: b.id });
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000010);
      res = await login(app, user, { code: oathtool(b.secret, clock.ms), deviceId: b.id });
      expect(res.status).to.equal(200);

      const other = newUser('named-other');
      res = await login(app, other, { code: oathtool(a.secret, clock.ms), deviceId: a.id });
      expect(res.status).to.equal(404);
      res = await login(app, user, { code: oathtool(a.secret, clock.ms), deviceId: a.id }, 'other');
      expect(res.status).to.equal(404);

      const pending = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Pending' }), user);
      res = await login(app, user, { code: oathtool(pending.body.secret as string, clock.ms), deviceId: pending.body.device.id });
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000011);

      await as(request(app).patch(`/auth/mfa/devices/${a.id}`).send({ enabled: false }), user);
      res = await login(app, user, { code: oathtool(a.secret, clock.ms), deviceId: a.id });
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000021);
    });

    it('unverified and disabled devices cannot log in; without any usable device → 400 MFA_NOT_ENROLLED', async () => {
      const { app, clock } = setup();
      const user = newUser('unusable');
      const pending = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Pending' }), user);
      let res = await login(app, user, { code: oathtool(pending.body.secret as string, clock.ms) });
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000013);
      const d = await verifiedDevice(app, clock, user);
      await as(request(app).patch(`/auth/mfa/devices/${d.id}`).send({ enabled: false }), user);
      res = await login(app, user, { code: oathtool(d.secret, clock.ms) });
      expect(res.body.code).to.equal(40000013);
      await as(request(app).patch(`/auth/mfa/devices/${d.id}`).send({ enabled: true }), user);
      res = await login(app, user, { code: oathtool(d.secret, clock.ms) });
      expect(res.status).to.equal(200);
    });

    it('400 with errors[] for bodies that are not one code or one recovery code', async () => {
      const { app } = setup();
      const user = newUser('bodies');
      for (const body of [
        {},
        { code: '123456', recoveryCode: 'abcd-efgh' },
        { code: '12345' },
        { code: '123456', deviceId: 'nope' },
        { recoveryCode: 'abcd-efgh', deviceId: '00000000-0000-4000-8000-000000000000' },
        { code: '123456', rememberDevice: true },
        { code: '123456', rememberDevice: 'yes' },
        { code: '123456', device: { fingerprint: '' } },
        { code: '123456', extra: 1 },
      ]) {
        const res = await login(app, user, body);
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body.errors, JSON.stringify(body)).to.be.an('array').that.is.not.empty;
      }
    });

    it('onVerified gets the context and adds its fields; the kit’s own fields win; its errors go to the error handler', async () => {
      const seen: Array<Record<string, unknown>> = [];
      const { app, clock } = setup({
        onVerified: (ctx) => {
          seen.push({ tenantId: ctx.tenantId, userId: ctx.userId, method: ctx.method, deviceId: ctx.deviceId, email: ctx.claims.email, requestId: ctx.requestId });
          if (ctx.claims.email === 'refuse@example.com') throw ProblemError.from('UNAUTHENTICATED', 'Session refused.');
          return { session: 'sess-123', verified: false };
        },
      });
      const user = newUser('hook');
      const d = await verifiedDevice(app, clock, user);
      const res = await request(app)
        .post('/auth/mfa/verify')
        .set('Authorization', `Bearer ${token(user, 'acme', { email: 'u@example.com' })}`)
        .send({ code: oathtool(d.secret, clock.ms) });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ verified: true, method: 'totp', deviceId: d.id, session: 'sess-123' });
      expect(seen[0]).to.include({ tenantId: 'acme', userId: user, method: 'totp', deviceId: d.id, email: 'u@example.com' });
      clock.step(1);
      const refused = await request(app)
        .post('/auth/mfa/verify')
        .set('Authorization', `Bearer ${token(user, 'acme', { email: 'refuse@example.com' })}`)
        .send({ code: oathtool(d.secret, clock.ms) });
      expect(refused.status).to.equal(401);
      expect(refused.body.detail).to.equal('Session refused.');
    });
  });

  describe('replay', () => {
    it('the same code twice: 200 then 400; replay.refused and mfa.failed(replay) emitted, without the code', async () => {
      const { app, clock, events, names } = setup();
      const user = newUser('replay');
      const d = await verifiedDevice(app, clock, user);
      const code = oathtool(d.secret, clock.ms);
      expect((await login(app, user, { code })).status).to.equal(200);
      events.length = 0;
      const again = await login(app, user, { code });
      expect(again.status).to.equal(400);
      expect(again.body.code).to.equal(40000010);
      expect(names()).to.deep.equal(['replay.refused', 'mfa.failed']);
      expect(events[0]!.payload).to.include({ deviceId: d.id, via: 'login', userId: user });
      expect(events[1]!.payload).to.include({ reason: 'replay' });
      expect(JSON.stringify(events)).not.to.contain(code);
    });

    it('a right code whose device is turned off or removed while it is checked: 400 as a wrong code, no replay.refused (found by a race review)', async () => {
      // The device's row changes between the list the login read and the replay guard's update, as a removal on another instance would.
      const racing = racingDevices(storage, 'recordTotpStep');
      const { app, clock, events, names } = setup({}, racing.storage);
      for (const change of [(id: string) => fresh.knex('mfa_devices').where({ id }).update({ enabled: false }), (id: string) => fresh.knex('mfa_devices').where({ id }).delete()]) {
        const user = newUser('gone');
        const d = await verifiedDevice(app, clock, user);
        events.length = 0;
        racing.meanwhile(([, , id]) => change(id));
        const res = await login(app, user, { code: oathtool(d.secret, clock.ms) });
        expect(res.status, res.text).to.equal(400);
        expect(names()).to.deep.equal(['mfa.failed']);
        expect(events[0]!.payload).to.include({ reason: 'invalid_code' });
      }
    });

    it("a device turned off while its right code is checked does not end the search: the user's other device with that secret takes the code", async () => {
      const racing = racingDevices(storage, 'recordTotpStep');
      const { app, clock } = setup({}, racing.storage);
      const user = newUser('two-same');
      const first = await verifiedDevice(app, clock, user);
      // A second device of the same secret (an authenticator restored on a new phone), older: tried after the first.
      const second = await insertDevice(fresh.knex, { tenantId: 'acme', userId: user, secret: first.secret, createdAt: new Date(Date.now() - 86_400_000) });
      racing.meanwhile(([, , id]) => fresh.knex('mfa_devices').where({ id }).update({ enabled: false }));
      const res = await login(app, user, { code: oathtool(first.secret, clock.ms) });
      expect(res.status, res.text).to.equal(200);
      expect(res.body).to.deep.equal({ verified: true, method: 'totp', deviceId: second });
    });

    it("an enrolment's right code whose device is removed, or verified by a racing request, while it is checked: 404 / 400 already verified, not a replay, not counted (found by a hostile-input review)", async () => {
      // The pending device's row changes between the read and markVerified, as a removal or a second verify on another instance would.
      const racing = racingDevices(storage, 'markVerified');
      const { app, clock, events, names } = setup({}, racing.storage);
      const cases: Array<[string, (args: Parameters<typeof storage.mfaDevices.markVerified>) => Promise<unknown>, number, number]> = [
        ['removed', ([, , id]) => fresh.knex('mfa_devices').where({ id }).delete(), 404, 40400002],
        ['verified by another request with the same code', (args) => storage.mfaDevices.markVerified(...args), 400, 40000012],
      ];
      for (const [what, change, status, code] of cases) {
        const user = newUser('enrol-race');
        const enrol = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), user);
        const { device, secret } = enrol.body as { device: { id: string }; secret: string };
        events.length = 0;
        racing.meanwhile(change);
        const res = await as(request(app).post(`/auth/mfa/devices/${device.id}/verify`).send({ code: oathtool(secret, clock.ms) }), user);
        expect(res.status, `${what}: ${res.text}`).to.equal(status);
        expect(res.body.code, what).to.equal(code);
        expect(names(), what).to.deep.equal([]);
        const failures = await fresh.knex('mfa_verification_failures').where({ tenant_id: 'acme', user_id: user }).first<{ failures: number } | undefined>();
        expect(failures?.failures ?? 0, what).to.equal(0);
      }
    });

    it('an older step after a newer one is refused, though inside the window', async () => {
      const { app, clock } = setup();
      const user = newUser('older');
      const d = await verifiedDevice(app, clock, user);
      clock.step(2);
      const newer = oathtool(d.secret, clock.ms + 30_000); // step +1
      const older = oathtool(d.secret, clock.ms); // step 0, still within ±1
      expect((await login(app, user, { code: newer })).status).to.equal(200);
      expect((await login(app, user, { code: older })).status).to.equal(400);
      const previous = oathtool(d.secret, clock.ms - 30_000);
      expect((await login(app, user, { code: previous })).status).to.equal(400);
      clock.step(2);
      expect((await login(app, user, { code: oathtool(d.secret, clock.ms) })).status).to.equal(200);
    });

    it('one step, one use across routes: the enrolment code cannot log in, a login code cannot pass the internal route', async () => {
      const { app, clock } = setup();
      const user = newUser('across');
      const res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), user);
      const code = oathtool(res.body.secret as string, clock.ms);
      expect((await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code }), user)).status).to.equal(200);
      expect((await login(app, user, { code })).status).to.equal(400);
      expect((await internalVerify(app, { user_id: user, code })).status).to.equal(400);
      clock.step(1);
      const next = oathtool(res.body.secret as string, clock.ms);
      expect((await internalVerify(app, { user_id: user, code: next })).status).to.equal(200);
      expect((await login(app, user, { code: next })).status).to.equal(400);
    });
  });

  describe('window (injected clock)', () => {
    for (const delta of [-1, 1]) {
      it(`accepts a code ${delta > 0 ? 'one step ahead' : 'one step behind'}`, async () => {
        const { app, clock } = setup();
        const user = newUser('window');
        const d = await verifiedDevice(app, clock, user);
        clock.step(3);
        const res = await login(app, user, { code: oathtool(d.secret, clock.ms + delta * 30_000) });
        expect(res.status).to.equal(200);
      });
    }

    for (const delta of [-2, 2]) {
      it(`refuses a code two steps ${delta > 0 ? 'ahead' : 'behind'}`, async () => {
        const { app, clock } = setup();
        const user = newUser('window');
        const d = await verifiedDevice(app, clock, user);
        clock.step(4);
        const res = await login(app, user, { code: oathtool(d.secret, clock.ms + delta * 30_000) });
        expect(res.status).to.equal(400);
      });
    }

    it('a device keeps the skew it was enrolled with', async () => {
      const wide = setup({ totp: { skew: 2 } });
      const user = newUser('skew');
      const d = await verifiedDevice(wide.app, wide.clock, user);
      wide.clock.step(4);
      // Another router instance with default skew 1 on the same storage still honours the device's 2.
      const narrow = setup();
      narrow.clock.ms = wide.clock.ms;
      expect((await login(narrow.app, user, { code: oathtool(d.secret, narrow.clock.ms + 60_000) })).status).to.equal(200);
    });

    it('SHA256 / 8 digits / 60 s devices work end to end with oathtool', async () => {
      const { app, clock } = setup({ totp: { algorithm: 'SHA256', digits: 8, period: 60 } });
      const user = newUser('sha256');
      const res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Token' }), user);
      const url = new URL(res.body.otpauthUrl as string);
      expect(url.searchParams.get('algorithm')).to.equal('SHA256');
      expect(url.searchParams.get('digits')).to.equal('8');
      expect(url.searchParams.get('period')).to.equal('60');
      const opts = { algorithm: 'SHA256', digits: 8, period: 60 } as const;
      const ok = await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code: oathtool(res.body.secret as string, clock.ms, opts) }), user);
      expect(ok.status).to.equal(200);
      clock.step(1, 60);
      expect((await login(app, user, { code: oathtool(res.body.secret as string, clock.ms, opts) })).status).to.equal(200);
      clock.step(1, 60);
      expect((await login(app, user, { code: oathtool(res.body.secret as string, clock.ms, { ...opts, algorithm: 'SHA1' }) })).status).to.equal(400);
    });
  });

  describe('lockout', () => {
    const lockout = { maxFailures: 3, cooldownSeconds: 600 };

    it('after N failures every verify answers 429 with Retry-After, even the right code; one lockout event', async () => {
      const { app, clock, events, names } = setup({ lockout });
      const user = newUser('lock');
      const d = await verifiedDevice(app, clock, user);
      const wrong = wrongCode(d.secret, clock.ms);
      for (let i = 0; i < 3; i++) {
        const res = await login(app, user, { code: wrong });
        expect(res.status, `attempt ${i + 1}`).to.equal(400);
      }
      expect(names().filter((n) => n === 'lockout')).to.have.length(1);
      const right = oathtool(d.secret, clock.ms);
      const locked = await login(app, user, { code: right });
      expect(locked.status).to.equal(429);
      expect(locked.body).to.include({ code: 42900002, status: 429 });
      expect(Number(locked.headers['retry-after'])).to.be.within(590, 600);
      expect(locked.body.retry_after).to.equal(Number(locked.headers['retry-after']));
      expect(events.filter((e) => e.name === 'lockout')[0]!.payload).to.include({ userId: user, tenantId: 'acme' });
      expect(JSON.stringify(events)).not.to.contain(right);

      // The lock is per tenant + user and shared by every verify route.
      expect((await internalVerify(app, { user_id: user, code: right })).status).to.equal(429);
      const pending = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Second' }), user);
      expect((await as(request(app).post(`/auth/mfa/devices/${pending.body.device.id}/verify`).send({ code: oathtool(pending.body.secret as string, clock.ms) }), user)).status).to.equal(429);
      const bystander = newUser('bystander');
      const b = await verifiedDevice(app, clock, bystander);
      expect((await login(app, bystander, { code: oathtool(b.secret, clock.ms) })).status).to.equal(200);
      const sameUserOtherTenant = await verifiedDevice(app, clock, user, 'other');
      expect((await login(app, user, { code: oathtool(sameUserOtherTenant.secret, clock.ms) }, 'other')).status).to.equal(200);

      // When the cool-down ends (moved into the past on the database clock), the right code passes.
      await fresh.knex('mfa_verification_failures').where({ tenant_id: 'acme', user_id: user }).update({ locked_until: fresh.knex.raw("now() - interval '1 second'") });
      expect((await login(app, user, { code: oathtool(d.secret, clock.ms) })).status).to.equal(200);
    });

    it('a success resets the counter', async () => {
      const { app, clock } = setup({ lockout });
      const user = newUser('reset');
      const d = await verifiedDevice(app, clock, user);
      for (let round = 0; round < 3; round++) {
        const wrong = wrongCode(d.secret, clock.ms);
        expect((await login(app, user, { code: wrong })).status).to.equal(400);
        expect((await login(app, user, { code: wrong })).status).to.equal(400);
        expect((await login(app, user, { code: oathtool(d.secret, clock.ms) })).status, `round ${round}`).to.equal(200);
        clock.step(1);
      }
    });

    it('wrong codes on the internal route and replays count too', async () => {
      const { app, clock } = setup({ lockout });
      const user = newUser('mixed');
      const d = await verifiedDevice(app, clock, user);
      const code = oathtool(d.secret, clock.ms);
      expect((await login(app, user, { code })).status).to.equal(200);
      expect((await login(app, user, { code })).status).to.equal(400); // replay
      expect((await internalVerify(app, { user_id: user, code: wrongCode(d.secret, clock.ms) })).status).to.equal(400);
      expect((await as(request(app).post(`/auth/mfa/devices/${d.id}/verify`).send({ code: '000000' }), user)).status).to.equal(400); // already verified: not an attempt
      expect((await internalVerify(app, { user_id: user, code: wrongCode(d.secret, clock.ms) })).status).to.equal(400);
      clock.step(1);
      expect((await login(app, user, { code: oathtool(d.secret, clock.ms) })).status).to.equal(429);
    });

    it('concurrent wrong guesses cannot overshoot: at most N are checked, the rest get 429', async () => {
      const { app, clock } = setup({ lockout });
      const user = newUser('burst');
      const d = await verifiedDevice(app, clock, user);
      const wrong = wrongCode(d.secret, clock.ms);
      const results = await Promise.all(Array.from({ length: 12 }, () => login(app, user, { code: wrong })));
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 400)).to.have.length(3);
      expect(statuses.filter((s) => s === 429)).to.have.length(9);
    });

    it('an isolated old failure is forgotten after a cool-down', async () => {
      const { app, clock } = setup({ lockout });
      const user = newUser('decay');
      const d = await verifiedDevice(app, clock, user);
      const wrong = wrongCode(d.secret, clock.ms);
      expect((await login(app, user, { code: wrong })).status).to.equal(400);
      expect((await login(app, user, { code: wrong })).status).to.equal(400);
      await fresh.knex('mfa_verification_failures').where({ tenant_id: 'acme', user_id: user }).update({ updated_at: fresh.knex.raw("now() - interval '11 minutes'") });
      expect((await login(app, user, { code: wrong })).status).to.equal(400);
      expect((await login(app, user, { code: wrong })).status).to.equal(400);
      expect((await login(app, user, { code: oathtool(d.secret, clock.ms) })).status).to.equal(200);
    });

    it('is off by the default of 5 only after 5 failures', async () => {
      const { app, clock } = setup();
      const user = newUser('default');
      const d = await verifiedDevice(app, clock, user);
      const wrong = wrongCode(d.secret, clock.ms);
      for (let i = 0; i < 5; i++) expect((await login(app, user, { code: wrong })).status).to.equal(400);
      const res = await login(app, user, { code: oathtool(d.secret, clock.ms) });
      expect(res.status).to.equal(429);
      expect(Number(res.headers['retry-after'])).to.be.within(890, 900);
    });
  });

  describe('POST /internal/mfa/totp/verify', () => {
    it('200 {valid: true, device_id}; the same code again → 400; a wrong code → 400 INVALID_CODE', async () => {
      const { app, clock, names } = setup();
      const user = newUser('internal');
      const d = await verifiedDevice(app, clock, user);
      const code = oathtool(d.secret, clock.ms);
      let res = await internalVerify(app, { user_id: user, code });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ valid: true, device_id: d.id });
      expect(names()).to.include('mfa.succeeded');
      res = await internalVerify(app, { user_id: user, code });
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000010);
      res = await internalVerify(app, { user_id: user, code: wrongCode(d.secret, clock.ms) });
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000010);
    });

    it('400 MFA_NOT_ENROLLED for a user without a verified TOTP device, and in another tenant', async () => {
      const { app, clock } = setup();
      const user = newUser('internal-none');
      expect((await internalVerify(app, { user_id: user, code: '123456' })).body.code).to.equal(40000013);
      const d = await verifiedDevice(app, clock, user);
      const res = await internalVerify(app, { user_id: user, code: oathtool(d.secret, clock.ms) }, 'other');
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000013);
      // Its only device turned off: none to verify with either, and the attempt is not charged to the user's lockout.
      expect((await as(request(app).patch(`/auth/mfa/devices/${d.id}`).send({ enabled: false }), user)).status).to.equal(200);
      for (let i = 0; i < 3; i++) {
        const off = await internalVerify(app, { user_id: user, code: oathtool(d.secret, clock.ms) });
        expect(off.status).to.equal(400);
        expect(off.body.code).to.equal(40000013);
      }
      expect(await fresh.knex('mfa_verification_failures').where({ tenant_id: 'acme', user_id: user }).first()).to.equal(undefined);
    });

    it('401 without the key (before anything else), 400 without tenant, 400 with errors[] for a bad body', async () => {
      const { app } = setup();
      let res = await request(app).post('/internal/mfa/totp/verify').set('X-Tenant-ID', 'acme').send({ user_id: 'x', code: '123456' });
      expect(res.status).to.equal(401);
      res = await request(app).post('/internal/mfa/totp/verify').set('X-Internal-API-Key', KEY_A).send({ user_id: 'x', code: '123456' });
      expect(res.status).to.equal(400);
      for (const body of [{}, { user_id: 'x' }, { code: '123456' }, { user_id: '', code: '123456' }, { user_id: 'x', code: 'abc' }, { user_id: 5, code: '123456' }]) {
        res = await internalVerify(app, body);
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body.errors, JSON.stringify(body)).to.be.an('array').that.is.not.empty;
      }
    });

    it('400 naming a member it does not read (device_id), without using the code or counting a failure', async () => {
      const { app, clock, names } = setup();
      const user = newUser('internal-strict');
      const d = await verifiedDevice(app, clock, user);
      const code = oathtool(d.secret, clock.ms);
      let res = await internalVerify(app, { user_id: user, code, device_id: d.id });
      expect(res.status).to.equal(400);
      expect(res.body.errors).to.deep.equal([{ field: '(body)', code: 'unknown', description: '(body): Unrecognized key: "device_id"' }]);
      expect(names()).not.to.include('mfa.failed');
      // The same code still works once, without the extra member.
      res = await internalVerify(app, { user_id: user, code });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ valid: true, device_id: d.id });
    });
  });

  describe('two instances racing on one code', () => {
    for (const route of ['login', 'internal', 'enrolment'] as const) {
      it(`${route}: exactly one 200 across two apps with separate pools`, async () => {
        const one = setup({}, storage);
        const two = setup({}, secondStorage);
        const user = newUser(`race-${route}`);
        let code: string;
        let send: (app: express.Express) => Promise<request.Response>;
        if (route === 'enrolment') {
          const res = await as(request(one.app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), user);
          code = oathtool(res.body.secret as string, one.clock.ms);
          send = (app) => as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code }), user);
        } else {
          const d = await verifiedDevice(one.app, one.clock, user);
          two.clock.ms = one.clock.ms;
          code = oathtool(d.secret, one.clock.ms);
          send = route === 'login' ? (app) => login(app, user, { code }) : (app) => internalVerify(app, { user_id: user, code });
        }
        two.clock.ms = one.clock.ms;
        for (let round = 0; round < 3; round++) {
          const results = await Promise.all(Array.from({ length: 8 }, (_, i) => send(i % 2 === 0 ? one.app : two.app)));
          const statuses = results.map((r) => r.status);
          expect(statuses.filter((s) => s === 200), `round ${round}: ${statuses.join(',')}`).to.have.length(round === 0 ? 1 : 0);
          expect(statuses.filter((s) => s !== 200 && s !== 400 && s !== 429), statuses.join(',')).to.have.length(0);
          if (route === 'enrolment') break;
          // Reset the lockout the losers charged, so the next round measures replay only.
          await fresh.knex('mfa_verification_failures').where({ user_id: user }).delete();
        }
      });
    }
  });

  describe('request-rate limit', () => {
    let url: string;
    let clients: Redis[] = [];
    before(async function () {
      const found = await redisUrl();
      requireRedis(this, found);
      url = found;
    });
    afterEach(() => {
      for (const c of clients) c.disconnect();
      clients = [];
    });
    /** An ioredis client; `failFast` refuses commands at once while disconnected (the outage test). */
    const client = (u = url, failFast = false) => {
      const c = new Redis(u, { maxRetriesPerRequest: 1, enableOfflineQueue: !failFast, retryStrategy: () => 200 });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    };

    it('counts verify requests of one user across instances in Redis; over the limit → 429 TOO_MANY_REQUESTS with Retry-After', async () => {
      const prefix = `test:${randomBytes(6).toString('hex')}:`;
      const opts: Partial<MfaDevicesRouterOptions> = { rateLimit: { limit: 3, windowMs: 60_000, prefix }, lockout: { maxFailures: 100 } };
      const one = setup({ ...opts, redis: client() });
      const two = setup({ ...opts, redis: client() });
      const user = newUser('rl');
      const statuses: number[] = [];
      for (const app of [one.app, two.app, one.app, two.app]) statuses.push((await login(app, user, { code: '000000' })).status);
      expect(statuses.slice(0, 3)).to.deep.equal([400, 400, 400]);
      expect(statuses[3]).to.equal(429);
      const res = await login(two.app, user, { code: '000000' });
      expect(res.body.code).to.equal(42900001);
      expect(Number(res.headers['retry-after'])).to.be.within(1, 60);
      expect(res.body.retry_after).to.be.a('number');
      // Per user: another user is not limited; the internal route keeps its own budget.
      expect((await login(one.app, newUser('rl-other'), { code: '000000' })).status).to.equal(400);
      expect((await internalVerify(one.app, { user_id: user, code: '000000' })).status).to.equal(400);
    });

    it('over the limit while a lockout runs → the lockout 429 and its Retry-After (the longer wait), on both verify routes, not the window one', async () => {
      const { app, clock } = setup({ rateLimit: { limit: 4, windowMs: 60_000 }, lockout: { maxFailures: 2, cooldownSeconds: 900 } });
      const user = newUser('rl-locked');
      const d = await verifiedDevice(app, clock, user);
      const wrong = wrongCode(d.secret, clock.ms);
      for (const send of [(code: string) => login(app, user, { code }), (code: string) => internalVerify(app, { user_id: user, code })]) {
        const answers = [];
        for (let i = 0; i < 6; i++) answers.push(await send(wrong));
        const limited = answers.filter((r) => r.headers.ratelimit?.includes('remaining=0') && r.status === 429);
        expect(answers.map((r) => r.status)).to.deep.include.members([429]);
        expect(limited.length, 'the limiter refused some').to.be.greaterThan(0);
        for (const res of answers.filter((r) => r.status === 429)) {
          expect(res.body.code, res.text).to.equal(42900002);
          expect(Number(res.headers['retry-after']), res.text).to.be.within(800, 900);
          expect(res.body.retry_after).to.equal(Number(res.headers['retry-after']));
        }
      }
    });

    it('refusals read the lock at most once a second per user (concurrent ones share the read), wait for it at most 500 ms, and see it gone within a second', async function () {
      this.timeout(20_000);
      const store = storage.verificationThrottle;
      let reads = 0;
      let delayMs = 0;
      const watched: VerificationThrottleStore = {
        charge: store.charge.bind(store),
        recordFailure: store.recordFailure.bind(store),
        reset: store.reset.bind(store),
        async lockedFor(tenantId, userId) {
          reads++;
          if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
          return store.lockedFor!(tenantId, userId);
        },
      };
      const { app, clock } = setup({ rateLimit: { limit: 3, windowMs: 60_000 }, lockout: { maxFailures: 1, cooldownSeconds: 900 } }, { ...storage, verificationThrottle: watched });
      const user = newUser('rl-memo');
      const d = await verifiedDevice(app, clock, user);
      // One wrong code locks; the next request is the route's lockout 429; from then on the limiter refuses.
      expect((await login(app, user, { code: wrongCode(d.secret, clock.ms) })).status).to.equal(400);
      expect((await login(app, user, { code: '000000' })).body.code).to.equal(42900002);
      const flood = await Promise.all(Array.from({ length: 40 }, () => login(app, user, { code: '000000' })));
      expect(new Set(flood.map((r): unknown => r.body.code))).to.deep.equal(new Set([42900002]));
      expect(reads, 'reads for 40 concurrent refusals').to.be.within(1, 2);
      // A slow database: the refusal answers the limiter's 429 after 500 ms instead of waiting.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      delayMs = 3000;
      const started = Date.now();
      const slow = await login(app, user, { code: '000000' });
      expect(Date.now() - started).to.be.below(2000);
      expect(slow.body.code).to.equal(42900001);
      delayMs = 0;
      // The lock gone (an erasure deletes it): within a second the limiter's own 429 again, not the lock's 15 minutes.
      await store.reset('acme', user);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const after = await login(app, user, { code: '000000' });
      expect(after.body.code, after.text).to.equal(42900001);
      expect(Number(after.headers['retry-after'])).to.be.at.most(60);
    });

    it('without Redis each instance counts on its own', async () => {
      const opts: Partial<MfaDevicesRouterOptions> = { rateLimit: { limit: 2 }, lockout: { maxFailures: 100 } };
      const one = setup(opts);
      const two = setup(opts);
      const user = newUser('rl-mem');
      expect((await login(one.app, user, { code: '000000' })).status).to.equal(400);
      expect((await login(one.app, user, { code: '000000' })).status).to.equal(400);
      expect((await login(one.app, user, { code: '000000' })).status).to.equal(429);
      expect((await login(two.app, user, { code: '000000' })).status).to.equal(400);
    });

    it('Redis down at start-up: the limit holds in this instance meanwhile (was: requests passed unlimited); once Redis is back, Redis counts', async function () {
      this.timeout(30_000);
      const redis = await privateRedis();
      await redis.stop();
      const c = client(redis.url, true);
      const { app } = setup({ rateLimit: { limit: 2, prefix: `t${randomBytes(4).toString('hex')}:` }, redis: c, lockout: { maxFailures: 100 } });
      const user = newUser('rl-late');
      const down: number[] = [];
      for (let i = 0; i < 4; i++) down.push((await login(app, user, { code: '000000' })).status);
      expect(down).to.deep.equal([400, 400, 429, 429]);
      await redis.start();
      for (let i = 0; i < 50 && c.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 100));
      expect(c.status).to.equal('ready');
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await login(app, user, { code: '000000' })).status);
      // The scripts are loaded again before the first count after the outage: that request is counted too.
      expect(statuses).to.deep.equal([400, 400, 429, 429]);
    });

    it('made before its client has connected (the example server at start-up): the first request is counted', async () => {
      // enableOfflineQueue: false refuses the limiter's SCRIPT LOAD until the connection is up.
      const c = client(url, true);
      expect(c.status).to.not.equal('ready');
      const lines: Array<[string, string]> = [];
      const logger = { ...silentLogger, debug: (_o: object, m?: string) => void lines.push(['debug', m ?? '']), warn: (_o: object, m?: string) => void lines.push(['warn', m ?? '']) };
      const { app } = setup({ rateLimit: { limit: 1, prefix: `t${randomBytes(4).toString('hex')}:` }, redis: c, lockout: { maxFailures: 100 }, logger });
      for (let i = 0; i < 50 && c.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 20));
      expect(c.status).to.equal('ready');
      const user = newUser('rl-boot');
      const first = await login(app, user, { code: '000000' });
      expect(first.status).to.equal(400);
      expect(first.headers.ratelimit, 'the first request was counted').to.match(/remaining=0/);
      expect((await login(app, user, { code: '000000' })).status).to.equal(429);
      // Not connected yet at start-up is not a problem worth a warning at every boot (a developer's report).
      expect(lines.filter(([level]) => level === 'warn'), JSON.stringify(lines)).to.deep.equal([]);
    });

    it('Redis down: requests are counted in this instance (a limit of 50 not reached here) and the Postgres lockout still holds', async function () {
      this.timeout(30_000);
      const redis = await privateRedis();
      const warnings: string[] = [];
      const logger = { ...silentLogger, warn: (_o: object, m?: string) => void warnings.push(m ?? '') };
      const { app, clock } = setup({ rateLimit: { limit: 50, prefix: `t${randomBytes(4).toString('hex')}:` }, redis: client(redis.url, true), lockout: { maxFailures: 2 }, logger });
      const user = newUser('rl-down');
      const d = await verifiedDevice(app, clock, user);
      await redis.stop();
      const wrong = wrongCode(d.secret, clock.ms);
      // Counted in this instance: the remaining count goes down from the limit, as Redis's would.
      const remaining: string[] = [];
      for (let i = 0; i < 2; i++) {
        const res = await login(app, user, { code: wrong });
        expect(res.status).to.equal(400);
        remaining.push(/remaining=(\d+)/.exec(String(res.headers.ratelimit))?.[1] ?? 'none');
      }
      expect(remaining).to.deep.equal(['49', '48']);
      expect((await login(app, user, { code: oathtool(d.secret, clock.ms) })).status).to.equal(429);
      // Counts Redis did not take are worth a warning (unlike the same refusal at start-up, before a connection), but one
      // per 10 s however many requests there are (an operator's report: a line each flooded the log).
      for (let i = 0; i < 10; i++) await login(app, user, { code: wrong });
      expect(warnings.filter((w) => w === 'rate limiter problem: Redis did not take a count; counting in this instance meanwhile')).to.have.length(1);
      expect(warnings.filter((w) => w.startsWith('rate limiter problem'))).to.have.length(1);
    });
  });
});
