/**
 * Isolation matrix on the example app: every route × (another user, another tenant, no tenant,
 * mismatched tenant) → the contract's answer (404 / empty / 400 / 403), and never a trace of the
 * owner's data in the answer; afterwards the owner's data is exactly as it was.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type { Express } from 'express';
import request from 'supertest';
import { migrate } from '../index.js';
import { bearer, enrolTotp, exampleInstance, internalHeaders, type AppInstance } from './support/cluster.js';
import { KEY_A } from './support/fixtures.js';
import { clearOfStepEdge, oathtool } from './support/mfa.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';

type Actor = 'another user' | 'another tenant' | 'no tenant' | 'mismatched tenant';
const ACTORS: readonly Actor[] = ['another user', 'another tenant', 'no tenant', 'mismatched tenant'];
/** What the contract answers: a status, or "empty" (200 with nothing of anyone else's). */
type Expected = number | 'empty';

interface Res {
  status: number;
  text: string;
  body: unknown;
}

/** One route of the matrix: how to call it as a given actor, and what each actor must get. */
interface Row {
  route: string;
  call: (app: Express, actor: Actor) => Promise<Res>;
  expected: Record<Actor, Expected>;
  /** For "empty": the answer holds nothing (no items, false, 0). */
  empty?: (body: unknown) => void;
}

const TD = '/internal/session/trusted-devices';
const tag = randomBytes(4).toString('hex');
const OWNER = `alice-${tag}`;
const OTHER_USER = `bob-${tag}`;
const FINGERPRINT = `owner-laptop-${tag}`;
const DEVICE_NAME = `Owner phone ${tag}`;
const SYNC_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'.replace('PXP', tag.toUpperCase().replace(/[^A-Z2-7]/g, 'Q').slice(0, 3));

/** Headers of a user-router call by an actor against the owner's resources. */
function userHeaders(actor: Actor): Record<string, string> {
  switch (actor) {
    case 'another user':
      return bearer(OTHER_USER, 'acme');
    case 'another tenant':
      return bearer(OWNER, 'other');
    case 'no tenant':
      return bearer(OWNER, null);
    case 'mismatched tenant':
      return { ...bearer(OWNER, 'acme'), 'X-Tenant-ID': 'other' };
  }
}

/** Headers and user_id of an internal call. The internal tenant has one source, so "mismatched" is two tenants in the header. */
function internalAs(actor: Actor): { headers: Record<string, string>; user: string } {
  switch (actor) {
    case 'another user':
      return { headers: internalHeaders('acme'), user: OTHER_USER };
    case 'another tenant':
      return { headers: internalHeaders('other'), user: OWNER };
    case 'no tenant':
      return { headers: { 'X-Internal-API-Key': KEY_A }, user: OWNER };
    case 'mismatched tenant':
      return { headers: { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme,other' }, user: OWNER };
  }
}

const USER_DEFAULT: Record<Actor, Expected> = { 'another user': 404, 'another tenant': 404, 'no tenant': 400, 'mismatched tenant': 403 };
const USER_EMPTY: Record<Actor, Expected> = { 'another user': 'empty', 'another tenant': 'empty', 'no tenant': 400, 'mismatched tenant': 403 };
const INTERNAL_DEFAULT: Record<Actor, Expected> = { 'another user': 404, 'another tenant': 404, 'no tenant': 400, 'mismatched tenant': 400 };
const INTERNAL_EMPTY: Record<Actor, Expected> = { 'another user': 'empty', 'another tenant': 'empty', 'no tenant': 400, 'mismatched tenant': 400 };

const noItems = (body: unknown) => {
  const b = body as { items?: unknown[]; total?: number };
  expect(b.items).to.deep.equal([]);
  expect(b.total).to.equal(0);
};

describe('isolation matrix: every route × (another user, another tenant, no tenant, mismatched tenant)', function () {
  this.timeout(60_000);
  let db: FreshDatabase;
  let inst: AppInstance;
  let owner: { deviceId: string; secret: string; trustedId: string; syncId: string; syncToken: string; emailDeviceId: string };
  /** What the owner sees of their own data, before and after the matrix. */
  let ownerView: () => Promise<unknown>;
  let before_: unknown;
  let cases = 0;

  before(async () => {
    db = await freshDatabase();
    await migrate(db.knex);
    inst = await exampleInstance({ databaseUrl: db.url });
    const app = inst.app;
    await clearOfStepEdge();
    const totp = await enrolTotp(app, OWNER, (s) => oathtool(s, Date.now() - 30_000));
    await request(app).patch(`/auth/mfa/devices/${totp.id}`).set(bearer(OWNER)).send({ deviceName: DEVICE_NAME }).expect(200);
    const email = await request(app).post('/auth/mfa/devices/email').set(bearer(OWNER)).send({ deviceName: 'Mail', email: `alice.${tag}@example.com` });
    expect(email.status, email.text).to.equal(201);
    await request(app).post('/auth/mfa/recovery-codes').set(bearer(OWNER)).expect(201);
    const trusted = await request(app).post(TD).set(internalHeaders()).send({ user_id: OWNER, device_fingerprint: FINGERPRINT, device_name: DEVICE_NAME });
    expect(trusted.status).to.equal(201);
    const sync = await request(app).post('/mfa/devices/sync').set(bearer(OWNER)).send({ device_fingerprint: FINGERPRINT, device_name: DEVICE_NAME, totp_devices: [{ secret: SYNC_SECRET }] });
    expect(sync.status, sync.text).to.equal(201);
    owner = {
      deviceId: totp.id,
      secret: totp.secret,
      trustedId: (trusted.body as { id: string }).id,
      syncId: (sync.body as { id: string }).id,
      syncToken: (sync.body as { sync_token: string }).sync_token,
      emailDeviceId: (email.body as { device: { id: string } }).device.id,
    };
    ownerView = async () => ({
      devices: (await request(app).get('/auth/mfa/devices').set(bearer(OWNER))).body,
      recovery: (await request(app).get('/auth/mfa/recovery-codes').set(bearer(OWNER))).body,
      trusted: (await request(app).get('/auth/mfa/trusted-devices').set(bearer(OWNER))).body,
      check: (await request(app).get(`${TD}/check?user_id=${OWNER}&device_fingerprint=${FINGERPRINT}`).set(internalHeaders())).body,
      sync: (await request(app).get(`/mfa/devices/sync/${owner.syncId}`).set(bearer(OWNER))).body,
      internalList: ((await request(app).get(`/internal/mfa/totp/devices?user_id=${OWNER}`).set(internalHeaders())).body as { items: unknown }).items,
    });
    before_ = await ownerView();
  });

  after(async () => {
    await inst?.destroy();
    await db?.drop();
    console.log(`      [isolation] ${cases} route × actor cases`);
  });

  const u = (method: 'get' | 'post' | 'patch' | 'delete', path: () => string, body?: () => object) => (app: Express, actor: Actor) => {
    const req = request(app)[method](path()).set(userHeaders(actor));
    return body ? req.send(body()) : req;
  };
  const i = (method: 'get' | 'post' | 'delete', path: (user: string) => string, body?: (user: string) => object) => (app: Express, actor: Actor) => {
    const { headers, user } = internalAs(actor);
    const req = request(app)[method](path(user)).set(headers);
    return body ? req.send(body(user)) : req;
  };
  const code = () => oathtool(owner.secret, Date.now());

  const ROWS: Row[] = [
    // ---- mfaDevicesRouter
    { route: 'GET /auth/mfa/devices', call: u('get', () => '/auth/mfa/devices'), expected: USER_EMPTY, empty: (b) => expect(b).to.deep.equal([]) },
    { route: 'POST /auth/mfa/devices/:id/verify', call: u('post', () => `/auth/mfa/devices/${owner.deviceId}/verify`, () => ({ code: code() })), expected: USER_DEFAULT },
    { route: 'POST /auth/mfa/devices/:id/challenge', call: u('post', () => `/auth/mfa/devices/${owner.emailDeviceId}/challenge`), expected: USER_DEFAULT },
    { route: 'PATCH /auth/mfa/devices/:id', call: u('patch', () => `/auth/mfa/devices/${owner.deviceId}`, () => ({ deviceName: 'taken over', enabled: false })), expected: USER_DEFAULT },
    { route: 'DELETE /auth/mfa/devices/:id', call: u('delete', () => `/auth/mfa/devices/${owner.deviceId}`), expected: USER_DEFAULT },
    {
      route: "POST /auth/mfa/verify (the owner's code and device id)",
      call: u('post', () => '/auth/mfa/verify', () => ({ code: code(), deviceId: owner.deviceId })),
      // The named device is nobody else's: "not found", exactly as for an id that does not exist.
      expected: USER_DEFAULT,
    },
    { route: 'GET /auth/mfa/recovery-codes', call: u('get', () => '/auth/mfa/recovery-codes'), expected: USER_EMPTY, empty: (b) => expect(b).to.deep.equal({ remaining: 0 }) },
    { route: 'GET /auth/mfa/trusted-devices', call: u('get', () => '/auth/mfa/trusted-devices'), expected: USER_EMPTY, empty: (b) => expect(b).to.deep.equal([]) },
    { route: 'DELETE /auth/mfa/trusted-devices/:id', call: u('delete', () => `/auth/mfa/trusted-devices/${owner.trustedId}`), expected: USER_DEFAULT },
    { route: 'DELETE /auth/mfa/trusted-devices', call: u('delete', () => '/auth/mfa/trusted-devices'), expected: USER_EMPTY, empty: (b) => expect(b).to.deep.equal({ revoked: 0 }) },
    // ---- deviceSyncRouter
    { route: 'GET /mfa/devices/sync', call: u('get', () => '/mfa/devices/sync'), expected: USER_EMPTY, empty: noItems },
    { route: 'GET /mfa/devices/sync/:id', call: u('get', () => `/mfa/devices/sync/${owner.syncId}`), expected: USER_DEFAULT },
    { route: 'DELETE /mfa/devices/sync/:id', call: u('delete', () => `/mfa/devices/sync/${owner.syncId}`), expected: USER_DEFAULT },
    {
      route: "POST /mfa/devices/sync (the owner's fingerprint and sync_token)",
      call: u('post', () => '/mfa/devices/sync', () => ({ device_fingerprint: FINGERPRINT, device_name: 'x', totp_devices: [], sync_token: owner.syncToken })),
      // The token is the owner's, so for anyone else it names nothing: a conflict with no record, never the owner's.
      expected: { 'another user': 409, 'another tenant': 409, 'no tenant': 400, 'mismatched tenant': 403 },
    },
    // ---- internalRouter
    { route: 'GET /internal/mfa/totp/devices', call: i('get', (user) => `/internal/mfa/totp/devices?user_id=${user}`), expected: INTERNAL_EMPTY, empty: noItems },
    {
      route: "POST /internal/mfa/totp/verify (the owner's code)",
      call: i('post', () => '/internal/mfa/totp/verify', (user) => ({ user_id: user, code: code() })),
      expected: { 'another user': 400, 'another tenant': 400, 'no tenant': 400, 'mismatched tenant': 400 },
    },
    { route: 'GET /internal/session/trusted-devices', call: i('get', (user) => `${TD}?user_id=${user}`), expected: INTERNAL_EMPTY, empty: noItems },
    {
      route: 'GET /internal/session/trusted-devices/check',
      call: i('get', (user) => `${TD}/check?user_id=${user}&device_fingerprint=${FINGERPRINT}`),
      expected: INTERNAL_EMPTY,
      empty: (b) => expect(b).to.deep.equal({ trusted: false }),
    },
    { route: 'DELETE /internal/session/trusted-devices/:id', call: i('delete', (user) => `${TD}/${owner.trustedId}?user_id=${user}`), expected: INTERNAL_DEFAULT },
    { route: 'DELETE /internal/session/trusted-devices', call: i('delete', (user) => `${TD}?user_id=${user}`), expected: INTERNAL_EMPTY, empty: (b) => expect(b).to.deep.equal({ revoked: 0 }) },
  ];

  for (const row of ROWS) {
    it(`${row.route}: ${ACTORS.map((a) => `${a} → ${row.expected[a]}`).join(', ')}`, async () => {
      for (const actor of ACTORS) {
        const res = await row.call(inst.app, actor);
        cases++;
        const what = `${row.route} as ${actor}: ${res.status} ${res.text.slice(0, 300)}`;
        const expected = row.expected[actor];
        if (expected === 'empty') {
          expect(res.status, what).to.equal(200);
          row.empty!(res.body);
        } else {
          expect(res.status, what).to.equal(expected);
          expect((res.body as { status?: number }).status, what).to.equal(expected);
        }
        // Never a trace of the owner's data (`instance` echoes the caller's own request line: left out).
        const { instance: _echo, ...rest } = res.body as Record<string, unknown>;
        const shown = JSON.stringify(rest);
        for (const secret of [owner.deviceId, owner.trustedId, owner.syncId, owner.syncToken, owner.emailDeviceId, owner.secret, DEVICE_NAME, FINGERPRINT, SYNC_SECRET, `alice.${tag}`]) {
          expect(shown, `${what} — shows ${secret}`).not.to.contain(secret);
        }
      }
    });
  }

  it("left the owner's data exactly as it was", async () => {
    expect(await ownerView()).to.deep.equal(before_);
  });
});
