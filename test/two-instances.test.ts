/**
 * Two instances of the example app (separate app objects, separate knex pools, separate Redis
 * clients) on one Postgres and one Redis: a TOTP code raced 20× is accepted once; 20 sync writers
 * with one token leave one winner; the lockout is shared; a revocation on one is honoured by the other.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import request from 'supertest';
import type { Express } from 'express';
import { knexStorage, migrate, silentLogger } from '../index.js';
import { createKnex } from '../examples/db.js';
import { bearer, enrolTotp, exampleInstance, internalHeaders, type AppInstance } from './support/cluster.js';
import { clearOfStepEdge, mfaApp, oathtool } from './support/mfa.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { redisUrl, requireRedis } from './support/redis.js';

const TD = '/internal/session/trusted-devices';
const uid = (what: string) => `${what}-${randomBytes(4).toString('hex')}`;
const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const newSecret = () => Array.from(randomBytes(32), (b) => B32[b % 32]).join('');
/** A 6-digit code that is certainly not `code`. */
const wrong = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, '0');

describe('two app instances sharing Postgres and Redis', function () {
  this.timeout(60_000);
  let db: FreshDatabase;
  let a: AppInstance;
  let b: AppInstance;

  before(async function () {
    const url = await redisUrl();
    requireRedis(this, url);
    db = await freshDatabase();
    await migrate(db.knex);
    const keyPrefix = `two:${randomBytes(4).toString('hex')}:`;
    a = await exampleInstance({ databaseUrl: db.url, redisUrl: url, keyPrefix });
    b = await exampleInstance({ databaseUrl: db.url, redisUrl: url, keyPrefix });
  });

  after(async () => {
    await a?.destroy();
    await b?.destroy();
    await db?.drop();
  });

  it('one TOTP code raced 20× over both instances and both routes (user verify, internal verify) → exactly one accepted', async () => {
    for (let round = 0; round < 3; round++) {
      const user = uid('race');
      // Enrolment uses the previous step's code, so the current step is still unused.
      await clearOfStepEdge();
      const { id, secret } = await enrolTotp(a.app, user, (s) => oathtool(s, Date.now() - 30_000));
      const code = oathtool(secret, Date.now());
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const inst = i % 2 === 0 ? a : b;
          return i % 4 < 2
            ? request(inst.app).post('/auth/mfa/verify').set(bearer(user)).send({ code })
            : request(inst.app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: user, code });
        }),
      );
      const ok = answers.filter((r) => r.status === 200);
      expect(ok, `round ${round}: ${answers.map((r) => r.status).join(',')}`).to.have.length(1);
      const body = ok[0]!.body as { deviceId?: string; device_id?: string };
      expect(body.deviceId ?? body.device_id).to.equal(id);
      // Every other one was refused as a used code (400), or by the lockout the refusals then tripped (429).
      for (const r of answers.filter((x) => x.status !== 200)) expect([400, 429], r.text).to.include(r.status);
      console.log(`      [race ${round}] 20 racers: ${answers.filter((r) => r.status === 200).length}×200, ${answers.filter((r) => r.status === 400).length}×400, ${answers.filter((r) => r.status === 429).length}×429`);
    }
  });

  it('the same race with the lockout out of the way (maxFailures 100, no rate limit): 1 × 200 and 19 × 400, refused by the replay check alone', async () => {
    const pools = [createKnex(db.url, { logger: silentLogger }), createKnex(db.url, { logger: silentLogger })];
    try {
      const [one, two] = pools.map((knex) => mfaApp(knexStorage({ knex }), { lockout: { maxFailures: 100 }, rateLimit: false }).app) as [Express, Express];
      for (let round = 0; round < 3; round++) {
        const user = uid('replay');
        await clearOfStepEdge();
        const { secret } = await enrolTotp(one, user, (s) => oathtool(s, Date.now() - 30_000));
        const code = oathtool(secret, Date.now());
        const answers = await Promise.all(
          Array.from({ length: 20 }, (_, i) => {
            const app = i % 2 === 0 ? one : two;
            return i % 4 < 2
              ? request(app).post('/auth/mfa/verify').set(bearer(user)).send({ code })
              : request(app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: user, code });
          }),
        );
        const statuses = answers.map((r) => r.status);
        expect(statuses.filter((st) => st === 200), statuses.join(',')).to.have.length(1);
        expect(statuses.filter((st) => st === 400), statuses.join(',')).to.have.length(19);
        for (const r of answers.filter((x) => x.status === 400)) expect((r.body as { code: number }).code).to.equal(40000010);
      }
    } finally {
      await Promise.all(pools.map((k) => k.destroy()));
    }
  });

  it('20 concurrent sync writers with one sync_token over both instances → one winner, 19 × 409, the stored vault is the winner\'s', async () => {
    const user = uid('sync');
    const created = await request(a.app).post('/mfa/devices/sync').set(bearer(user)).send({ device_fingerprint: 'fp', device_name: 'Phone', totp_devices: [{ secret: newSecret() }] });
    expect(created.status, created.text).to.equal(201);
    const { id, sync_token: token } = created.body as { id: string; sync_token: string };
    const secrets = Array.from({ length: 20 }, newSecret);
    const answers = await Promise.all(
      secrets.map((secret, i) =>
        request((i % 2 === 0 ? a : b).app)
          .post('/mfa/devices/sync')
          .set(bearer(user))
          .send({ device_fingerprint: 'fp', device_name: `Writer ${i}`, totp_devices: [{ secret }], sync_token: token }),
      ),
    );
    const winners = answers.map((r, i) => ({ r, i })).filter(({ r }) => r.status === 200);
    expect(winners, answers.map((r) => r.status).join(',')).to.have.length(1);
    const winner = winners[0]!;
    expect(answers.filter((r) => r.status === 409)).to.have.length(19);
    const newToken = (winner.r.body as { sync_token: string }).sync_token;
    for (const r of answers.filter((x) => x.status === 409)) expect((r.body as { sync_token: string }).sync_token).to.equal(newToken);
    // Read back through the other instance: the winner's vault, nothing of the losers'.
    const stored = await request(b.app).get(`/mfa/devices/sync/${id}`).set(bearer(user));
    expect(stored.status).to.equal(200);
    expect(JSON.parse((stored.body as { totp_devices: string }).totp_devices)).to.deep.equal([{ secret: secrets[winner.i] }]);
    expect((stored.body as { device_name: string }).device_name).to.equal(`Writer ${winner.i}`);
    expect((stored.body as { sync_token: string }).sync_token).to.equal(newToken);
    console.log(`      [sync race] 20 writers: 1×200 (writer ${winner.i}), ${answers.filter((r) => r.status === 409).length}×409`);
  });

  it('wrong codes spread over both instances reach the lockout, and both honour it (even for the right code)', async () => {
    const user = uid('lock');
    await clearOfStepEdge();
    const { secret } = await enrolTotp(b.app, user, (s) => oathtool(s, Date.now() - 30_000));
    const right = () => oathtool(secret, Date.now());
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const inst = i % 2 === 0 ? a : b;
      const r =
        i % 2 === 0
          ? await request(inst.app).post('/auth/mfa/verify').set(bearer(user)).send({ code: wrong(right()) })
          : await request(inst.app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: user, code: wrong(right()) });
      statuses.push(r.status);
    }
    expect(statuses, 'the 5 failures before the lockout').to.deep.equal([400, 400, 400, 400, 400]);
    const code = right();
    for (const [name, r] of [
      ['A user verify', await request(a.app).post('/auth/mfa/verify').set(bearer(user)).send({ code })],
      ['B user verify', await request(b.app).post('/auth/mfa/verify').set(bearer(user)).send({ code })],
      ['A internal verify', await request(a.app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: user, code })],
      ['B internal verify', await request(b.app).post('/internal/mfa/totp/verify').set(internalHeaders()).send({ user_id: user, code })],
    ] as const) {
      expect(r.status, `${name}: ${r.text}`).to.equal(429);
      expect(Number(r.headers['retry-after']), name).to.be.greaterThan(0);
      expect((r.body as { retry_after: number }).retry_after, name).to.equal(Number(r.headers['retry-after']));
    }
  });

  it('a trusted device revoked through one instance is refused by the other at once (internal revoke, user revoke, revoke-all)', async () => {
    const user = uid('td');
    const check = (inst: AppInstance, fp: string) => request(inst.app).get(`${TD}/check?user_id=${user}&device_fingerprint=${fp}`).set(internalHeaders());
    const trust = async (inst: AppInstance, fp: string) => {
      const r = await request(inst.app).post(TD).set(internalHeaders()).send({ user_id: user, device_fingerprint: fp });
      expect(r.status, r.text).to.equal(201);
      // Both instances hold the positive answer (the second check of each is served by the cache).
      for (const other of [a, b, a, b]) expect((await check(other, fp)).body.trusted).to.equal(true);
      return (r.body as { id: string }).id;
    };

    const laptop = await trust(a, 'laptop');
    expect((await request(a.app).delete(`${TD}/${laptop}?user_id=${user}`).set(internalHeaders())).status).to.equal(204);
    expect((await check(b, 'laptop')).body).to.deep.equal({ trusted: false });
    expect((await check(a, 'laptop')).body).to.deep.equal({ trusted: false });

    const tablet = await trust(b, 'tablet');
    expect((await request(b.app).delete(`/auth/mfa/trusted-devices/${tablet}`).set(bearer(user))).status).to.equal(204);
    expect((await check(a, 'tablet')).body).to.deep.equal({ trusted: false });
    expect((await check(b, 'tablet')).body).to.deep.equal({ trusted: false });

    await trust(a, 'phone');
    await trust(a, 'desktop');
    const all = await request(b.app).delete(`${TD}?user_id=${user}`).set(internalHeaders());
    expect(all.body).to.deep.equal({ revoked: 2 });
    for (const inst of [a, b]) for (const fp of ['phone', 'desktop']) expect((await check(inst, fp)).body, fp).to.deep.equal({ trusted: false });
  });

  it('the instances logged no error', () => {
    for (const inst of [a, b]) expect(inst.logs.filter((l) => /"level":(50|60)/.test(l))).to.deep.equal([]);
  });
});
