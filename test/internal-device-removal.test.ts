/**
 * The identity service removes a user's MFA devices (a lost phone, a reset by support) over HTTP on real Postgres and
 * Redis: `DELETE /internal/mfa/totp/devices/:id` and `DELETE /internal/mfa/devices`, with the rule of the user's own
 * removal: the last verified device takes the trusted devices and recovery codes with it, on every instance.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type express from 'express';
import request from 'supertest';
import type { MfaEventMap } from '../index.js';
import { KEY_A } from './support/fixtures.js';
import { as, mfaApp, oathtool, TestClock } from './support/mfa.js';
import { databaseAndRedis } from './support/suite.js';
import { lockUser } from '../storage/knex/user-locks.js';

const internal = (tenant = 'acme') => ({ 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': tenant });
const ONE = '/internal/mfa/totp/devices';
const ALL = '/internal/mfa/devices';

describe('internalRouter: removing a user\'s MFA devices (DELETE /internal/mfa/totp/devices/:id, /internal/mfa/devices)', () => {
  const suite = databaseAndRedis();
  let seq = 0;
  const user = (p: string) => `${p}-${++seq}`;

  /** Two instances on one Redis cache (the second only checks), with the first one's removal events recorded. */
  function setup() {
    const keyPrefix = `test:${randomBytes(6).toString('hex')}:`;
    const cacheOn = () => suite.cacheOn(keyPrefix);
    const clock = new TestClock();
    const one = mfaApp(suite.db.storage, { now: clock.now, rateLimit: false, cache: cacheOn(), sender: { send: () => undefined } });
    const two = mfaApp(suite.db.storage, { now: clock.now, rateLimit: false, cache: cacheOn() });
    const removed: Array<MfaEventMap['device.removed'][0]> = [];
    one.router.events.on('device.removed', (e) => removed.push(e));
    const revoked: string[] = [];
    one.router.events.on('trusted_device.revoked', (e) => revoked.push(`trusted:${e.count}:${e.reason}`));
    one.router.events.on('recovery_codes.revoked', (e) => revoked.push(`codes:${e.count}:${e.reason}`));
    return { app: one.app, other: two.app, clock, removed, revoked };
  }

  async function totpDevice(app: express.Express, clock: TestClock, u: string, tenant = 'acme'): Promise<string> {
    const res = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), u, tenant);
    const ok = await as(request(app).post(`/auth/mfa/devices/${res.body.device.id}/verify`).send({ code: oathtool(res.body.secret as string, clock.ms) }), u, tenant);
    expect(ok.status).to.equal(200);
    clock.step(1);
    return res.body.device.id as string;
  }

  /** A user with two verified TOTP devices, an sms device, recovery codes and a remembered browser (cached "trusted" on both instances). */
  async function userWithEverything(s: ReturnType<typeof setup>, u: string, tenant = 'acme') {
    const first = await totpDevice(s.app, s.clock, u, tenant);
    const second = await totpDevice(s.app, s.clock, u, tenant);
    const sms = await as(request(s.app).post('/auth/mfa/devices/sms').send({ deviceName: 'Work', phoneNumber: '+14155550123' }), u, tenant);
    expect(sms.status).to.equal(201);
    expect((await as(request(s.app).post('/auth/mfa/recovery-codes'), u, tenant)).status).to.equal(201);
    const trust = await request(s.app).post('/internal/session/trusted-devices').set(internal(tenant)).send({ user_id: u, device_fingerprint: 'fp-laptop' });
    expect(trust.status).to.equal(201);
    for (const app of [s.app, s.other]) expect((await check(app, u, tenant)).body.trusted).to.equal(true);
    return { first, second, sms: sms.body.device.id as string };
  }

  const check = (app: express.Express, u: string, tenant = 'acme') =>
    request(app).get('/internal/session/trusted-devices/check').query({ user_id: u, device_fingerprint: 'fp-laptop' }).set(internal(tenant));
  const totpIds = async (app: express.Express, u: string, tenant = 'acme') =>
    ((await request(app).get(ONE).query({ user_id: u }).set(internal(tenant))).body.items as Array<{ device_id: string }>).map((d) => d.device_id);
  const remaining = async (app: express.Express, u: string, tenant = 'acme') => (await as(request(app).get('/auth/mfa/recovery-codes'), u, tenant)).body.remaining as number;

  it('removes one TOTP device: 204, gone from both lists; while a verified device is left, trust and recovery codes stay', async () => {
    const s = setup();
    const u = user('lost-phone');
    const d = await userWithEverything(s, u);
    const res = await request(s.app).delete(`${ONE}/${d.first}`).query({ user_id: u }).set(internal());
    expect(res.status).to.equal(204);
    expect(res.text).to.equal('');
    expect(await totpIds(s.app, u)).to.deep.equal([d.second]);
    expect(((await as(request(s.app).get('/auth/mfa/devices'), u)).body as Array<{ id: string }>).map((x) => x.id)).to.have.members([d.second, d.sms]);
    expect(s.removed.map((e) => [e.deviceId, e.method, e.via])).to.deep.equal([[d.first, 'totp', 'internal']]);
    expect((await check(s.other, u)).body.trusted).to.equal(true);
    expect(await remaining(s.app, u)).to.equal(10);
    expect(s.revoked).to.deep.equal([]);
    // Again: already gone.
    expect((await request(s.app).delete(`${ONE}/${d.first}`).query({ user_id: u }).set(internal())).status).to.equal(404);
  });

  it('removing the last verified device ends the trust on every instance and the recovery codes, as the user\'s own removal does', async () => {
    const s = setup();
    const u = user('last');
    const first = await totpDevice(s.app, s.clock, u);
    expect((await as(request(s.app).post('/auth/mfa/recovery-codes'), u)).status).to.equal(201);
    await request(s.app).post('/internal/session/trusted-devices').set(internal()).send({ user_id: u, device_fingerprint: 'fp-laptop' });
    expect((await check(s.other, u)).body.trusted).to.equal(true); // cached "trusted" on the other instance
    expect((await request(s.app).delete(`${ONE}/${first}`).query({ user_id: u }).set(internal())).status).to.equal(204);
    expect((await check(s.other, u)).body).to.deep.equal({ trusted: false });
    expect(await remaining(s.app, u)).to.equal(0);
    expect(s.revoked).to.deep.equal(['trusted:1:last_device_removed', 'codes:10:last_device_removed']);
  });

  it('404, removing nothing: an sms device on the TOTP route, another user\'s or tenant\'s device, a malformed or unknown id', async () => {
    const s = setup();
    const u = user('keeps');
    const d = await userWithEverything(s, u);
    const stranger = user('stranger');
    const theirs = await totpDevice(s.app, s.clock, stranger);
    const elsewhere = await totpDevice(s.app, s.clock, u, 'other');
    for (const [id, who, tenant] of [
      [d.sms, u, 'acme'],
      [theirs, u, 'acme'],
      [d.first, stranger, 'acme'],
      [elsewhere, u, 'acme'],
      [d.first, u, 'other'],
      ['not-a-uuid', u, 'acme'],
      ['00000000-0000-4000-8000-000000000000', u, 'acme'],
      ['%E0%A4%A', u, 'acme'],
    ] as const) {
      const res = await request(s.app).delete(`${ONE}/${id}`).query({ user_id: who }).set(internal(tenant));
      expect(res.status, `${id} ${who} ${tenant}`).to.equal(id === '%E0%A4%A' ? 400 : 404);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
    }
    expect(await totpIds(s.app, u)).to.have.members([d.first, d.second]);
    expect(await totpIds(s.app, stranger)).to.deep.equal([theirs]);
    expect(await totpIds(s.app, u, 'other')).to.deep.equal([elsewhere]);
    expect(((await as(request(s.app).get('/auth/mfa/devices'), u)).body as unknown[]).length).to.equal(3);
    expect(s.removed).to.deep.equal([]);
  });

  it('DELETE /internal/mfa/devices removes every device of the user (all methods) and so their trust and codes; again → 0', async () => {
    const s = setup();
    const u = user('reset');
    await userWithEverything(s, u);
    const neighbour = user('neighbour');
    const kept = await userWithEverything(s, neighbour);
    const res = await request(s.app).delete(ALL).query({ user_id: u }).set(internal());
    expect(res.status).to.equal(200);
    expect(res.headers['cache-control']).to.equal('no-store');
    expect(res.body).to.deep.equal({ removed: 3 });
    expect((await as(request(s.app).get('/auth/mfa/devices'), u)).body).to.deep.equal([]);
    expect((await check(s.other, u)).body).to.deep.equal({ trusted: false });
    expect(await remaining(s.app, u)).to.equal(0);
    expect(s.removed.every((e) => e.via === 'internal' && e.userId === u)).to.equal(true);
    expect(s.removed).to.have.length(3);
    // The user can no longer pass a second factor with anything they had; they enrol again.
    expect((await as(request(s.app).post('/auth/mfa/verify').send({ code: '123456' }), u)).body.type).to.match(/\/mfa-not-enrolled$/);
    expect((await request(s.app).delete(ALL).query({ user_id: u }).set(internal())).body).to.deep.equal({ removed: 0 });
    // The neighbour keeps everything.
    expect(await totpIds(s.app, neighbour)).to.have.members([kept.first, kept.second]);
    expect((await check(s.other, neighbour)).body.trusted).to.equal(true);
    expect(await remaining(s.app, neighbour)).to.equal(10);
  });

  it('the last verified device\'s removal deletes the trusted devices and recovery codes in its own transaction (storage)', async () => {
    const s = setup();
    const u = user('atomic');
    const { first, second } = await userWithEverything(s, u);
    const count = async (table: string) => Number(((await suite.db.knex(table).where({ tenant_id: 'acme', user_id: u }).count({ n: '*' }).first()) as { n: string }).n);
    const generation = async () => Number(((await suite.db.knex('trusted_device_generations').where({ tenant_id: 'acme', user_id: u }).first()) as { generation: string }).generation);
    // Not the last: nothing else goes, and the store says so by leaving `revoked` out.
    const one = await suite.db.storage.mfaDevices.remove('acme', u, first);
    expect(one.verifiedRemaining).to.equal(1);
    expect(one).not.to.have.property('revoked');
    expect(await count('trusted_devices')).to.equal(1);
    // The last: by the time remove() resolves, the codes and the trusted device are gone and the generation moved.
    const before = await generation();
    const last = await suite.db.storage.mfaDevices.remove('acme', u, second);
    expect(last.revoked).to.deep.equal({ trustedDevices: 1, recoveryCodes: 10, trustedGeneration: before + 1 });
    expect(await count('trusted_devices')).to.equal(0);
    expect(await count('mfa_recovery_codes')).to.equal(0);
    expect(await generation()).to.equal(before + 1);
  });

  it('an enrolment\'s verification waits for a removal deciding under the user\'s lock that it takes the last verified device', async () => {
    const s = setup();
    const u = user('verify-race');
    const enrol = await as(request(s.app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), u);
    const id = enrol.body.device.id as string;
    // A removal in progress: the user's lock held by an open transaction (what remove() takes first).
    const trx = await suite.db.knex.transaction();
    await lockUser(trx, 'acme', u);
    let done = false;
    const verified = suite.db.storage.mfaDevices.markVerified('acme', u, id, { step: null, now: new Date() }).then((d) => {
      done = true;
      return d;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(done, 'markVerified waited for the lock').to.equal(false);
    await trx.commit();
    expect((await verified)?.verified).to.equal(true);
  });

  it('an enrolment withdrawn (never verified) takes nothing with it: a user without a verified device keeps their trusted devices', async () => {
    const s = setup();
    const u = user('withdrawn');
    const trust = await request(s.app).post('/internal/session/trusted-devices').set(internal()).send({ user_id: u, device_fingerprint: 'fp-laptop' });
    expect(trust.status).to.equal(201);
    // Two enrolments left pending: one withdrawn by the user, one by the identity service's reset.
    for (const via of ['user', 'reset'] as const) {
      const enrol = await as(request(s.app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), u);
      expect(enrol.status).to.equal(201);
      if (via === 'user') expect((await as(request(s.app).delete(`/auth/mfa/devices/${enrol.body.device.id}`), u)).status).to.equal(204);
      else expect((await request(s.app).delete(ALL).query({ user_id: u }).set(internal())).body).to.deep.equal({ removed: 1 });
      for (const app of [s.app, s.other]) expect((await check(app, u)).body.trusted, via).to.equal(true);
    }
    expect(s.revoked).to.deep.equal([]);
  });

  it('an abandoned enrolment (past its window) is gone here too: not listed, and removing it is a 404 that revokes nothing', async () => {
    const s = setup();
    const u = user('abandoned');
    const kept = await totpDevice(s.app, s.clock, u);
    const enrol = await as(request(s.app).post('/auth/mfa/devices/totp').send({ deviceName: 'Tablet' }), u);
    const pending = enrol.body.device.id as string;
    expect((await request(s.app).get(ONE).query({ user_id: u }).set(internal())).body.total).to.equal(2);
    await suite.db.knex('mfa_devices').where({ id: pending }).update({ expires_at: new Date(Date.now() - 1000) });
    const list = await request(s.app).get(ONE).query({ user_id: u }).set(internal());
    expect(list.body.total).to.equal(1);
    expect((list.body.items as Array<{ device_id: string }>).map((d) => d.device_id)).to.deep.equal([kept]);
    expect((await request(s.app).get(ONE).query({ user_id: u, page: 2, page_size: 1 }).set(internal())).body.total, 'the count past the last page').to.equal(1);
    expect((await request(s.app).delete(`${ONE}/${pending}`).query({ user_id: u }).set(internal())).status).to.equal(404);
    expect((await as(request(s.app).delete(`/auth/mfa/devices/${pending}`), u)).status).to.equal(404);
    expect(s.removed).to.deep.equal([]);
    // The reset deletes every row, abandoned ones too (their sealed secrets with them), and counts the live ones.
    const another = await as(request(s.app).post('/auth/mfa/devices/sms').send({ deviceName: 'Old phone', phoneNumber: '+14155550199' }), u);
    await suite.db.knex('mfa_devices').where({ id: another.body.device.id as string }).update({ expires_at: new Date(Date.now() - 1000) });
    expect((await request(s.app).delete(ALL).query({ user_id: u }).set(internal())).body).to.deep.equal({ removed: 1 });
    expect(await suite.db.knex('mfa_devices').where({ tenant_id: 'acme', user_id: u }).count({ n: '*' }).first()).to.deep.equal({ n: '0' });
  });

  it('bad input: 401 before anything, 400 for the user id, 405 for another method; nothing removed', async () => {
    const s = setup();
    const u = user('bad-input');
    const d = await userWithEverything(s, u);
    const cases: Array<[request.Test, number]> = [
      [request(s.app).delete(`${ONE}/${d.first}`).query({ user_id: u }).set({ 'X-Tenant-ID': 'acme' }), 401],
      [request(s.app).delete(ALL).query({ user_id: u }).set({ 'X-Tenant-ID': 'acme', 'X-Internal-API-Key': 'wrong-key-wrong-key-wrong' }), 401],
      [request(s.app).delete(`${ONE}/${d.first}`).set(internal()), 400],
      [request(s.app).delete(ALL).set(internal()), 400],
      [request(s.app).delete(ALL).query({ user_id: `${u}\u2028` }).set(internal()), 400],
      [request(s.app).delete(`${ALL}?user_id=${u}&user_id=${u}`).set(internal()), 400],
      // A parameter the route does not take (`device_id` on the remove-all) or a body: 400, not a wider delete than meant.
      [request(s.app).delete(ALL).query({ user_id: u, device_id: d.first }).set(internal()), 400],
      [request(s.app).delete(`${ONE}/${d.first}`).query({ user_id: u, force: '1' }).set(internal()), 400],
      [request(s.app).delete(ALL).query({ user_id: u }).set(internal()).send({ device_id: d.first }), 400],
      [request(s.app).delete(ALL).query({ user_id: u }).set({ 'X-Internal-API-Key': KEY_A }), 400],
      [request(s.app).post(ALL).query({ user_id: u }).set(internal()).send({}), 405],
      [request(s.app).delete(ONE).query({ user_id: u }).set(internal()), 405],
    ];
    for (const [req, status] of cases) {
      const res = await req;
      expect(res.status, JSON.stringify(res.body)).to.equal(status);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
    }
    expect(((await as(request(s.app).get('/auth/mfa/devices'), u)).body as unknown[]).length).to.equal(3);
    expect(s.removed).to.deep.equal([]);
  });
});
