/** `mfaDevicesRouter` sms/email devices and recovery codes over HTTP on real Postgres, with a capturing sender. */
import { createHash, scryptSync } from 'node:crypto';
import { expect } from 'chai';
import type express from 'express';
import request from 'supertest';
import { createRecoveryCodes, type MfaCodeMessage, type MfaCodeSender, type MfaDevicesRouterOptions, type MfaEventMap, type MfaEventName } from '../index.js';
import { migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { as, mfaApp, oathtool, TestClock } from './support/mfa.js';
import { racingDevices } from './support/racing.js';

/** A sender that keeps what it was asked to send (or fails, when told to). */
class CapturingSender implements MfaCodeSender {
  readonly sent: MfaCodeMessage[] = [];
  failing = false;
  send(message: MfaCodeMessage): void {
    if (this.failing) throw Object.assign(new Error(`gateway refused ${message.destination}`), { code: 'E_GATEWAY' });
    this.sent.push(message);
  }
  last(): MfaCodeMessage {
    const m = this.sent.at(-1);
    if (!m) throw new Error('nothing was sent');
    return m;
  }
}

describe('mfaDevicesRouter: sms/email devices and recovery codes', () => {
  let db: TestDb;
  let clock: TestClock;
  let sender: CapturingSender;
  let app: express.Express;
  const events: Array<{ name: MfaEventName; payload: MfaEventMap[MfaEventName][0] }> = [];
  let seq = 0;
  const user = (p: string) => `${p}-${++seq}`;

  const build = (options: Partial<MfaDevicesRouterOptions> = {}, withSender = true) => {
    const built = mfaApp(db.storage, { now: clock.now, rateLimit: false, ...(withSender && { sender }), lockout: { maxFailures: 3 }, ...options });
    for (const name of ['device.enrolled', 'device.verified', 'mfa.succeeded', 'mfa.failed', 'lockout', 'recovery_codes.generated', 'recovery_codes.revoked'] as const) {
      built.router.events.on(name, (payload: MfaEventMap[typeof name][0]) => events.push({ name, payload }));
    }
    return built.app;
  };

  before(async () => {
    db = await migratedStorage();
    clock = new TestClock();
    sender = new CapturingSender();
    app = build();
  });
  after(async () => {
    await db.drop();
  });
  beforeEach(() => {
    events.length = 0;
    sender.failing = false;
  });

  const login = (u: string, body: object, tenant = 'acme') => as(request(app).post('/auth/mfa/verify').send(body), u, tenant);

  /** Enrols and confirms an sms device. */
  async function smsDevice(u: string, phoneNumber = '+44 7700 900123', tenant = 'acme') {
    const res = await as(request(app).post('/auth/mfa/devices/sms').send({ deviceName: 'Mobile', phoneNumber }), u, tenant);
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    const id = res.body.device.id as string;
    expect(res.headers.location).to.equal(`/auth/mfa/devices/${id}`);
    const ok = await as(request(app).post(`/auth/mfa/devices/${id}/verify`).send({ code: sender.last().code }), u, tenant);
    expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
    return id;
  }

  describe('POST /devices/sms and /devices/email', () => {
    it('201 {device} with the destination masked; the sender gets the normalised destination and an enrolment code', async () => {
      const u = user('sms');
      const res = await as(request(app).post('/auth/mfa/devices/sms').send({ deviceName: 'Mobile', phoneNumber: '+44 7700-900123' }), u);
      expect(res.status).to.equal(201);
      expect(res.body).to.have.all.keys('device');
      expect(res.body.device).to.include({ deviceName: 'Mobile', method: 'sms', verified: false, enabled: true, destination: '+44••••••123' });
      const message = sender.last();
      expect(message).to.include({ tenantId: 'acme', userId: u, method: 'sms', destination: '+447700900123', purpose: 'enrollment' });
      expect(message.code).to.match(/^\d{6}$/);
      expect(JSON.stringify(res.body)).not.to.contain(message.code);
      expect(events.map((e) => e.name)).to.deep.equal(['device.enrolled']);
    });

    it('stores the destination sealed, never in clear', async () => {
      const u = user('sealed');
      const res = await as(request(app).post('/auth/mfa/devices/email').send({ deviceName: 'Mail', email: 'Someone.Private@Example.COM' }), u);
      expect(res.status).to.equal(201);
      expect(res.body.device).to.include({ method: 'email', destination: 'S•••@example.com' });
      expect(sender.last().destination).to.equal('Someone.Private@example.com');
      const row = (await db.knex('mfa_devices').where({ id: res.body.device.id }).first()) as { secret_ciphertext: Buffer; totp_algorithm: string | null };
      expect(row.secret_ciphertext.toString('latin1')).not.to.contain('Private');
      expect(row.totp_algorithm).to.equal(null);
      // The pending code's hash is keyed with the router's key ring (a pepper): its salt names the ring's key.
      const code = (await db.knex('mfa_otp_codes').where({ device_id: res.body.device.id }).first()) as { salt: Buffer };
      expect(code.salt.toString('latin1', 0, 3 + ring.activeKeyId.length + 1)).to.equal(`v2:${ring.activeKeyId}:`);
    });

    it('the enrolment code verifies the device (once); the list shows it masked', async () => {
      const u = user('verify');
      const res = await as(request(app).post('/auth/mfa/devices/email').send({ deviceName: 'Mail', email: 'user@example.org' }), u);
      const { code } = sender.last();
      let v = await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code: code === '000000' ? '111111' : '000000' }), u);
      expect(v.status).to.equal(400);
      v = await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code }), u);
      expect(v.status).to.equal(200);
      expect(v.body).to.include({ verified: true, method: 'email', destination: 'u•••@example.org' });
      expect(v.body.lastUsedAt).to.be.a('string');
      const list = await as(request(app).get('/auth/mfa/devices'), u);
      expect(list.body[0]).to.include({ method: 'email', verified: true, destination: 'u•••@example.org' });
      expect(events.map((e) => e.name)).to.include.members(['device.verified', 'mfa.succeeded']);
      expect(JSON.stringify(events)).not.to.contain(code);
      expect(JSON.stringify(events)).not.to.contain('user@example.org');
    });

    it('the right code sent twice at once (a double submit): one 200; the other not counted, no failure event, in either order', async () => {
      // Deterministic, both orders two instances produce: the second request reads the device (pending) and the first
      // then verifies it whole; or the first has used the code up and not yet marked the device when the second runs.
      const orders = [
        { hook: racingDevices(db.storage, 'get', 'after'), second: 40000012 /* already verified */ },
        { hook: racingDevices(db.storage, 'markVerified', 'before'), second: 40000010 /* no code left to compare with */ },
      ];
      for (const [n, { hook, second: expected }] of orders.entries()) {
        const { app: raced, router } = mfaApp(hook.storage, { now: clock.now, rateLimit: false, sender, lockout: { maxFailures: 3 } });
        const seen: string[] = [];
        for (const name of ['mfa.failed', 'device.verified'] as const) router.events.on(name, () => seen.push(name));
        for (const method of ['sms', 'email'] as const) {
          const u = user(`double-${n}-${method}`);
          const enrol = await as(request(raced).post(`/auth/mfa/devices/${method}`).send(method === 'sms' ? { deviceName: 'Mobile', phoneNumber: '+44 7700 900123' } : { deviceName: 'Mail', email: 'double@example.org' }), u);
          expect(enrol.status, enrol.text).to.equal(201);
          const id = enrol.body.device.id as string;
          const { code } = sender.last();
          const verify = () => as(request(raced).post(`/auth/mfa/devices/${id}/verify`).send({ code }), u);
          let inner: request.Response | undefined;
          hook.meanwhile(async () => {
            inner = await verify();
          });
          seen.length = 0;
          const outer = await verify();
          // The request that won is the one whose write ran first: the inner one in the first order, the outer in the second.
          const [won, lost] = n === 0 ? [inner, outer] : [outer, inner];
          const what = `order ${n}, ${method}`;
          expect(won?.status, what).to.equal(200);
          expect(lost?.status, `${what}: ${lost?.text}`).to.equal(400);
          expect(lost?.body.code, what).to.equal(expected);
          expect(seen, what).to.deep.equal(['device.verified']);
          const failures = await db.knex('mfa_verification_failures').where({ tenant_id: 'acme', user_id: u }).first<{ failures: number } | undefined>();
          expect(failures?.failures ?? 0, what).to.equal(0);
        }
      }
    });

    it('codeMaxAttempts: a code that took that many wrong guesses is spent, the right one included; set-up checks it', async () => {
      const strict = build({ codeMaxAttempts: 2, lockout: { maxFailures: 10 } });
      const u = user('attempts');
      const res = await as(request(strict).post('/auth/mfa/devices/email').send({ deviceName: 'Mail', email: 'attempts@example.org' }), u);
      expect(res.status, res.text).to.equal(201);
      const { code } = sender.last();
      const wrong = code === '000000' ? '111111' : '000000';
      for (let i = 0; i < 2; i++) expect((await as(request(strict).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code: wrong }), u)).status).to.equal(400);
      const late = await as(request(strict).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code }), u);
      expect(late.status, late.text).to.equal(400);
      expect(() => build({ codeMaxAttempts: 0 })).to.throw(TypeError, /codeMaxAttempts' must be an integer from 1 to 100/);
    });

    it('400 naming the field for a bad or missing phone number / email; nothing is sent', async () => {
      const before = sender.sent.length;
      for (const [path, body, field] of [
        ['sms', { deviceName: 'x', phoneNumber: '07700 900123' }, 'phoneNumber'],
        ['sms', { deviceName: 'x', phoneNumber: '+44 77 letters' }, 'phoneNumber'],
        ['sms', { deviceName: 'x' }, 'phoneNumber'],
        ['sms', { deviceName: 'x', phoneNumber: 447700900123 }, 'phoneNumber'],
        ['email', { deviceName: 'x', email: 'not-an-address' }, 'email'],
        ['email', { deviceName: 'x', email: 'a@b' }, 'email'],
        ['email', { deviceName: 'x' }, 'email'],
        ['email', { email: 'a@example.com' }, 'deviceName'],
      ] as const) {
        const res = await as(request(app).post(`/auth/mfa/devices/${path}`).send(body), 'bad-destination');
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body.errors[0].field, JSON.stringify(body)).to.equal(field);
      }
      expect(sender.sent.length).to.equal(before);
      expect((await as(request(app).get('/auth/mfa/devices'), 'bad-destination')).body).to.deep.equal([]);
    });

    it('503 when the sender fails, and the enrolment is withdrawn (no leftover device, no leaked number)', async () => {
      const u = user('undeliverable');
      sender.failing = true;
      const res = await as(request(app).post('/auth/mfa/devices/sms').send({ deviceName: 'Mobile', phoneNumber: '+15555550123' }), u);
      expect(res.status).to.equal(503);
      expect(res.headers['retry-after']).to.be.a('string');
      expect(JSON.stringify(res.body)).not.to.contain('5555550123');
      expect((await as(request(app).get('/auth/mfa/devices'), u)).body).to.deep.equal([]);
    });

    it('400 METHOD_NOT_ENABLED without a sender; TOTP still works', async () => {
      const noSender = build({}, false);
      const res = await as(request(noSender).post('/auth/mfa/devices/sms').send({ deviceName: 'Mobile', phoneNumber: '+447700900123' }), 'no-sender');
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000020);
      expect((await as(request(noSender).post('/auth/mfa/devices/totp').send({ deviceName: 'App' }), 'no-sender')).status).to.equal(201);
    });
  });

  describe('POST /devices/:id/challenge and sms/email login', () => {
    it('202 sends a login code; POST /verify accepts it once; lastUsedAt is set', async () => {
      const u = user('challenge');
      const id = await smsDevice(u);
      const res = await as(request(app).post(`/auth/mfa/devices/${id}/challenge`), u);
      expect(res.status).to.equal(202);
      expect(res.body).to.deep.equal({ sent: true, destination: '+44••••••123', purpose: 'login', expiresIn: 600 });
      const { code, purpose } = sender.last();
      expect(purpose).to.equal('login');
      await db.knex('mfa_devices').where({ tenant_id: 'acme', id }).update({ last_used_at: new Date(Date.UTC(2020, 0, 1)) });
      let v = await login(u, { code });
      expect(v.status).to.equal(200);
      expect(v.body).to.deep.equal({ verified: true, method: 'sms', deviceId: id });
      v = await login(u, { code });
      expect(v.status).to.equal(400);
      const list = await as(request(app).get('/auth/mfa/devices'), u);
      // The login set it (it was 2020 before).
      expect(Date.parse(list.body[0].lastUsedAt as string)).to.be.above(Date.UTC(2026, 0, 1));
    });

    it('a replayed TOTP code is not tried against pending sms/email codes: it spends none of their attempts', async () => {
      const strict = build({ codeMaxAttempts: 1, lockout: { maxFailures: 10 } });
      const u = user('replay-sms');
      const enrolled = await as(request(strict).post('/auth/mfa/devices/sms').send({ deviceName: 'Mobile', phoneNumber: '+44 7700 900124' }), u);
      const sms = enrolled.body.device.id as string;
      expect((await as(request(strict).post(`/auth/mfa/devices/${sms}/verify`).send({ code: sender.last().code }), u)).status).to.equal(200);
      const t = await as(request(strict).post('/auth/mfa/devices/totp').send({ deviceName: 'App' }), u);
      expect((await as(request(strict).post(`/auth/mfa/devices/${t.body.device.id}/verify`).send({ code: oathtool(t.body.secret as string, clock.ms) }), u)).status).to.equal(200);
      clock.step(1);
      expect((await as(request(strict).post(`/auth/mfa/devices/${sms}/challenge`), u)).status).to.equal(202);
      const smsCode = sender.last().code;
      const totpCode = oathtool(t.body.secret as string, clock.ms);
      expect((await as(request(strict).post('/auth/mfa/verify').send({ code: totpCode }), u)).status).to.equal(200);
      expect((await as(request(strict).post('/auth/mfa/verify').send({ code: totpCode }), u)).status).to.equal(400);
      // The sms code's one attempt is still there.
      const v = await as(request(strict).post('/auth/mfa/verify').send({ code: smsCode }), u);
      expect(v.status, v.text).to.equal(200);
      expect(v.body).to.include({ method: 'sms', deviceId: sms });
    });

    it('with deviceId; an enrolment code is not a login code', async () => {
      const u = user('named-sms');
      const res = await as(request(app).post('/auth/mfa/devices/sms').send({ deviceName: 'Mobile', phoneNumber: '+447700900555' }), u);
      const enrolmentCode = sender.last().code;
      expect((await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/challenge`), u)).body.purpose).to.equal('enrollment');
      const resent = sender.last().code;
      expect((await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code: enrolmentCode }), u)).status, 'replaced by the resend').to.equal(400);
      expect((await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code: resent }), u)).status).to.equal(200);
      expect((await login(u, { code: resent, deviceId: res.body.device.id })).status).to.equal(400);
      await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/challenge`), u);
      expect((await login(u, { code: sender.last().code, deviceId: res.body.device.id })).body).to.deep.equal({ verified: true, method: 'sms', deviceId: res.body.device.id });
    });

    it('an upper-case spelling of the device id is the same device: its enrolment and login codes pass', async () => {
      const u = user('upper-id');
      const res = await as(request(app).post('/auth/mfa/devices/sms').send({ deviceName: 'Mobile', phoneNumber: '+447700900556' }), u);
      const id = res.body.device.id as string;
      const upper = id.toUpperCase();
      const enrolled = await as(request(app).post(`/auth/mfa/devices/${upper}/verify`).send({ code: sender.last().code }), u);
      expect(enrolled.status, enrolled.text).to.equal(200);
      expect((await as(request(app).post(`/auth/mfa/devices/${upper}/challenge`), u)).status).to.equal(202);
      const v = await login(u, { code: sender.last().code, deviceId: upper });
      expect(v.status, v.text).to.equal(200);
      expect(v.body).to.deep.equal({ verified: true, method: 'sms', deviceId: id });
    });

    it('a user with TOTP and sms devices can log in with either', async () => {
      const u = user('both');
      const sms = await smsDevice(u);
      const t = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'App' }), u);
      await as(request(app).post(`/auth/mfa/devices/${t.body.device.id}/verify`).send({ code: oathtool(t.body.secret as string, clock.ms) }), u);
      clock.step(1);
      await as(request(app).post(`/auth/mfa/devices/${sms}/challenge`), u);
      expect((await login(u, { code: sender.last().code })).body).to.include({ method: 'sms', deviceId: sms });
      expect((await login(u, { code: oathtool(t.body.secret as string, clock.ms) })).body).to.include({ method: 'totp', deviceId: t.body.device.id });
    });

    it('400 CHALLENGE_NOT_SUPPORTED for TOTP; 400 DEVICE_DISABLED when disabled; 404 for others’ devices', async () => {
      const u = user('challenge-rules');
      const t = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'App' }), u);
      let res = await as(request(app).post(`/auth/mfa/devices/${t.body.device.id}/challenge`), u);
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000022);
      const id = await smsDevice(u);
      await as(request(app).patch(`/auth/mfa/devices/${id}`).send({ enabled: false }), u);
      res = await as(request(app).post(`/auth/mfa/devices/${id}/challenge`), u);
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000021);
      await as(request(app).patch(`/auth/mfa/devices/${id}`).send({ enabled: true }), u);
      const sent = sender.sent.length;
      expect((await as(request(app).post(`/auth/mfa/devices/${id}/challenge`), 'someone-else')).status).to.equal(404);
      expect((await as(request(app).post(`/auth/mfa/devices/${id}/challenge`), u, 'other')).status).to.equal(404);
      expect((await as(request(app).post('/auth/mfa/devices/xyz/challenge'), u)).status).to.equal(404);
      expect(sender.sent.length).to.equal(sent);
    });

    it('a login code sent before the device was turned off does not pass once it is turned on again; a new one does', async () => {
      const u = user('off-and-on');
      const id = await smsDevice(u);
      await as(request(app).post(`/auth/mfa/devices/${id}/challenge`), u);
      const { code } = sender.last();
      // A rename leaves the pending code alone.
      expect((await as(request(app).patch(`/auth/mfa/devices/${id}`).send({ deviceName: 'Renamed' }), u)).status).to.equal(200);
      expect(await db.knex('mfa_otp_codes').where({ device_id: id }).count({ n: '*' }).first()).to.deep.equal({ n: '1' });
      expect((await as(request(app).patch(`/auth/mfa/devices/${id}`).send({ enabled: false }), u)).status).to.equal(200);
      expect((await as(request(app).patch(`/auth/mfa/devices/${id}`).send({ enabled: true }), u)).status).to.equal(200);
      const res = await login(u, { code, deviceId: id });
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000010);
      await as(request(app).post(`/auth/mfa/devices/${id}/challenge`), u);
      expect((await login(u, { code: sender.last().code, deviceId: id })).body).to.deep.equal({ verified: true, method: 'sms', deviceId: id });
    });

    it('a challenge racing a disable leaves no code that passes once the device is on again (the insert waits for the disable, or finds it off)', async () => {
      const u = user('off-race');
      const id = await smsDevice(u);
      // The login code's insert is held open for 1 s (it has locked the device row by then), and the disable comes in it.
      await db.knex.raw(`create function test_slow_code() returns trigger language plpgsql as $$ begin if new.purpose = 'login' then perform pg_sleep(1); end if; return new; end $$`);
      await db.knex.raw('create trigger test_slow_code before insert on mfa_otp_codes for each row execute function test_slow_code()');
      try {
        const challenge = as(request(app).post(`/auth/mfa/devices/${id}/challenge`), u).then((r) => r);
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect((await as(request(app).patch(`/auth/mfa/devices/${id}`).send({ enabled: false }), u)).status).to.equal(200);
        expect((await challenge).status).to.equal(202);
      } finally {
        await db.knex.raw('drop trigger test_slow_code on mfa_otp_codes');
        await db.knex.raw('drop function test_slow_code()');
      }
      const { code } = sender.last();
      expect(await db.knex('mfa_otp_codes').where({ device_id: id }).count({ n: '*' }).first()).to.deep.equal({ n: '0' });
      expect((await as(request(app).patch(`/auth/mfa/devices/${id}`).send({ enabled: true }), u)).status).to.equal(200);
      expect((await login(u, { code, deviceId: id })).body.code).to.equal(40000010);
    });

    it('wrong sms codes count towards the lockout', async () => {
      const u = user('sms-lock');
      const id = await smsDevice(u);
      await as(request(app).post(`/auth/mfa/devices/${id}/challenge`), u);
      const { code } = sender.last();
      const wrong = code === '000000' ? '111111' : '000000';
      for (let i = 0; i < 3; i++) expect((await login(u, { code: wrong })).status).to.equal(400);
      expect((await login(u, { code })).status).to.equal(429);
      expect(events.map((e) => e.name)).to.include('lockout');
    });
  });

  describe('recovery codes', () => {
    /** Recovery codes back up a second factor: `u` gets a verified sms device, then a set. */
    async function codesFor(u: string, tenant = 'acme'): Promise<string[]> {
      await smsDevice(u, undefined, tenant);
      const res = await as(request(app).post('/auth/mfa/recovery-codes'), u, tenant);
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
      return res.body.codes as string[];
    }

    it('GET → 0; POST → 201 with 10 distinct human-friendly codes; GET → 10; events carry the count only', async () => {
      const u = user('rc');
      await smsDevice(u);
      events.length = 0;
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 0 });
      const res = await as(request(app).post('/auth/mfa/recovery-codes'), u);
      expect(res.status).to.equal(201);
      expect(res.headers['cache-control']).to.equal('no-store');
      const codes = res.body.codes as string[];
      expect(codes).to.have.length(10);
      expect(new Set(codes).size).to.equal(10);
      for (const c of codes) expect(c).to.match(/^[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}$/);
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 10 });
      expect(events.map((e) => e.name)).to.deep.equal(['recovery_codes.generated']);
      expect(events[0]!.payload).to.include({ count: 10, userId: u });
      for (const c of codes) expect(JSON.stringify(events)).not.to.contain(c);
      const rows = (await db.knex('mfa_recovery_codes').where({ tenant_id: 'acme', user_id: u })) as Array<{ code_hash: Buffer }>;
      expect(rows).to.have.length(10);
      for (const r of rows) for (const c of codes) expect(r.code_hash.toString('latin1')).not.to.contain(c);
    });

    it('POST with a member (none is defined) → 400 naming it, the set is kept; {} and no body → 201', async () => {
      const u = user('rc-body');
      await smsDevice(u);
      const first = await as(request(app).post('/auth/mfa/recovery-codes').send({}), u);
      expect(first.status).to.equal(201);
      for (const body of [{ count: 5 }, [], 'x']) {
        const res = await as(request(app).post('/auth/mfa/recovery-codes').type('json').send(JSON.stringify(body)), u);
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.type).to.equal('application/problem+json');
        expect(res.body.errors, JSON.stringify(body)).to.be.an('array').that.is.not.empty;
      }
      const named = await as(request(app).post('/auth/mfa/recovery-codes').send({ count: 5 }), u);
      expect(named.body.errors[0]).to.include({ field: '(body)', code: 'unknown' });
      expect(named.body.errors[0].description).to.contain('"count"');
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 10 });
      const login = await as(request(app).post('/auth/mfa/verify').send({ recoveryCode: first.body.codes[0] }), u);
      expect(login.status, JSON.stringify(login.body)).to.equal(200);
    });

    it('a recovery code passes the second factor once (method recovery_code, no deviceId, how many are left), upper-case and without dashes too', async () => {
      const u = user('rc-login');
      const codes = await codesFor(u);
      let res = await login(u, { recoveryCode: codes[0] });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ verified: true, method: 'recovery_code', recoveryCodesRemaining: 9 });
      res = await login(u, { recoveryCode: codes[0] });
      expect(res.status).to.equal(400);
      res = await login(u, { recoveryCode: codes[1]!.toUpperCase().replaceAll('-', ' ') });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ verified: true, method: 'recovery_code', recoveryCodesRemaining: 8 });
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 8 });
      expect(events.filter((e) => e.name === 'mfa.succeeded').at(-1)!.payload).to.include({ method: 'recovery_code', via: 'login' });
    });

    it('the last recovery code: the login says 0 are left; a code of another kind carries no count', async () => {
      const u = user('rc-last');
      const id = await smsDevice(u);
      const codes = (await as(request(app).post('/auth/mfa/recovery-codes'), u)).body.codes as string[];
      expect(codes).to.have.length(10);
      for (let i = 0; i < codes.length; i++) {
        const res = await login(u, { recoveryCode: codes[i] });
        expect(res.status, `code ${i}`).to.equal(200);
        expect(res.body.recoveryCodesRemaining, `code ${i}`).to.equal(codes.length - 1 - i);
      }
      expect((await login(u, { recoveryCode: codes[0] })).status).to.equal(400);
      await as(request(app).post(`/auth/mfa/devices/${id}/challenge`), u);
      const sms = await login(u, { code: sender.last().code });
      expect(sms.status, sms.text).to.equal(200);
      expect(sms.body).to.deep.equal({ verified: true, method: 'sms', deviceId: id });
    });

    it('a count of the codes left that fails after the code was spent: the login still passes, without the field, and says why in the log', async () => {
      const u = user('rc-count-fails');
      const codes = await codesFor(u);
      const logged: Array<[Record<string, unknown>, string]> = [];
      const capture = (obj: Record<string, unknown>, msg: string) => void logged.push([obj, msg]);
      const logger = { debug: capture, info: capture, warn: capture, error: capture };
      const failingCount = <T extends object>(target: T, name: string, fail: () => unknown): T =>
        new Proxy(target, {
          get(t, p) {
            if (p === name) return fail;
            const v: unknown = Reflect.get(t, p);
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
          },
        });
      const counting = failingCount(db.storage.recoveryCodes, 'countRemaining', () => Promise.reject(new Error('connection terminated')));
      const broken = new Proxy(db.storage, { get: (t, p): unknown => (p === 'recoveryCodes' ? counting : Reflect.get(t, p)) });
      const app2 = mfaApp(broken, { now: clock.now, rateLimit: false, sender, lockout: { maxFailures: 3 }, logger }).app;
      const res = await as(request(app2).post('/auth/mfa/verify').send({ recoveryCode: codes[0] }), u);
      expect(res.status, res.text).to.equal(200);
      expect(res.body).to.deep.equal({ verified: true, method: 'recovery_code' });
      expect(logged.find(([, msg]) => msg === 'login: a recovery code passed, but the codes left could not be counted')?.[0]).to.include({ tenant_id: 'acme', error: 'connection terminated' });
      // The code was spent all the same.
      expect((await login(u, { recoveryCode: codes[0] })).status).to.equal(400);
    });

    it('codes are stored as scrypt of the user and the code (NIST SP 800-63B look-up secrets), not one fast hash; a set stored in the earlier SHA-256 form still passes, once', async () => {
      const u = user('rc-kdf');
      const codes = await codesFor(u);
      const stored = ((await db.knex('mfa_recovery_codes').where({ tenant_id: 'acme', user_id: u })) as Array<{ code_hash: Buffer }>).map((r) => r.code_hash.toString('hex'));
      const canonical = (c: string) => c.toUpperCase().replaceAll('-', '');
      const sha256 = (c: string) => createHash('sha256').update(JSON.stringify(['express-mfa-kit/recovery-code/v1', 'acme', u, canonical(c)])).digest('hex');
      const kdf = (c: string) => scryptSync(canonical(c), JSON.stringify(['express-mfa-kit/recovery-code/v2', 'acme', u]), 32, { N: 2 ** 12, r: 8, p: 1 }).toString('hex');
      expect(stored.sort()).to.deep.equal(codes.map(kdf).sort());
      for (const c of codes) expect(stored).not.to.include(sha256(c));
      // A set made by the version before: one SHA-256 a code.
      const old = user('rc-legacy');
      await codesFor(old);
      const legacy = ['0123-4567-89ab', 'cdef-ghjk-mnpq'];
      await db.knex('mfa_recovery_codes').where({ tenant_id: 'acme', user_id: old }).delete();
      await db.knex('mfa_recovery_codes').insert(legacy.map((c) => ({ tenant_id: 'acme', user_id: old, code_hash: Buffer.from(createHash('sha256').update(JSON.stringify(['express-mfa-kit/recovery-code/v1', 'acme', old, canonical(c)])).digest()) })));
      expect((await login(old, { recoveryCode: legacy[0] })).status).to.equal(200);
      expect((await login(old, { recoveryCode: legacy[0] })).status).to.equal(400);
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), old)).body).to.deep.equal({ remaining: 1 });
    });

    it('a new set counts against the rate limit of the verify and send routes (a key derivation a code): over it, 429', async () => {
      const limitedApp = build({ rateLimit: { limit: 3, windowMs: 60_000 } });
      const u = user('rc-limit');
      const enrolled = await as(request(limitedApp).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), u);
      expect(enrolled.status).to.equal(201);
      const confirmed = await as(request(limitedApp).post(`/auth/mfa/devices/${enrolled.body.device.id}/verify`).send({ code: oathtool(enrolled.body.secret as string, clock.now()) }), u);
      expect(confirmed.status).to.equal(200);
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await as(request(limitedApp).post('/auth/mfa/recovery-codes'), u)).status);
      // The verify took one of the three: two sets, then the limit.
      expect(statuses).to.deep.equal([201, 201, 429]);
      const over = await as(request(limitedApp).post('/auth/mfa/recovery-codes'), u);
      expect(over.body).to.include({ status: 429, code: 42900001 });
      expect(Number(over.headers['retry-after'])).to.be.within(1, 60);
      // Reading the count is not limited.
      expect((await as(request(limitedApp).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 10 });
    });

    it('a code and a recovery code together, or neither → 400 that says which (nothing is used up)', async () => {
      const u = user('rc-both');
      const codes = await codesFor(u);
      let res = await login(u, { code: '123456', recoveryCode: codes[0] });
      expect(res.status).to.equal(400);
      expect(res.body.errors).to.deep.equal([{ field: 'recoveryCode', code: 'invalid', description: 'recoveryCode: give code or recoveryCode, not both' }]);
      res = await login(u, {});
      expect(res.status).to.equal(400);
      expect(res.body.errors).to.deep.equal([{ field: 'code', code: 'required', description: 'code: give code or recoveryCode' }]);
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 10 });
    });

    it('regenerating replaces the set: old codes stop working', async () => {
      const u = user('rc-regen');
      const old = await codesFor(u);
      const fresh = (await as(request(app).post('/auth/mfa/recovery-codes'), u)).body.codes as string[];
      expect(fresh).not.to.include.members(old.slice(0, 1));
      expect((await login(u, { recoveryCode: old[2] })).status).to.equal(400);
      expect((await login(u, { recoveryCode: fresh[2] })).status).to.equal(200);
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 9 });
    });

    it('another user’s or another tenant’s codes do not work and their counts are separate', async () => {
      const u = user('rc-owner');
      const codes = await codesFor(u);
      // Each has a device of their own, so the 400s are about the code.
      const thief = user('rc-thief');
      await smsDevice(thief);
      await smsDevice(u, undefined, 'other');
      for (const [who, tenant] of [[thief, 'acme'], [u, 'other']] as const) {
        const res = await login(who, { recoveryCode: codes[0] }, tenant);
        expect([res.status, res.body.code], `${who} ${tenant}`).to.deep.equal([400, 40000010]);
      }
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u, 'other')).body).to.deep.equal({ remaining: 0 });
      expect((await login(u, { recoveryCode: codes[0] })).status).to.equal(200);
    });

    it('wrong recovery codes count towards the lockout; locked, even a right one gets 429', async () => {
      const u = user('rc-lock');
      const codes = await codesFor(u);
      events.length = 0;
      for (let i = 0; i < 3; i++) expect((await login(u, { recoveryCode: 'aaaa-bbbb-cccc' })).status).to.equal(400);
      // Each wrong one is a failure event, and the third locks (its event too).
      expect(events.map((e) => e.name)).to.deep.equal(['mfa.failed', 'mfa.failed', 'mfa.failed', 'lockout']);
      const res = await login(u, { recoveryCode: codes[0] });
      expect(res.status).to.equal(429);
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 10 });
    });

    it('concurrent use of one recovery code: exactly one 200', async () => {
      const u = user('rc-race');
      const codes = await codesFor(u);
      const results = await Promise.all([1, 2, 3, 4].map(() => login(u, { recoveryCode: codes[0] })));
      expect(results.filter((r) => r.status === 200)).to.have.length(1);
    });

    it('no verified device (none, or an enrolment not confirmed) → POST is a 400 mfa-not-enrolled and stores nothing', async () => {
      const u = user('rc-none');
      const refused = async () => {
        const res = await as(request(app).post('/auth/mfa/recovery-codes'), u);
        expect(res.status, res.text).to.equal(400);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(res.body).to.include({ code: 40000013, detail: 'Recovery codes are the fallback of a second factor: verify a device first.' });
      };
      await refused();
      expect((await as(request(app).post('/auth/mfa/devices/sms').send({ deviceName: 'Mobile', phoneNumber: '+44 7700 900123' }), u)).status).to.equal(201);
      await refused();
      expect(await db.knex('mfa_recovery_codes').where({ tenant_id: 'acme', user_id: u })).to.have.length(0);
      expect(events.map((e) => e.name)).not.to.include('recovery_codes.generated');
    });

    it('removing the last verified device removes the codes (event recovery_codes.revoked); they do not come back with the next device', async () => {
      const u = user('rc-last');
      const codes = await codesFor(u);
      const second = await smsDevice(u, '+44 7700 900456');
      await login(u, { recoveryCode: codes[0] });
      const ids = ((await as(request(app).get('/auth/mfa/devices'), u)).body as Array<{ id: string }>).map((d) => d.id);
      expect(ids).to.have.length(2);
      // One of two: the codes stay.
      expect((await as(request(app).delete(`/auth/mfa/devices/${second}`), u)).status).to.equal(204);
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 9 });
      events.length = 0;
      const first = ids.find((id) => id !== second)!;
      expect((await as(request(app).delete(`/auth/mfa/devices/${first}`), u)).status).to.equal(204);
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 0 });
      expect(await db.knex('mfa_recovery_codes').where({ tenant_id: 'acme', user_id: u })).to.have.length(0);
      const revoked = events.filter((e) => e.name === 'recovery_codes.revoked');
      expect(revoked).to.have.length(1);
      expect(revoked[0]!.payload).to.include({ userId: u, count: 9, reason: 'last_device_removed' });
      // Without a device, a code is not a second factor; with a new one, the old codes are gone.
      let res = await login(u, { recoveryCode: codes[1] });
      expect([res.status, res.body.code]).to.deep.equal([400, 40000013]);
      await smsDevice(u);
      res = await login(u, { recoveryCode: codes[1] });
      expect([res.status, res.body.code]).to.deep.equal([400, 40000010]);
    });

    it('codes left without a device (stored before this rule) do not pass the second factor and are not used up', async () => {
      const u = user('rc-left');
      const codes = await createRecoveryCodes({ storage: db.storage }).regenerate('acme', u);
      const res = await login(u, { recoveryCode: codes[0] });
      expect([res.status, res.body.code]).to.deep.equal([400, 40000013]);
      expect((await as(request(app).get('/auth/mfa/recovery-codes'), u)).body).to.deep.equal({ remaining: 10 });
      expect(events.map((e) => e.name)).not.to.include('mfa.succeeded');
    });
  });
});
