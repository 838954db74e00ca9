/**
 * Secrets after a full flow on the example app (TOTP, sms and email enrolment, recovery codes, login
 * with remember-device, sync vault, internal verify and check, a few errors): a database dump holds
 * no TOTP secret, vault secret, recovery code or sms/email destination in plaintext; the captured
 * logs (and Redis) hold no API key, JWT, secret, code or recovery code; no error answer holds a
 * stack, SQL text or key.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { migrate } from '../index.js';
import { bearer, exampleInstance, internalHeaders, type AppInstance } from './support/cluster.js';
import { dumpTables } from './support/dump.js';
import { KEY_A, KEY_B } from './support/fixtures.js';
import { clearOfStepEdge, JWT_SECRET, oathtool } from './support/mfa.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { redisUrl } from './support/redis.js';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const newSecret = () => Array.from(randomBytes(32), (b) => B32[b % 32]).join('');

/** Bytes of a base32 secret (RFC 4648, no padding). */
function base32Bytes(secret: string): Buffer {
  let bits = '';
  for (const ch of secret.replace(/=+$/, '')) bits += B32.indexOf(ch.toUpperCase()).toString(2).padStart(5, '0');
  const bytes: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(Number.parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** pg_dump's major version when it can dump this server (it refuses newer servers), else undefined. */
function pgDumpFor(serverVersionNum: number): string | undefined {
  try {
    const out = execFileSync('pg_dump', ['--version'], { encoding: 'utf8' });
    const major = Number(/(\d+)(?:\.\d+)?/.exec(out)?.[1]);
    return major >= Math.floor(serverVersionNum / 10_000) ? out.trim() : undefined;
  } catch {
    return undefined;
  }
}

describe('secrets: database dump, logs and Redis after a full flow; error answers', function () {
  this.timeout(60_000);
  let db: FreshDatabase;
  let inst: AppInstance;
  let redisPrefix: string | undefined;
  const tag = randomBytes(4).toString('hex');
  const user = `alice-${tag}`;
  const phone = `+1415555${String(randomBytes(2).readUInt16BE() % 10_000).padStart(4, '0')}`;
  const email = `alice.${tag}@example.com`;
  const vaultSecrets = [newSecret(), newSecret()];
  const BAD_KEY = `not-the-key-${tag}-zzzzzzzz`;
  /** Everything secret the flow handled, by name. */
  const secrets = new Map<string, string>();
  /** One-time codes (6 digits), matched only as whole tokens in logs. */
  const codes = new Set<string>();
  const tokensSent = new Set<string>();
  const errorAnswers: Array<{ status: number; text: string }> = [];

  const as = (sub: string) => {
    const h = bearer(sub);
    tokensSent.add(h.Authorization!.slice(7));
    return h;
  };
  const keep = <T extends { status: number; text: string }>(res: T): T => {
    if (res.status >= 400) errorAnswers.push({ status: res.status, text: res.text });
    return res;
  };

  before(async () => {
    db = await freshDatabase();
    await migrate(db.knex);
    const url = await redisUrl();
    // Under REQUIRE_SERVICES=1 a missing Redis fails the suite: its Redis check must not quietly go pending.
    if (url === undefined && process.env.REQUIRE_SERVICES === '1') throw new Error('REQUIRE_SERVICES=1 but Redis is unavailable: no REDIS_URL and no redis-server on PATH');
    const prefix = `secrets:${tag}:`;
    if (url !== undefined) redisPrefix = prefix;
    inst = await exampleInstance({ databaseUrl: db.url, ...(url !== undefined && { redisUrl: url, keyPrefix: prefix }) });
    const app = inst.app;

    // TOTP: enrol, verify with the previous step's code.
    const totp = keep(await request(app).post('/auth/mfa/devices/totp').set(as(user)).send({ deviceName: 'Phone' }));
    expect(totp.status, totp.text).to.equal(201);
    const { device, secret, otpauthUrl } = totp.body as { device: { id: string }; secret: string; otpauthUrl: string };
    secrets.set('TOTP secret', secret);
    secrets.set('TOTP secret (hex)', base32Bytes(secret).toString('hex'));
    secrets.set('TOTP secret (base64)', base32Bytes(secret).toString('base64'));
    secrets.set('otpauth URL', otpauthUrl);
    await clearOfStepEdge();
    const c1 = oathtool(secret, Date.now() - 30_000);
    codes.add(c1);
    expect(keep(await request(app).post(`/auth/mfa/devices/${device.id}/verify`).set(as(user)).send({ code: c1 })).status).to.equal(200);

    // sms and email: enrol, verify with the code the sender got.
    for (const [method, body] of [
      ['sms', { deviceName: 'Mobile', phoneNumber: phone }],
      ['email', { deviceName: 'Mail', email }],
    ] as const) {
      const res = keep(await request(app).post(`/auth/mfa/devices/${method}`).set(as(user)).send(body));
      expect(res.status, res.text).to.equal(201);
      const code = inst.sent.at(-1)!.code;
      codes.add(code);
      const id = (res.body as { device: { id: string } }).device.id;
      expect(keep(await request(app).post(`/auth/mfa/devices/${id}/verify`).set(as(user)).send({ code })).status).to.equal(200);
    }
    secrets.set('phone number', phone);
    secrets.set('phone number digits', phone.slice(1));
    secrets.set('email address', email);

    // Recovery codes: make a set, log in with one.
    const rc = keep(await request(app).post('/auth/mfa/recovery-codes').set(as(user)));
    expect(rc.status).to.equal(201);
    const recoveryCodes = (rc.body as { codes: string[] }).codes;
    recoveryCodes.forEach((c, i) => {
      secrets.set(`recovery code ${i}`, c);
      secrets.set(`recovery code ${i} (normalised)`, c.replace(/-/g, '').toUpperCase());
    });
    expect(keep(await request(app).post('/auth/mfa/verify').set(as(user)).send({ recoveryCode: recoveryCodes[0] })).status).to.equal(200);

    // Login with the current TOTP code, remembering the browser; then the internal check sees it.
    const c4 = oathtool(secret, Date.now());
    codes.add(c4);
    const login = keep(await request(app).post('/auth/mfa/verify').set(as(user)).send({ code: c4, rememberDevice: true, device: { fingerprint: `fp-${tag}`, name: 'Laptop' } }));
    expect(login.status, login.text).to.equal(200);
    expect((await request(app).get(`/internal/session/trusted-devices/check?user_id=${user}&device_fingerprint=fp-${tag}`).set(internalHeaders())).body.trusted).to.equal(true);

    // An sms login challenge and its code.
    const smsId = ((await request(app).get('/auth/mfa/devices').set(as(user))).body as Array<{ id: string; method: string }>).find((d) => d.method === 'sms')!.id;
    expect(keep(await request(app).post(`/auth/mfa/devices/${smsId}/challenge`).set(as(user))).status).to.equal(202);
    const c5 = inst.sent.at(-1)!.code;
    codes.add(c5);
    expect(keep(await request(app).post('/auth/mfa/verify').set(as(user)).send({ code: c5, deviceId: smsId })).status).to.equal(200);

    // Internal verify with a wrong code (a code too, even if wrong).
    const w = String((Number(oathtool(secret, Date.now())) + 1) % 1_000_000).padStart(6, '0');
    codes.add(w);
    expect(keep(await request(app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: user, code: w })).status).to.equal(400);

    // A sync vault.
    const sync = keep(await request(app).post('/mfa/devices/sync').set(as(user)).send({ device_fingerprint: `fp-${tag}`, device_name: 'Phone', totp_devices: vaultSecrets.map((s) => ({ secret: s, issuer: 'Bank' })) }));
    expect(sync.status, sync.text).to.equal(201);
    vaultSecrets.forEach((s, i) => secrets.set(`vault secret ${i}`, s));
    expect(keep(await request(app).get('/mfa/devices/sync').set(as(user))).status).to.equal(200);

    // Errors, on purpose: a wrong internal key, a key in the query, an expired token, a malformed body, an unknown route.
    keep(await request(app).get(`/internal/mfa/totp/devices?user_id=${user}`).set({ 'X-Internal-API-Key': BAD_KEY, 'X-Tenant-ID': 'acme' }));
    keep(await request(app).get(`/internal/mfa/totp/devices?user_id=${user}&api_key=${KEY_A}`).set({ 'X-Tenant-ID': 'acme' }));
    const expired = jwt.sign({ sub: user, tenant_id: 'acme', exp: Math.floor(Date.now() / 1000) - 10 }, JWT_SECRET);
    tokensSent.add(expired);
    keep(await request(app).get('/auth/mfa/devices').set('Authorization', `Bearer ${expired}`));
    keep(await request(app).post('/auth/mfa/verify').set(as(user)).set('Content-Type', 'application/json').send('{"code":'));
    keep(await request(app).get('/auth/mfa/nothing-here').set(as(user)));
    secrets.set('internal key A', KEY_A);
    secrets.set('internal key B', KEY_B);
    secrets.set('wrong internal key sent', BAD_KEY);
    secrets.set('JWT secret', JWT_SECRET);
  });

  after(async () => {
    await inst?.destroy();
    await db?.drop();
  });

  it('the database holds none of them in plaintext (every row of every table, text and bytes)', async () => {
    const dump = await dumpTables(db.knex);
    expect(dump.rowCount).to.be.greaterThan(10);
    for (const [name, value] of secrets) {
      if (name.startsWith('internal key') || name.startsWith('JWT') || name.startsWith('wrong')) continue;
      expect(dump.contains(value), `${name} is in the database`).to.equal(false);
    }
    console.log(`      [secrets] table dump: ${dump.rowCount} rows in ${dump.tables.length} tables, ${secrets.size} secrets looked for`);
  });

  it('nor does pg_dump of the database (when the installed pg_dump can dump this server)', async function () {
    const version = Number(((await db.knex.raw<{ rows: { v: string }[] }>("select current_setting('server_version_num') as v")).rows[0]!.v));
    const tool = pgDumpFor(version);
    if (tool === undefined) {
      if (process.env.REQUIRE_SERVICES === '1') throw new Error(`REQUIRE_SERVICES=1 but no pg_dump installed can dump server ${version}`);
      console.log(`      [secrets] pg_dump skipped: none installed that can dump server ${version}`);
      this.skip();
    }
    const dump = execFileSync('pg_dump', ['--no-owner', '--data-only', '--inserts', `--dbname=${db.url}`], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    expect(dump).to.contain('INSERT INTO');
    const lower = dump.toLowerCase();
    for (const [name, value] of secrets) {
      if (name.startsWith('internal key') || name.startsWith('JWT') || name.startsWith('wrong')) continue;
      expect(lower.includes(value.toLowerCase()), `${name} is in pg_dump`).to.equal(false);
    }
    console.log(`      [secrets] pg_dump (${tool}): ${dump.length} bytes, clean`);
  });

  it('the logs hold no key, JWT, secret, code or recovery code (and the full destinations are not there either)', () => {
    const text = inst.logs.join('\n');
    expect(inst.logs.length).to.be.greaterThan(20);
    for (const [name, value] of secrets) expect(text.includes(value), `${name} is in the logs`).to.equal(false);
    for (const token of tokensSent) expect(text.includes(token), 'a JWT is in the logs').to.equal(false);
    expect(text).not.to.match(/eyJ[A-Za-z0-9_-]{10,}\./);
    for (const code of codes) expect(new RegExp(`(?<![0-9A-Za-z])${code}(?![0-9A-Za-z])`).test(text), `code ${code} is in the logs`).to.equal(false);
  });

  it('Redis holds none of them either', async function () {
    if (inst.redis === undefined || redisPrefix === undefined) this.skip();
    const keys = await inst.redis.keys(`${redisPrefix}*`);
    // The run cached checks and counted rate limits there: an empty prefix would be a test of nothing.
    expect(keys.length, `keys under ${redisPrefix}`).to.be.greaterThan(0);
    const values = keys.length ? await inst.redis.mget(...keys) : [];
    const text = [...keys, ...values].join('\n');
    for (const [name, value] of secrets) expect(text.includes(value), `${name} is in Redis`).to.equal(false);
  });

  it('no error answer holds a stack, SQL text or a key', () => {
    expect(errorAnswers.length).to.be.at.least(5);
    for (const { status, text } of errorAnswers) {
      expect(status).to.be.below(500);
      expect(text).not.to.match(/\n\s+at\s|\.ts:\d+|node_modules|select\s|insert\s|from\s+"/i);
      for (const key of [KEY_A, KEY_B, BAD_KEY, JWT_SECRET]) expect(text, `${status} answer holds a key`).not.to.contain(key);
      for (const token of tokensSent) expect(text).not.to.contain(token);
    }
  });
});

describe('a TOTP secret that does not decrypt (moved to another row, or its key left the ring)', function () {
  this.timeout(60_000);
  let db: FreshDatabase;
  let inst: AppInstance;
  before(async () => {
    db = await freshDatabase();
    await migrate(db.knex);
    inst = await exampleInstance({ databaseUrl: db.url });
  });
  after(async () => {
    await inst?.destroy();
    await db?.drop();
  });

  it('is a 500 Problem without the secret, and one log line names the row and its key id with the request id (CONTRACT.md §2)', async () => {
    const enrol = await request(inst.app).post('/auth/mfa/devices/totp').set(bearer('victim')).send({ deviceName: 'Phone' });
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    await clearOfStepEdge();
    expect((await request(inst.app).post(`/auth/mfa/devices/${device.id}/verify`).set(bearer('victim')).send({ code: oathtool(secret, Date.now() - 30_000) })).status).to.equal(200);
    await db.knex('mfa_devices').where({ id: device.id }).update({ user_id: 'thief' });
    const code = oathtool(secret, Date.now());
    for (const [via, res] of [
      ['internal', await request(inst.app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: 'thief', code })],
      ['user', await request(inst.app).post('/auth/mfa/verify').set(bearer('thief')).send({ code })],
    ] as const) {
      expect(res.status, `${via}: ${res.text}`).to.equal(500);
      expect(res.body, via).to.include({ status: 500, code: 50000002 });
      expect(res.text, via).not.to.contain(secret);
      const line = inst.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.request_id === res.body.request_id && l.reason === 'mfa device secret did not decrypt');
      expect(line, `${via}: the cause line`).to.include({ tenant_id: 'acme', device_id: device.id, key_id: 'k2' });
      expect(JSON.stringify(line)).not.to.contain(secret);
    }
  });

  it("one device that does not open does not stop the user's others: their code passes (the broken one logged); any other code is the 500", async () => {
    const user = 'two-phones';
    const devices: Array<{ id: string; secret: string }> = [];
    for (const name of ['Old phone', 'New phone']) {
      const enrol = await request(inst.app).post('/auth/mfa/devices/totp').set(bearer(user)).send({ deviceName: name });
      const { device, secret } = enrol.body as { device: { id: string }; secret: string };
      await clearOfStepEdge();
      const verified = await request(inst.app).post(`/auth/mfa/devices/${device.id}/verify`).set(bearer(user)).send({ code: oathtool(secret, Date.now() - 30_000) });
      expect(verified.status, `${name}: ${verified.text}`).to.equal(200);
      devices.push({ id: device.id, secret });
    }
    // The device the verification tries first is the broken one (the list's order), so the good one is reached after it.
    const order = ((await request(inst.app).get('/auth/mfa/devices').set(bearer(user))).body as Array<{ id: string }>).map((d) => d.id);
    const [broken, good] = [...devices].sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id)) as [{ id: string; secret: string }, { id: string; secret: string }];
    // Its row gets the other's ciphertext: sealed to another row, it does not open.
    const [row] = await db.knex('mfa_devices').where('id', good.id).select<Array<{ secret_ciphertext: Buffer }>>('secret_ciphertext');
    const sealed = row!.secret_ciphertext;
    await db.knex('mfa_devices').where({ id: broken.id }).update({ secret_ciphertext: sealed });
    const internal = await request(inst.app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: user, code: oathtool(good.secret, Date.now()) });
    expect(internal.status, internal.text).to.equal(200);
    expect(internal.body).to.deep.equal({ valid: true, device_id: good.id });
    const passedOver = inst.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.request_id === internal.headers['x-request-id'] && l.reason === 'mfa device secret did not decrypt');
    expect(passedOver, 'the passed-over line').to.include({ device_id: broken.id, level: 40 });
    const login = await request(inst.app).post('/auth/mfa/verify').set(bearer(user)).send({ code: oathtool(good.secret, Date.now() + 30_000) });
    expect(login.status, login.text).to.equal(200);
    expect(login.body).to.include({ verified: true, deviceId: good.id });
    const wrong = await request(inst.app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: user, code: '000000' });
    expect(wrong.status, wrong.text).to.equal(500);
  });

  it('attempts that met no readable secret are not counted: after more of them than the lockout allows, the right code passes once the key is back', async () => {
    const user = 'key-gone';
    const enrol = await request(inst.app).post('/auth/mfa/devices/totp').set(bearer(user)).send({ deviceName: 'Phone' });
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    // The enrolment's own verification first, with the key gone: not counted either.
    await db.knex('mfa_devices').where('id', device.id).update({ secret_key_id: 'gone' });
    // More attempts than the lockout's 5, within the user routes' rate limit of 10 a minute (this test makes 10).
    for (let i = 0; i < 6; i++) {
      const res = await request(inst.app).post(`/auth/mfa/devices/${device.id}/verify`).set(bearer(user)).send({ code: oathtool(secret, Date.now()) });
      expect(res.status, res.text).to.equal(500);
    }
    await db.knex('mfa_devices').where('id', device.id).update({ secret_key_id: 'k2' });
    await clearOfStepEdge();
    expect((await request(inst.app).post(`/auth/mfa/devices/${device.id}/verify`).set(bearer(user)).send({ code: oathtool(secret, Date.now() - 30_000) })).status).to.equal(200);

    await db.knex('mfa_devices').where('id', device.id).update({ secret_key_id: 'gone' });
    for (let i = 0; i < 2; i++) expect((await request(inst.app).post('/auth/mfa/verify').set(bearer(user)).send({ code: oathtool(secret, Date.now()) })).status).to.equal(500);
    for (let i = 0; i < 6; i++) expect((await request(inst.app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: user, code: '000000' })).status).to.equal(500);
    expect(await db.knex('mfa_verification_failures').where({ user_id: user }).first()).to.include({ failures: 0, locked_until: null });
    await db.knex('mfa_devices').where('id', device.id).update({ secret_key_id: 'k2' });
    const login = await request(inst.app).post('/auth/mfa/verify').set(bearer(user)).send({ code: oathtool(secret, Date.now()) });
    expect(login.status, login.text).to.equal(200);
  });

  it('a device that does not open does not lift the limit on guessing the others: those attempts count, and lock', async () => {
    const user = 'broken-and-good';
    const devices: Array<{ id: string; secret: string }> = [];
    // A step is taken once per user: the two devices' codes of two steps, both from one moment well inside its step (a
    // step ending between them would give the second the first one's).
    await clearOfStepEdge(5000);
    const t0 = Date.now();
    for (const [i, name] of ['Old phone', 'New phone'].entries()) {
      const enrol = await request(inst.app).post('/auth/mfa/devices/totp').set(bearer(user)).send({ deviceName: name });
      const { device, secret } = enrol.body as { device: { id: string }; secret: string };
      expect((await request(inst.app).post(`/auth/mfa/devices/${device.id}/verify`).set(bearer(user)).send({ code: oathtool(secret, t0 - i * 30_000) })).status).to.equal(200);
      devices.push({ id: device.id, secret });
    }
    await db.knex('mfa_devices').where('id', devices[0]!.id).update({ secret_key_id: 'gone' });
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await request(inst.app).post('/auth/mfa/verify').set(bearer(user)).send({ code: '000000' })).status);
    expect(statuses).to.deep.equal([500, 500, 500, 500, 500, 429, 429]);
  });

  it('a destination that does not open leaves the listing at 200 without it, and its warning names the row, its key id and the request', async () => {
    const user = 'sms-key-gone';
    const sms = await request(inst.app).post('/auth/mfa/devices/sms').set(bearer(user)).send({ deviceName: 'Mobile', phoneNumber: '+14155550177' });
    const smsId = (sms.body as { device: { id: string } }).device.id;
    await db.knex('mfa_devices').where('id', smsId).update({ secret_key_id: 'gone' });
    const list = await request(inst.app).get('/auth/mfa/devices').set(bearer(user));
    expect(list.status).to.equal(200);
    expect(list.body).to.have.length(1);
    expect(list.body[0]).to.include({ id: smsId }).and.not.have.property('destination');
    const line = inst.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'mfa device destination could not be decrypted' && l.device_id === smsId);
    expect(line).to.include({ request_id: list.headers['x-request-id'], tenant_id: 'acme', key_id: 'gone', level: 40 });
    expect(JSON.stringify(line)).not.to.contain('4155550177');
  });

  it("nor the user's sms login: its code passes, with no deviceId named", async () => {
    const user = 'phone-and-sms';
    const enrol = await request(inst.app).post('/auth/mfa/devices/totp').set(bearer(user)).send({ deviceName: 'Phone' });
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    expect((await request(inst.app).post(`/auth/mfa/devices/${device.id}/verify`).set(bearer(user)).send({ code: oathtool(secret, Date.now()) })).status).to.equal(200);
    const sms = await request(inst.app).post('/auth/mfa/devices/sms').set(bearer(user)).send({ deviceName: 'Mobile', phoneNumber: '+14155550142' });
    const smsId = (sms.body as { device: { id: string } }).device.id;
    expect((await request(inst.app).post(`/auth/mfa/devices/${smsId}/verify`).set(bearer(user)).send({ code: inst.sent.at(-1)!.code })).status).to.equal(200);
    // The TOTP device's key is not in the ring (any more).
    await db.knex('mfa_devices').where('id', device.id).update({ secret_key_id: 'gone' });
    expect((await request(inst.app).post(`/auth/mfa/devices/${smsId}/challenge`).set(bearer(user))).status).to.equal(202);
    const login = await request(inst.app).post('/auth/mfa/verify').set(bearer(user)).send({ code: inst.sent.at(-1)!.code });
    expect(login.status, login.text).to.equal(200);
    expect(login.body).to.include({ verified: true, method: 'sms', deviceId: smsId });
  });
});
