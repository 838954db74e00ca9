/** The examples a user copies from: a host app with its own passport and `nest` errors, and an identity service's client. */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import { pino } from 'pino';
import express from 'express';
import request from 'supertest';
import { createExampleApp } from '../examples/app.js';
import { InternalApiError, internalApi, secondFactor, type InternalApi } from '../examples/identity-service-client.js';
import { createHostApp, issueToken, type HostClaims } from '../examples/mount-existing-app.js';
import { sharedParts, type SharedParts } from '../examples/several-instances.js';
import { silentLogger, type MfaCodeMessage } from '../index.js';
import { ENCRYPTION_KEYS, KEY_A, migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { JWT_SECRET, mfaApp, oathtool } from './support/mfa.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { redisUrl, requireRedis } from './support/redis.js';

/** A 6-digit code that is none of the codes accepted around now (±2 steps), so it is surely wrong. */
function wrongCode(secret: string): string {
  const now = Date.now();
  const taken = new Set([-2, -1, 0, 1, 2].map((s) => oathtool(secret, now + s * 30_000)));
  for (let n = 0; ; n++) {
    const candidate = String(n).padStart(6, '0');
    if (!taken.has(candidate)) return candidate;
  }
}

describe('examples/mount-existing-app.ts: host passport, pending tokens, nest errors', () => {
  let db: TestDb;
  let app: ReturnType<typeof createHostApp>;
  const token = (userId: string, mfa: HostClaims['mfa']) => `Bearer ${issueToken(JWT_SECRET, { sub: userId, tenant_id: 'acme', mfa })}`;

  before(async () => {
    db = await migratedStorage();
    app = createHostApp({ storage: db.storage, jwtSecret: JWT_SECRET, encryptionKeys: ENCRYPTION_KEYS.join(','), internalKeys: KEY_A, logger: silentLogger });
  });
  after(async () => {
    await db?.drop();
  });

  it("serves the host's own route with the host's authentication, and 401 in the nest format without a token", async () => {
    const me = await request(app).get('/api/me').set('Authorization', token('alice', 'done'));
    expect(me.status).to.equal(200);
    expect(me.body).to.deep.equal({ userId: 'alice', tenantId: 'acme' });
    const anonymous = await request(app).get('/api/me');
    expect(anonymous.status).to.equal(401);
    expect(anonymous.body).to.deep.equal({ statusCode: 401, error: 'Unauthorized', message: 'Missing, invalid or expired authentication.', code: 'UNAUTHENTICATED' });
    expect(anonymous.headers['www-authenticate']).to.equal('Bearer');
  });

  it('refuses a token sent that is not valid with the invalid_token challenge: expired, no exp, claims missing or of another type', async () => {
    const signed = (payload: string | object) => `Bearer ${jwt.sign(payload, JWT_SECRET, { algorithm: 'HS256' })}`;
    const now = Math.floor(Date.now() / 1000);
    for (const [what, header] of [
      ['expired', signed({ sub: 'alice', tenant_id: 'acme', mfa: 'done', exp: now - 10 })],
      ['no exp', signed({ sub: 'alice', tenant_id: 'acme', mfa: 'done' })],
      ['no sub', signed({ tenant_id: 'acme', mfa: 'done', exp: now + 60 })],
      ['sub a number', signed({ sub: 5, tenant_id: 'acme', mfa: 'done', exp: now + 60 })],
      ['an empty object', signed({ exp: now + 60 })],
      ['another key', `Bearer ${jwt.sign({ sub: 'alice', tenant_id: 'acme', exp: now + 60 }, 'another-secret-0123456789abcdef', { algorithm: 'HS256' })}`],
    ] as const) {
      const res = await request(app).get('/api/me').set('Authorization', header);
      expect(res.status, what).to.equal(401);
      expect(res.headers['www-authenticate'], what).to.equal('Bearer error="invalid_token", error_description="The access token is invalid or expired"');
    }
    // The kit's reading of the header (`bearerToken`): a good token with more after it is invalid, two fields a 400.
    const good = token('alice', 'done');
    expect((await request(app).get('/api/me').set('Authorization', `${good} junk`)).status).to.equal(401);
    // superagent hands the array to Node's setHeader, which sends one field per value.
    const twice = await request(app).get('/auth/mfa/devices').set('Authorization', [good, token('bob', 'done')] as unknown as string);
    expect(twice.status).to.equal(400);
    expect(twice.headers['www-authenticate']).to.match(/^Bearer error="invalid_request"/);
  });

  it('the host app under a prefix of its own (/api/v1): a pending token still reaches the second factor, and only it', async () => {
    const outer = express();
    outer.use('/api/v1', app);
    const pending = token('carol', 'pending');
    const devices = await request(outer).get('/api/v1/auth/mfa/devices').set('Authorization', pending);
    expect(devices.status, devices.text).to.equal(200);
    const login = await request(outer).post('/api/v1/auth/mfa/verify').set('Authorization', pending).send({ code: '123456' });
    expect(login.status, login.text).to.equal(400);
    for (const [what, call] of [
      ['enrol', () => request(outer).post('/api/v1/auth/mfa/devices/totp').set('Authorization', pending).send({ deviceName: 'Attacker phone' })],
      ['recovery codes', () => request(outer).post('/api/v1/auth/mfa/recovery-codes').set('Authorization', pending)],
      ['vault', () => request(outer).get('/api/v1/mfa/devices/sync').set('Authorization', pending)],
      ["the host's own route", () => request(outer).get('/api/v1/api/me').set('Authorization', pending)],
    ] as const) {
      const res = await call();
      expect(res.status, what).to.equal(401);
    }
  });

  it('enrols with a full token; a pending token may only pass the second factor, which returns a full token', async () => {
    const enrol = await request(app).post('/auth/mfa/devices/totp').set('Authorization', token('bob', 'not_enrolled')).send({ deviceName: 'Phone' });
    expect(enrol.status).to.equal(201);
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    const confirm = await request(app).post(`/auth/mfa/devices/${device.id}/verify`).set('Authorization', token('bob', 'not_enrolled')).send({ code: oathtool(secret, Date.now()) });
    expect(confirm.status).to.equal(200);
    expect(confirm.body).to.include({ verified: true });

    // Bob has a second factor now: his password-only token adds no other (the kit's stepUp, RFC 9470).
    const another = await request(app).post('/auth/mfa/devices/totp').set('Authorization', token('bob', 'not_enrolled')).send({ deviceName: 'Second' });
    expect(another.status).to.equal(401);
    expect(another.body).to.deep.equal({ statusCode: 401, error: 'Unauthorized', message: 'This change needs a recent second factor: pass one (POST /verify) and retry with the token your sign-in issues for it.', code: 'STEP_UP_REQUIRED' });
    expect(another.headers['www-authenticate']).to.equal('Bearer error="insufficient_user_authentication", error_description="A recent second factor is required for this change", max_age=900');

    // Password done, second factor pending: no device management, no vault.
    const pending = token('bob', 'pending');
    const refused: Array<[string, () => request.Test]> = [
      ['enrol', () => request(app).post('/auth/mfa/devices/totp').set('Authorization', pending).send({ deviceName: 'Attacker phone' })],
      ['verify an enrolment', () => request(app).post(`/auth/mfa/devices/${device.id}/verify`).set('Authorization', pending).send({ code: '123456' })],
      ['rename', () => request(app).patch(`/auth/mfa/devices/${device.id}`).set('Authorization', pending).send({ deviceName: 'Mine now' })],
      ['the list under another spelling', () => request(app).get('/auth/mfa/DEVICES').set('Authorization', pending)],
      ['the login under another spelling', () => request(app).post('/auth/mfa/verify/').set('Authorization', pending).send({ code: '123456' })],
      ['remove', () => request(app).delete(`/auth/mfa/devices/${device.id}`).set('Authorization', pending)],
      ['recovery codes', () => request(app).post('/auth/mfa/recovery-codes').set('Authorization', pending)],
      ['vault', () => request(app).get('/mfa/devices/sync').set('Authorization', pending)],
    ];
    for (const [what, call] of refused) {
      const res = await call();
      expect(res.status, what).to.equal(401);
      expect(res.body).to.deep.equal({ statusCode: 401, error: 'Unauthorized', message: 'Finish the second factor first: POST /auth/mfa/verify (for an sms or email code, first POST /auth/mfa/devices/{id}/challenge).', code: 'UNAUTHENTICATED' });
      expect(res.headers['www-authenticate'], what).to.match(/^Bearer error="insufficient_user_authentication"/);
    }

    const wrong = await request(app).post('/auth/mfa/verify').set('Authorization', pending).send({ code: wrongCode(secret) });
    expect(wrong.status).to.equal(400);
    expect(wrong.body).to.deep.equal({ statusCode: 400, error: 'Bad Request', message: 'Invalid or expired code.', code: 'INVALID_CODE' });

    // The enrolment used this step's code (codes are single-use): the next step's is inside the ±1 window.
    const login = await request(app).post('/auth/mfa/verify').set('Authorization', pending).send({ code: oathtool(secret, Date.now() + 30_000) });
    expect(login.status).to.equal(200);
    expect(login.body).to.include({ verified: true, method: 'totp', deviceId: device.id });
    const accessToken = (login.body as { accessToken: string }).accessToken;
    expect(jwt.verify(accessToken, JWT_SECRET)).to.include({ sub: 'bob', tenant_id: 'acme', mfa: 'done' });

    const devices = await request(app).get('/auth/mfa/devices').set('Authorization', `Bearer ${accessToken}`);
    expect(devices.status).to.equal(200);
    expect((devices.body as Array<{ id: string }>).map((d) => d.id)).to.deep.equal([device.id]);
    // The token from the second factor shows it (amr, auth_time): the change the password-only token could not make.
    const codes = await request(app).post('/auth/mfa/recovery-codes').set('Authorization', `Bearer ${accessToken}`);
    expect(codes.status, codes.text).to.equal(201);
    // The vault likewise: a password-only token gets the challenge, the token from the second factor the vault.
    const vault = await request(app).get('/mfa/devices/sync').set('Authorization', token('bob', 'not_enrolled'));
    expect(vault.status).to.equal(401);
    expect(vault.body).to.include({ code: 'STEP_UP_REQUIRED' });
    expect(vault.headers['www-authenticate']).to.equal('Bearer error="insufficient_user_authentication", error_description="A second factor is required for the authenticator vault"');
    expect((await request(app).get('/mfa/devices/sync').set('Authorization', `Bearer ${accessToken}`)).status).to.equal(200);
  });

  it('a pending token passes an sms second factor: it lists the devices, has a code sent to one and verifies it; an enrolment still pending gets no code', async () => {
    const sent: MfaCodeMessage[] = [];
    const host = createHostApp({ storage: db.storage, jwtSecret: JWT_SECRET, encryptionKeys: ENCRYPTION_KEYS.join(','), internalKeys: KEY_A, logger: silentLogger, codeSender: { send: (m) => void sent.push({ ...m }) } });
    const full = token('carol', 'not_enrolled');
    const enrol = await request(host).post('/auth/mfa/devices/sms').set('Authorization', full).send({ deviceName: 'Phone', phoneNumber: '+447700900123' });
    expect(enrol.status, enrol.text).to.equal(201);
    const sms = (enrol.body as { device: { id: string } }).device.id;
    const confirm = await request(host).post(`/auth/mfa/devices/${sms}/verify`).set('Authorization', full).send({ code: sent.at(-1)!.code });
    expect(confirm.status, confirm.text).to.equal(200);

    const pending = token('carol', 'pending');
    const devices = await request(host).get('/auth/mfa/devices').set('Authorization', pending);
    expect(devices.status, devices.text).to.equal(200);
    expect((devices.body as Array<{ id: string; method: string }>).map((d) => [d.id, d.method])).to.deep.equal([[sms, 'sms']]);
    const challenge = await request(host).post(`/auth/mfa/devices/${sms}/challenge`).set('Authorization', pending);
    expect(challenge.status, challenge.text).to.equal(202);
    expect(sent.at(-1)).to.include({ userId: 'carol', purpose: 'login', destination: '+447700900123' });
    const login = await request(host).post('/auth/mfa/verify').set('Authorization', pending).send({ code: sent.at(-1)!.code });
    expect(login.status, login.text).to.equal(200);
    expect(login.body).to.include({ verified: true, method: 'sms', deviceId: sms });
    expect(jwt.verify((login.body as { accessToken: string }).accessToken, JWT_SECRET)).to.include({ sub: 'carol', mfa: 'done' });

    // An enrolment begun with a full token and left pending: a pending token has no code sent to it (the kit's stepUp).
    const second = await request(host).post('/auth/mfa/devices/sms').set('Authorization', `Bearer ${(login.body as { accessToken: string }).accessToken}`).send({ deviceName: 'Other', phoneNumber: '+447700900456' });
    expect(second.status, second.text).to.equal(201);
    const before = sent.length;
    const refused = await request(host).post(`/auth/mfa/devices/${(second.body as { device: { id: string } }).device.id}/challenge`).set('Authorization', pending);
    expect(refused.status).to.equal(401);
    expect(refused.body).to.include({ code: 'STEP_UP_REQUIRED' });
    expect(sent.length).to.equal(before);
  });

  it("runs the kit's middleware on the host's own service route: key, tenant, JSON body, nest errors", async () => {
    const ok = await request(app).post('/ops/notes').set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme').set('X-Request-ID', 'req-ops-1').send({ note: 'hi' });
    expect(ok.status).to.equal(202);
    expect(ok.body).to.deep.equal({ tenantId: 'acme', requestId: 'req-ops-1', note: 'hi' });
    const noKey = await request(app).post('/ops/notes').set('X-Tenant-ID', 'acme').send({ note: 'hi' });
    expect(noKey.body).to.deep.include({ statusCode: 401, code: 'INVALID_INTERNAL_KEY' });
    const noTenant = await request(app).post('/ops/notes').set('X-Internal-API-Key', KEY_A).send({ note: 'hi' });
    expect(noTenant.body).to.deep.include({ statusCode: 400, code: 'VALIDATION_FAILED', message: 'X-Tenant-ID is required' });
    const text = await request(app).post('/ops/notes').set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme').set('Content-Type', 'text/plain').send('hi');
    expect(text.body).to.deep.include({ statusCode: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
    const big = await request(app).post('/ops/notes').set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme').send({ note: 'x'.repeat(11_000) });
    expect(big.body).to.deep.include({ statusCode: 413, code: 'PAYLOAD_TOO_LARGE' });
  });

  it('answers unknown paths and internal-key failures in the nest format too', async () => {
    const missing = await request(app).get('/nowhere');
    expect(missing.status).to.equal(404);
    expect(missing.body).to.deep.equal({ statusCode: 404, error: 'Not Found', message: 'No route matches this path.', code: 'NOT_FOUND' });
    const internal = await request(app).get('/internal/mfa/totp/devices?user_id=bob').set('X-Tenant-ID', 'acme');
    expect(internal.status).to.equal(401);
    expect(internal.body).to.include({ statusCode: 401, code: 'INVALID_INTERNAL_KEY' });
  });
});

describe('examples/identity-service-client.ts against the example app on 127.0.0.1', () => {
  let db: TestDb;
  let server: Server;
  let api: InternalApi;
  let base: string;

  before(async () => {
    db = await migratedStorage();
    const app = createExampleApp({ storage: db.storage, internalKeys: [KEY_A], keyRing: ring, jwtSecret: JWT_SECRET, logger: pino({ level: 'silent' }) });
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    api = internalApi({ baseUrl: `${base}/internal`, apiKey: KEY_A, tenantId: 'acme' });
  });
  after(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await db?.drop();
  });

  it('asks for a code, refuses a wrong one, verifies and remembers, then trusts the browser; revoking ends the trust', async () => {
    const user = 'carol';
    const bearer = `Bearer ${jwt.sign({ sub: user, tenant_id: 'acme' }, JWT_SECRET, { algorithm: 'HS256', expiresIn: '5m' })}`;
    const enrol = await request(base).post('/auth/mfa/devices/totp').set('Authorization', bearer).send({ deviceName: 'Phone' });
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    expect((await request(base).post(`/auth/mfa/devices/${device.id}/verify`).set('Authorization', bearer).send({ code: oathtool(secret, Date.now()) })).status).to.equal(200);

    const laptop = { fingerprint: 'fp-carol-laptop', name: 'Laptop', type: 'desktop', browser: 'Firefox', os: 'Linux', ip: '192.0.2.7' };
    expect(await secondFactor(api, user, laptop)).to.equal('code_needed');
    expect(await secondFactor(api, user, laptop, wrongCode(secret), true)).to.equal('invalid_code');
    const code = oathtool(secret, Date.now() + 30_000);
    expect(await secondFactor(api, user, laptop, code, true)).to.equal('verified');
    expect(await api.verifyTotp(user, code)).to.deep.equal({ valid: false }); // accepted once
    expect(await secondFactor(api, user, laptop)).to.equal('trusted');

    const check = await api.checkDevice(user, laptop.fingerprint);
    expect(check.trusted).to.equal(true);
    expect(await api.revokeDevice(user, check.device_id!)).to.equal(true);
    expect(await api.checkDevice(user, laptop.fingerprint)).to.deep.equal({ trusted: false });
    expect(await api.revokeDevice(user, check.device_id!)).to.equal(false);
  });

  it('remembers with details and a TTL, and forgets every browser at once', async () => {
    const remembered = await api.rememberDevice('dave', { fingerprint: 'fp-dave-1', name: 'Work PC', ip: '2001:db8::1' }, 3600);
    expect(remembered).to.include({ user_id: 'dave', tenant_id: 'acme', device_fingerprint: 'fp-dave-1', device_name: 'Work PC', ip: '2001:db8::1' });
    expect(Date.parse(remembered.trusted_until) - Date.now()).to.be.within(3_500_000, 3_700_000);
    await api.rememberDevice('dave', { fingerprint: 'fp-dave-2' });
    expect(await api.revokeAllDevices('dave')).to.equal(2);
    expect((await api.checkDevice('dave', 'fp-dave-1')).trusted).to.equal(false);
  });

  it('erases a user whose account is deleted: the remembered browser is forgotten, a retry finds nothing', async () => {
    await api.rememberDevice('erin', { fingerprint: 'fp-erin' });
    expect((await api.checkDevice('erin', 'fp-erin')).trusted).to.equal(true);
    expect(await api.eraseUser('erin')).to.deep.equal({ mfa_devices: 0, recovery_codes: 0, trusted_devices: 1, sync_records: 0 });
    expect((await api.checkDevice('erin', 'fp-erin')).trusted).to.equal(false);
    expect(await api.eraseUser('erin')).to.deep.equal({ mfa_devices: 0, recovery_codes: 0, trusted_devices: 0, sync_records: 0 });
  });

  it('throws InternalApiError with the Problem for a wrong key or a user without TOTP', async () => {
    const wrongKey = internalApi({ baseUrl: `${base}/internal`, apiKey: 'not-the-key-0123456789', tenantId: 'acme' });
    const err = await wrongKey.checkDevice('carol', 'fp').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(InternalApiError);
    expect((err as InternalApiError).status).to.equal(401);
    expect((err as InternalApiError).problem).to.include({ code: 40100002 });

    const notEnrolled = await api.verifyTotp('nobody', '123456').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((notEnrolled as InternalApiError).status).to.equal(400);
    expect((notEnrolled as InternalApiError).problem).to.include({ code: 40000013 });
  });
});

describe('examples/several-instances.ts: two instances on one Postgres and one Redis', () => {
  let db: FreshDatabase;
  const parts: SharedParts[] = [];

  before(async function () {
    const url = await redisUrl();
    requireRedis(this, url);
    db = await freshDatabase();
    for (let i = 0; i < 2; i++) parts.push(sharedParts({ DATABASE_URL: db.url, REDIS_URL: url }, silentLogger));
    await parts[0]!.storage.migrate(); // the deploy step, once
  });
  after(async () => {
    for (const p of parts) await p.close();
    await db?.drop();
  });

  const instance = (p: SharedParts, prefix: string) =>
    mfaApp(p.storage, { cache: p.cache, ...(p.redis && { redis: p.redis }), rateLimit: { limit: 2, windowMs: 60_000, prefix } }).app;

  it('a device trusted on one instance and revoked on the other is untrusted on both at once', async () => {
    const [a, b] = [instance(parts[0]!, 'x'), instance(parts[1]!, 'x')];
    const trust = await request(a).post('/internal/session/trusted-devices').set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme').send({ user_id: 'erin', device_fingerprint: 'fp-erin' });
    expect(trust.status).to.equal(201);
    const check = (app: typeof a) => request(app).get('/internal/session/trusted-devices/check?user_id=erin&device_fingerprint=fp-erin').set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme');
    expect((await check(a)).body).to.include({ trusted: true });
    expect((await check(b)).body).to.include({ trusted: true });
    const revoke = await request(b).delete(`/internal/session/trusted-devices/${(trust.body as { id: string }).id}?user_id=erin`).set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme');
    expect(revoke.status).to.equal(204);
    expect((await check(a)).body).to.deep.equal({ trusted: false });
    expect((await check(b)).body).to.deep.equal({ trusted: false });
  });

  it('the rate limit is counted across both instances through Redis', async () => {
    const prefix = `mfa-kit:test:${randomUUID()}:`;
    const [a, b] = [instance(parts[0]!, prefix), instance(parts[1]!, prefix)];
    const verify = (app: typeof a) => request(app).post('/auth/mfa/verify').set('Authorization', `Bearer ${jwt.sign({ sub: 'frank', tenant_id: 'acme' }, JWT_SECRET, { algorithm: 'HS256', expiresIn: '5m' })}`).send({ code: '123456' });
    expect((await verify(a)).status).to.equal(400); // no device: not throttled yet
    expect((await verify(b)).status).to.equal(400);
    const third = await verify(a);
    expect(third.status).to.equal(429);
    expect(third.body).to.include({ code: 42900001 });
  });
});
