/** `mfaDevicesRouter` device routes over HTTP on real Postgres: auth, listing (seed 003), TOTP enrolment, rules, isolation. */
import { expect } from 'chai';
import type express from 'express';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { createMfaEvents, keyRing, mfaDevicesRouter, reencrypt, silentLogger, type MfaEventMap, type MfaEventName } from '../index.js';
import { insertDevice, migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { as, JWT_SECRET, mfaApp, oathtool, TestClock, token } from './support/mfa.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('mfaDevicesRouter: devices', () => {
  let db: TestDb;
  let clock: TestClock;
  let app: express.Express;
  const events: Array<{ name: MfaEventName; payload: MfaEventMap[MfaEventName][0] }> = [];

  before(async () => {
    db = await migratedStorage();
    clock = new TestClock();
    const emitter = createMfaEvents();
    for (const name of ['device.enrolled', 'device.verified', 'device.updated', 'device.removed', 'mfa.succeeded', 'mfa.failed', 'replay.refused', 'lockout'] as const) {
      emitter.on(name, (payload: MfaEventMap[typeof name][0]) => events.push({ name, payload }));
    }
    ({ app } = mfaApp(db.storage, { now: clock.now, events: emitter, issuer: 'ACME', rateLimit: false, maxDevices: 3 }));
  });
  after(async () => {
    await db.drop();
  });
  beforeEach(() => {
    events.length = 0;
  });

  const enrol = async (userId: string, deviceName = 'Phone', tenantId = 'acme') => {
    const res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName }), userId, tenantId);
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    return res.body as { device: { id: string }; secret: string; otpauthUrl: string; qrCode: string };
  };
  const enrolVerified = async (userId: string, deviceName = 'Phone', tenantId = 'acme') => {
    const e = await enrol(userId, deviceName, tenantId);
    const res = await as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code: oathtool(e.secret, clock.ms) }), userId, tenantId);
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    clock.step(1); // the next code of this device is a new step
    return e;
  };

  describe('authentication', () => {
    it('401 without a token, with a bad signature, expired, alg none, a malformed header', async () => {
      const expired = token('alice', 'acme', {}, { expiresIn: -10 });
      const forged = jwt.sign({ sub: 'alice', tenant_id: 'acme' }, 'another-secret-0123456789abcdef', { algorithm: 'HS256' });
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      const payload = Buffer.from(JSON.stringify({ sub: 'alice', tenant_id: 'acme', exp: Math.floor(Date.now() / 1000) + 300 })).toString('base64url');
      const none = `${header}.${payload}.`;
      for (const auth of [undefined, `Bearer ${forged}`, `Bearer ${expired}`, `Bearer ${none}`, 'Bearer', 'Basic YWxpY2U6cHc=', `Bearer ${token('alice')}x`]) {
        const req = request(app).get('/auth/mfa/devices');
        if (auth !== undefined) void req.set('Authorization', auth);
        const res = await req;
        expect(res.status, String(auth)).to.equal(401);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(res.body).to.include({ status: 401, code: 40100001 });
      }
    });

    it('401 for an RS256-style token presented to an HS256 router and for a token without sub', async () => {
      const noSub = jwt.sign({ tenant_id: 'acme' }, JWT_SECRET, { algorithm: 'HS256' });
      const res = await request(app).get('/auth/mfa/devices').set('Authorization', `Bearer ${noSub}`);
      expect(res.status).to.equal(401);
      const hs512 = jwt.sign({ sub: 'alice', tenant_id: 'acme' }, JWT_SECRET, { algorithm: 'HS512' });
      expect((await request(app).get('/auth/mfa/devices').set('Authorization', `Bearer ${hs512}`)).status).to.equal(401);
    });

    it('403 when X-Tenant-ID differs from the token tenant; fine when it agrees', async () => {
      let res = await as(request(app).get('/auth/mfa/devices'), 'alice').set('X-Tenant-ID', 'other');
      expect(res.status).to.equal(403);
      expect(res.body.code).to.equal(40300001);
      expect(res.body.detail).to.equal("X-Tenant-ID does not match tenant_id, the caller's tenant.");
      res = await as(request(app).get('/auth/mfa/devices'), 'alice').set('X-Tenant-ID', 'acme');
      expect(res.status).to.equal(200);
      // With a header and claim of one's own, the answer names those.
      const { app: named } = mfaApp(db.storage, { tenantHeader: 'X-Org-ID', tenantClaim: 'org', rateLimit: false });
      res = await request(named).get('/auth/mfa/devices').set('Authorization', `Bearer ${jwt.sign({ sub: 'alice', org: 'acme' }, JWT_SECRET, { expiresIn: 300 })}`).set('X-Org-ID', 'other');
      expect(res.status).to.equal(403);
      expect(res.body.detail).to.equal("X-Org-ID does not match org, the caller's tenant.");
    });

    it('400 with a field violation when the token has no tenant claim or a malformed one', async () => {
      let res = await request(app).get('/auth/mfa/devices').set('Authorization', `Bearer ${token('alice', null)}`);
      expect(res.status).to.equal(400);
      expect(res.body.errors[0]).to.include({ field: 'tenant_id', code: 'required' });
      res = await request(app).get('/auth/mfa/devices').set('Authorization', `Bearer ${token('alice', 'bad tenant!')}`);
      expect(res.status).to.equal(400);
      expect(res.body.errors[0]).to.include({ field: 'tenant_id', code: 'format' });
    });
  });

  describe('GET /devices (seed 003)', () => {
    it('answers an empty bare array for a user without devices', async () => {
      const res = await as(request(app).get('/auth/mfa/devices'), 'nobody');
      expect(res.status).to.equal(200);
      expect(res.headers['content-type']).to.match(/^application\/json/);
      expect(res.body).to.deep.equal([]);
    });

    it('answers a bare array of MfaDeviceDto, newest first, lastUsedAt only once used', async () => {
      const first = await enrolVerified('lister', 'Work laptop');
      const second = await enrol('lister', 'Spare');
      const res = await as(request(app).get('/auth/mfa/devices'), 'lister');
      expect(res.status).to.equal(200);
      expect(res.body).to.be.an('array').with.length(2);
      const [a, b] = res.body as Array<Record<string, unknown>>;
      expect(a).to.have.all.keys('id', 'deviceName', 'method', 'verified', 'enabled', 'createdAt');
      expect(a).to.include({ id: second.device.id, deviceName: 'Spare', method: 'totp', verified: false, enabled: true });
      expect(b).to.include({ id: first.device.id, deviceName: 'Work laptop', method: 'totp', verified: true });
      expect(b!.lastUsedAt).to.match(ISO_MS);
      expect(b!.createdAt).to.match(ISO_MS);
      expect(a!.id).to.match(UUID);
    });

    it('page and page_size (CONTRACT.md §3) page the bare array; X-Total-Count is the whole list; bad values → 400', async () => {
      const ids = [];
      for (const name of ['One', 'Two', 'Three']) ids.unshift((await enrol('pager', name)).device.id);
      const list = async (query: string) => as(request(app).get(`/auth/mfa/devices${query}`), 'pager');
      let res = await list('');
      expect(res.headers['x-total-count']).to.equal('3');
      expect((res.body as Array<{ id: string }>).map((d) => d.id)).to.deep.equal(ids);
      res = await list('?page_size=2');
      expect((res.body as Array<{ id: string }>).map((d) => d.id)).to.deep.equal(ids.slice(0, 2));
      res = await list('?page=2&page_size=2');
      expect((res.body as Array<{ id: string }>).map((d) => d.id)).to.deep.equal(ids.slice(2));
      expect(res.headers['x-total-count']).to.equal('3');
      expect((await list('?page=9')).body).to.deep.equal([]);
      for (const bad of ['?page=abc', '?page=0', '?page_size=101', '?page_size=0', '?page=1&page=2', '?page_size=1.5']) {
        res = await list(bad);
        expect(res.status, bad).to.equal(400);
        expect(res.body.errors[0].field, bad).to.match(/^page(_size)?$/);
      }
    });

    it('shows another user or another tenant nothing', async () => {
      await enrol('owner-x');
      expect((await as(request(app).get('/auth/mfa/devices'), 'intruder')).body).to.deep.equal([]);
      expect((await as(request(app).get('/auth/mfa/devices'), 'owner-x', 'other')).body).to.deep.equal([]);
    });
  });

  describe('POST /devices/totp', () => {
    it('a body that is JSON but not an object (an array, null, a number) is told so in the same words, whichever parser found it', async () => {
      for (const body of ['[]', '[{"deviceName":"x"}]', 'null', '5']) {
        const res = await as(request(app).post('/auth/mfa/devices/totp').set('Content-Type', 'application/json').send(body), 'not-object');
        expect(res.status, body).to.equal(400);
        expect(res.body, body).to.include({ code: 40000001, detail: '(body) must be a JSON object' });
        expect(res.body.errors, body).to.deep.equal([{ field: '(body)', code: 'type', description: '(body) must be a JSON object' }]);
      }
    });

    it('201 with the device, a 160-bit base32 secret, the otpauth URI (issuer, account) and a QR data URL', async () => {
      const res = await request(app)
        .post('/auth/mfa/devices/totp')
        .set('Authorization', `Bearer ${token('enroller', 'acme', { email: 'enroller@example.com' })}`)
        .send({ deviceName: '  iPhone 15  ' });
      expect(res.status).to.equal(201);
      expect(res.headers['cache-control']).to.equal('no-store');
      expect(res.body).to.have.all.keys('device', 'secret', 'otpauthUrl', 'qrCode');
      // RFC 9110 §15.3.2: the new device is not the target URI; its own path, under the mount path, is.
      expect(res.headers.location).to.equal(`/auth/mfa/devices/${String(res.body.device.id)}`);
      expect(res.body.device).to.include({ deviceName: 'iPhone 15', method: 'totp', verified: false, enabled: true });
      expect(res.body.secret).to.match(/^[A-Z2-7]{32}$/);
      const url = new URL(res.body.otpauthUrl as string);
      expect(url.protocol).to.equal('otpauth:');
      expect(decodeURIComponent(url.pathname)).to.equal('/ACME:enroller@example.com');
      expect(url.searchParams.get('secret')).to.equal(res.body.secret);
      expect(url.searchParams.get('issuer')).to.equal('ACME');
      expect(res.body.qrCode).to.match(/^data:image\/png;base64,/);
      expect(events.map((e) => e.name)).to.deep.equal(['device.enrolled']);
      expect(events[0]!.payload).to.include({ tenantId: 'acme', userId: 'enroller', deviceId: res.body.device.id });
    });

    it('an email claim no authenticator app can show (a lone surrogate, NUL, a bidi override, 255+ characters) labels the account with the user id: 201, not a 500, and one device', async () => {
      for (const [n, email] of ['a\ud800@example.com', 'a\u0000b@example.com', 'admin\u202e@example.com', `${'a'.repeat(2400)}@example.com`, 42].entries()) {
        const user = `odd-email-${n}`;
        const res = await request(app).post('/auth/mfa/devices/totp').set('Authorization', `Bearer ${token(user, 'acme', { email })}`).send({ deviceName: 'Phone' });
        expect(res.status, `${n}: ${res.text.slice(0, 200)}`).to.equal(201);
        expect(decodeURIComponent(new URL(res.body.otpauthUrl as string).pathname), String(n)).to.equal(`/ACME:${user}`);
        expect((await as(request(app).get('/auth/mfa/devices'), user)).body, String(n)).to.have.length(1);
      }
    });

    it('a colon never reaches the account label (Key Uri Format: apps split issuer:account at it): an email with one gives the user id, whose colons become _', async () => {
      const cases: Array<[user: string, email: string | undefined, label: string]> = [
        ['colon-email', 'a+b:c@example.com', 'colon-email'],
        ['urn:user:7', undefined, 'urn_user_7'],
        ['urn:user:8', 'x:y@example.com', 'urn_user_8'],
        ['urn:user:9', 'nine@example.com', 'nine@example.com'],
      ];
      for (const [user, email, label] of cases) {
        const res = await request(app).post('/auth/mfa/devices/totp').set('Authorization', `Bearer ${token(user, 'acme', email === undefined ? {} : { email })}`).send({ deviceName: 'Phone' });
        expect(res.status, res.text).to.equal(201);
        const path = decodeURIComponent(new URL(res.body.otpauthUrl as string).pathname);
        expect(path, user).to.equal(`/ACME:${label}`);
        expect(path.split(':'), user).to.have.length(2);
      }
    });

    it("a host's accountName that answers no usable label: the user id, and a warning without the label", async () => {
      const lines: unknown[] = [];
      const logger = { ...silentLogger, warn: (...args: unknown[]) => void lines.push(args), child: () => logger };
      const { app: custom } = mfaApp(db.storage, { rateLimit: false, accountName: () => 'x'.repeat(300), logger: logger });
      const res = await as(request(custom).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), 'custom-label');
      expect(res.status, res.text).to.equal(201);
      expect(decodeURIComponent(new URL(res.body.otpauthUrl as string).pathname)).to.equal('/express-mfa-kit:custom-label');
      expect(JSON.stringify(lines)).to.contain('accountName answered no usable label').and.not.contain('xxxx');
      expect(() => mfaDevicesRouter({ storage: db.storage, keyRing: ring, jwt: { secret: JWT_SECRET }, issuer: 'A'.repeat(101) })).to.throw(TypeError, /'issuer' must be 1-100 characters/);
      expect(() => mfaDevicesRouter({ storage: db.storage, keyRing: ring, jwt: { secret: JWT_SECRET }, issuer: 'Bad\u202eIssuer' })).to.throw(TypeError, /'issuer'/);
      // Characters, not UTF-16 units: 100 emoji are an issuer, and 254 a label.
      expect(() => mfaDevicesRouter({ storage: db.storage, keyRing: ring, jwt: { secret: JWT_SECRET }, issuer: '\u{1F510}'.repeat(100) })).not.to.throw();
      const emoji = '\u{1F600}'.repeat(254);
      const { app: wide } = mfaApp(db.storage, { rateLimit: false, accountName: () => emoji, logger: silentLogger });
      const labelled = await as(request(wide).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), 'wide-label');
      expect(decodeURIComponent(new URL(labelled.body.otpauthUrl as string).pathname)).to.equal(`/express-mfa-kit:${emoji}`);
    });

    it('stores the secret sealed with the key ring, bound to tenant, user and device', async () => {
      const e = await enrol('sealed');
      const row = (await db.knex('mfa_devices').where({ tenant_id: 'acme', id: e.device.id }).first()) as { secret_key_id: string; secret_ciphertext: Buffer; totp_skew: number };
      expect(row.secret_key_id).to.equal(ring.activeKeyId);
      expect(row.secret_ciphertext.toString('latin1')).not.to.contain(e.secret);
      expect(ring.openText({ keyId: row.secret_key_id, data: row.secret_ciphertext }, JSON.stringify(['acme', 'sealed', e.device.id]))).to.equal(e.secret);
      expect(() => ring.openText({ keyId: row.secret_key_id, data: row.secret_ciphertext }, JSON.stringify(['acme', 'other', e.device.id]))).to.throw();
      expect(row.totp_skew).to.equal(1);
    });

    it('never shows the secret again', async () => {
      const e = await enrol('once');
      const list = await as(request(app).get('/auth/mfa/devices'), 'once');
      expect(JSON.stringify(list.body)).not.to.contain(e.secret);
      const verified = await as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code: oathtool(e.secret, clock.ms) }), 'once');
      expect(JSON.stringify(verified.body)).not.to.contain(e.secret);
      expect(JSON.stringify(events)).not.to.contain(e.secret);
    });

    it('400 with errors[] for a missing, blank, too long, NUL- or control-carrying or non-string deviceName, and unknown fields', async () => {
      for (const body of [{}, { deviceName: '   ' }, { deviceName: 'x'.repeat(101) }, { deviceName: 'a\u0000b' }, { deviceName: 'Phone\r\nAdmin' }, { deviceName: 'a\u007fb' }, { deviceName: 42 }, { deviceName: 'ok', secret: 'MINE' }]) {
        const res = await as(request(app).post('/auth/mfa/devices/totp').send(body), 'validator');
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body.errors, JSON.stringify(body)).to.be.an('array').that.is.not.empty;
      }
      const res = await as(request(app).post('/auth/mfa/devices/totp').send({}), 'validator');
      expect(res.body.errors[0]).to.deep.include({ field: 'deviceName', code: 'required' });
      for (const deviceName of ['Phone\r\nAdmin', 'a\u007fb', 'Ph\u001b[2Jone', 'a\u0085b', 'Phone\u2028Admin', 'a\u2029b', 'Phone\u202Eenod', 'a\u2067b', '\u200B', ' \u2060\uFEFF ']) {
        const bad = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName }), 'validator');
        expect(bad.status, JSON.stringify(deviceName)).to.equal(400);
        expect(bad.body.errors[0], JSON.stringify(deviceName)).to.deep.include({ field: 'deviceName', code: 'format' });
      }
      expect((await as(request(app).get('/auth/mfa/devices'), 'validator')).body).to.deep.equal([]);
    });

    it('keeps names with joiners and direction marks (emoji sequences, right-to-left text)', async () => {
      for (const deviceName of ['👩‍💻 laptop', 'هاتف\u200F 2', 'Pixel\u00A08']) {
        const res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName }), 'scripts');
        expect(res.status, JSON.stringify(deviceName)).to.equal(201);
        expect(res.body.device.deviceName).to.equal(deviceName);
      }
    });

    it('400 for a query string that is not percent-encoded UTF-8', async () => {
      for (const q of ['page=%ZZ', 'page=1%FF', 'page_size=%E0%A4']) {
        const res = await as(request(app).get(`/auth/mfa/devices?${q}`), 'validator');
        expect(res.status, q).to.equal(400);
        expect(res.body.errors, q).to.deep.equal([{ field: '(query)', code: 'format', description: 'The query string has malformed percent-encoding or is not UTF-8.' }]);
      }
    });

    it('trims a device name before checking it: a pasted "Phone\\n" is stored as "Phone"', async () => {
      const res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: '\tWork phone \n' }), 'trimmer');
      expect(res.status).to.equal(201);
      expect(res.body.device.deviceName).to.equal('Work phone');
    });

    it('415 for a non-JSON body, 400 for malformed JSON', async () => {
      let res = await as(request(app).post('/auth/mfa/devices/totp').set('Content-Type', 'text/plain').send('deviceName=x'), 'validator');
      expect(res.status).to.equal(415);
      res = await as(request(app).post('/auth/mfa/devices/totp').set('Content-Type', 'application/json').send('{"deviceName":'), 'validator');
      expect(res.status).to.equal(400);
    });

    it('409 DEVICE_LIMIT_REACHED beyond maxDevices; expired enrolments do not count', async () => {
      const first = await enrol('limited', 'one');
      await enrol('limited', 'two');
      await enrol('limited', 'three');
      let res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'four' }), 'limited');
      expect(res.status).to.equal(409);
      expect(res.body).to.include({ code: 40900002 });
      await db.knex('mfa_devices').where({ tenant_id: 'acme', id: first.device.id }).update({ expires_at: new Date(Date.now() - 1000) });
      res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'four' }), 'limited');
      expect(res.status).to.equal(201);
      expect(await db.knex('mfa_devices').where({ tenant_id: 'acme', id: first.device.id }).first()).to.equal(undefined);
    });

    it('concurrent enrolments never overshoot the limit', async () => {
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: `d${i}` }), 'racer')));
      expect(results.filter((r) => r.status === 201)).to.have.length(3);
      expect(results.filter((r) => r.status === 409)).to.have.length(5);
    });
  });

  describe('POST /devices/:id/verify (enrolment)', () => {
    it('200 with the device verified for an oathtool code; events enrolled → verified, mfa.succeeded; no code in them', async () => {
      const e = await enrol('verifier');
      const code = oathtool(e.secret, clock.ms);
      const res = await as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code }), 'verifier');
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ id: e.device.id, verified: true });
      expect(res.body.lastUsedAt).to.match(ISO_MS);
      expect(events.map((x) => x.name)).to.deep.equal(['device.enrolled', 'device.verified', 'mfa.succeeded']);
      expect(events[2]!.payload).to.include({ via: 'enrollment', method: 'totp', deviceId: e.device.id, tenantId: 'acme', userId: 'verifier' });
      expect(events[2]!.payload.requestId).to.match(/^req_/);
      expect(JSON.stringify(events)).not.to.contain(code);
      const row = (await db.knex('mfa_devices').where({ id: e.device.id }).first()) as { last_step: string; expires_at: Date | null };
      expect(Number(row.last_step)).to.equal(Math.floor(clock.ms / 30_000));
      expect(row.expires_at).to.equal(null);
    });

    it('accepts "123 456" spacing', async () => {
      const e = await enrol('spacer');
      const code = oathtool(e.secret, clock.ms);
      const res = await as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code: `${code.slice(0, 3)} ${code.slice(3)}` }), 'spacer');
      expect(res.status).to.equal(200);
    });

    it('400 "Invalid or expired code." for a wrong code; the device stays unverified', async () => {
      const e = await enrol('wrong');
      const right = oathtool(e.secret, clock.ms);
      const wrong = right === '000000' ? '111111' : '000000';
      const res = await as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code: wrong }), 'wrong');
      expect(res.status).to.equal(400);
      expect(res.body).to.include({ code: 40000010, detail: 'Invalid or expired code.' });
      expect(events.map((x) => x.name)).to.deep.equal(['device.enrolled', 'mfa.failed']);
      expect((await as(request(app).get('/auth/mfa/devices'), 'wrong')).body[0].verified).to.equal(false);
    });

    it('400 with errors[] for a malformed code (not counted as an attempt)', async () => {
      const e = await enrol('malformed');
      for (const code of ['12345', 'abcdef', '123456789', 123456, '']) {
        const res = await as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code }), 'malformed');
        expect(res.status, String(code)).to.equal(400);
        expect(res.body.errors[0].field).to.equal('code');
      }
      expect(events.filter((x) => x.name === 'mfa.failed')).to.have.length(0);
    });

    it('400 DEVICE_ALREADY_VERIFIED the second time', async () => {
      const e = await enrolVerified('twice');
      const res = await as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code: oathtool(e.secret, clock.ms) }), 'twice');
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000012);
    });

    it('400 invalid or expired for an enrolment past its window, which also vanishes from the list', async () => {
      const e = await enrol('late');
      await db.knex('mfa_devices').where({ id: e.device.id }).update({ expires_at: new Date(Date.now() - 1) });
      const res = await as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code: oathtool(e.secret, clock.ms) }), 'late');
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000010);
      expect((await as(request(app).get('/auth/mfa/devices'), 'late')).body).to.deep.equal([]);
      // A wrong code on it is the same 400 but no failure: nothing is counted and no mfa.failed event is sent.
      events.length = 0;
      const wrong = await as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code: '000000' }), 'late');
      expect(wrong.status).to.equal(400);
      expect(events.map((x) => x.name)).to.deep.equal([]);
      expect(await db.knex('mfa_verification_failures').where({ tenant_id: 'acme', user_id: 'late' }).count({ n: '*' }).first()).to.deep.equal({ n: '0' });
      // Nor can it be renamed: it is gone for the user.
      expect((await as(request(app).patch(`/auth/mfa/devices/${e.device.id}`).send({ deviceName: 'Again' }), 'late')).status).to.equal(404);
    });

    it('an enrolment code is accepted once: two concurrent confirmations → one 200', async () => {
      const e = await enrol('concurrent');
      const code = oathtool(e.secret, clock.ms);
      const results = await Promise.all([1, 2, 3].map(() => as(request(app).post(`/auth/mfa/devices/${e.device.id}/verify`).send({ code }), 'concurrent')));
      expect(results.map((r) => r.status).sort()).to.deep.equal([200, 400, 400]);
    });

    it('404 for an unknown id, a non-UUID id, another user’s and another tenant’s device', async () => {
      const e = await enrol('victim');
      const code = oathtool(e.secret, clock.ms);
      for (const [path, user, tenant] of [
        [`/auth/mfa/devices/00000000-0000-4000-8000-000000000000/verify`, 'victim', 'acme'],
        [`/auth/mfa/devices/not-a-uuid/verify`, 'victim', 'acme'],
        [`/auth/mfa/devices/${e.device.id}/verify`, 'attacker', 'acme'],
        [`/auth/mfa/devices/${e.device.id}/verify`, 'victim', 'other'],
      ] as const) {
        const res = await as(request(app).post(path).send({ code }), user, tenant);
        expect(res.status, `${path} ${user}@${tenant}`).to.equal(404);
        expect(res.body.code).to.equal(40400002);
      }
      expect((await as(request(app).get('/auth/mfa/devices'), 'victim')).body[0].verified).to.equal(false);
    });
  });

  describe('PATCH /devices/:id', () => {
    it('renames, disables and enables; 200 with the device', async () => {
      const e = await enrolVerified('patcher');
      let res = await as(request(app).patch(`/auth/mfa/devices/${e.device.id}`).send({ deviceName: 'Renamed' }), 'patcher');
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ id: e.device.id, deviceName: 'Renamed', enabled: true });
      res = await as(request(app).patch(`/auth/mfa/devices/${e.device.id}`).send({ enabled: false }), 'patcher');
      expect(res.body).to.include({ deviceName: 'Renamed', enabled: false });
      expect(events.filter((x) => x.name === 'device.updated').at(-1)!.payload).to.include({ enabled: false });
      res = await as(request(app).patch(`/auth/mfa/devices/${e.device.id}`).send({ enabled: true, deviceName: 'Back' }), 'patcher');
      expect(res.body).to.include({ deviceName: 'Back', enabled: true });
    });

    it('a JSON Patch (application/json-patch+json) → 415 with Accept-Patch (RFC 5789 §2.2); JSON Merge Patch is taken', async () => {
      const e = await enrolVerified('patch-type');
      const url = `/auth/mfa/devices/${e.device.id}`;
      const patch = await as(request(app).patch(url).set('Content-Type', 'application/json-patch+json').send(JSON.stringify([{ op: 'replace', path: '/deviceName', value: 'x' }])), 'patch-type');
      expect(patch.status, patch.text).to.equal(415);
      expect(patch.headers['accept-patch']).to.equal('application/json, application/merge-patch+json');
      expect(patch.type).to.equal('application/problem+json');
      const merge = await as(request(app).patch(url).set('Content-Type', 'application/merge-patch+json').send(JSON.stringify({ deviceName: 'Merged' })), 'patch-type');
      expect(merge.status, merge.text).to.equal(200);
      expect(merge.body).to.include({ deviceName: 'Merged' });
    });

    it('400 for an empty body, a non-boolean enabled, unknown fields', async () => {
      const e = await enrol('patch-bad');
      for (const body of [{}, { enabled: 'yes' }, { deviceName: '' }, { verified: true }]) {
        const res = await as(request(app).patch(`/auth/mfa/devices/${e.device.id}`).send(body), 'patch-bad');
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body.errors).to.be.an('array').that.is.not.empty;
      }
      // A refinement says what it wants, not "(body) is required".
      const empty = await as(request(app).patch(`/auth/mfa/devices/${e.device.id}`).send({}), 'patch-bad');
      expect(empty.body.errors).to.deep.equal([{ field: '(body)', code: 'required', description: '(body): give deviceName and/or enabled' }]);
    });

    it('404 for another user, another tenant, unknown ids', async () => {
      const e = await enrol('patch-owner');
      expect((await as(request(app).patch(`/auth/mfa/devices/${e.device.id}`).send({ deviceName: 'x' }), 'patch-other')).status).to.equal(404);
      expect((await as(request(app).patch(`/auth/mfa/devices/${e.device.id}`).send({ deviceName: 'x' }), 'patch-owner', 'other')).status).to.equal(404);
      expect((await as(request(app).patch('/auth/mfa/devices/123').send({ deviceName: 'x' }), 'patch-owner')).status).to.equal(404);
      expect((await as(request(app).get('/auth/mfa/devices'), 'patch-owner')).body[0].deviceName).to.equal('Phone');
    });
  });

  describe('DELETE /devices/:id', () => {
    it('204, then gone (404 on a second delete); device.removed emitted', async () => {
      const e = await enrolVerified('remover');
      let res = await as(request(app).delete(`/auth/mfa/devices/${e.device.id}`), 'remover');
      expect(res.status).to.equal(204);
      expect(res.text).to.equal('');
      expect(events.map((x) => x.name)).to.include('device.removed');
      res = await as(request(app).delete(`/auth/mfa/devices/${e.device.id}`), 'remover');
      expect(res.status).to.equal(404);
      expect((await as(request(app).get('/auth/mfa/devices'), 'remover')).body).to.deep.equal([]);
    });

    it('404 for another user or tenant, and the device survives', async () => {
      const e = await enrol('keeper');
      expect((await as(request(app).delete(`/auth/mfa/devices/${e.device.id}`), 'thief')).status).to.equal(404);
      expect((await as(request(app).delete(`/auth/mfa/devices/${e.device.id}`), 'keeper', 'other')).status).to.equal(404);
      expect((await as(request(app).get('/auth/mfa/devices'), 'keeper')).body).to.have.length(1);
    });

    it('a query parameter or a body it does not take: 400, and the device stays', async () => {
      const e = await enrolVerified('particular');
      for (const req of [request(app).delete(`/auth/mfa/devices/${e.device.id}`).query({ confirm: 'yes' }), request(app).delete(`/auth/mfa/devices/${e.device.id}`).send({ code: '123456' })]) {
        const res = await as(req, 'particular');
        expect(res.status).to.equal(400);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(res.body.errors[0].code).to.equal('unknown');
      }
      expect((await as(request(app).get('/auth/mfa/devices'), 'particular')).body).to.have.length(1);
    });
  });

  describe('rows written by others', () => {
    it('lists a device inserted directly (pre-0003 row without skew) and logs in with it', async () => {
      const id = await insertDevice(db.knex, { tenantId: 'acme', userId: 'legacy', secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP' });
      const res = await as(request(app).post('/auth/mfa/verify').send({ code: oathtool('JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', clock.ms + 30_000) }), 'legacy');
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect(res.body).to.deep.equal({ verified: true, method: 'totp', deviceId: id });
    });
  });

  describe('key rotation', () => {
    it('devices enrolled under the old key keep working after reencrypt() and a ring without the old key', async () => {
      const KEY_OLD = 'old:' + Buffer.alloc(32, 7).toString('base64');
      const KEY_NEW = 'new:' + Buffer.alloc(32, 8).toString('base64');
      const before = mfaApp(db.storage, { now: clock.now, rateLimit: false, keyRing: keyRing([KEY_OLD]) }).app;
      const res = await as(request(before).post('/auth/mfa/devices/totp').send({ deviceName: 'Old key' }), 'rotator');
      expect((await as(request(before).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code: oathtool(res.body.secret as string, clock.ms) }), 'rotator')).status).to.equal(200);
      clock.step(1);
      await reencrypt({ knex: db.knex, keyRing: keyRing([KEY_NEW, KEY_OLD]), logger: silentLogger });
      const row = (await db.knex('mfa_devices').where({ id: res.body.device.id }).first()) as { secret_key_id: string };
      expect(row.secret_key_id).to.equal('new');
      const after = mfaApp(db.storage, { now: clock.now, rateLimit: false, keyRing: keyRing([KEY_NEW]) }).app;
      const login = await as(request(after).post('/auth/mfa/verify').send({ code: oathtool(res.body.secret as string, clock.ms) }), 'rotator');
      expect(login.status).to.equal(200);
    });
  });

  describe('set-up errors', () => {
    it('fail at set-up with the fix in the message', () => {
      const base = { storage: db.storage, keyRing: ring, jwt: { secret: JWT_SECRET }, logger: silentLogger };
      expect(() => mfaDevicesRouter(undefined as never)).to.throw(TypeError, /needs an options object/);
      expect(() => mfaDevicesRouter({ ...base, storage: undefined as never })).to.throw(TypeError, /needs 'storage'/);
      expect(() => mfaDevicesRouter({ ...base, keyRing: undefined as never })).to.throw(TypeError, /needs 'keyRing'/);
      expect(() => mfaDevicesRouter({ ...base, maxDevice: 3 } as never)).to.throw(TypeError, /Did you mean 'maxDevices'/);
      expect(() => mfaDevicesRouter({ ...base, lockout: { maxFailures: 101 } })).to.throw(TypeError, /lockout.maxFailures/);
      expect(() => mfaDevicesRouter({ ...base, totp: { digits: 10 } })).to.throw(TypeError, /totp.digits/);
      expect(() => mfaDevicesRouter({ ...base, totp: { algorithm: 'MD5' as never } })).to.throw(TypeError, /totp.algorithm/);
      expect(() => mfaDevicesRouter({ storage: db.storage, keyRing: ring, logger: silentLogger })).to.throw(TypeError, /'jwt'/);
      expect(() => (mfaDevicesRouter as unknown as (req: unknown) => unknown)({ method: 'GET', headers: {}, url: '/' })).to.throw(TypeError, /without being called/);
    });
  });
});
