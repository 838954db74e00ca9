/**
 * The kit on a database whose default isolation is REPEATABLE READ or SERIALIZABLE (a host's
 * `default_transaction_isolation`), over HTTP on real Postgres: the writers that count under a per-user lock keep
 * their limits and their last-device rule, and a race lost in Postgres is a 503 to retry, never a 500.
 *
 * Last, the writers inside a host's own transaction, where the kit's transactions are savepoints.
 *
 * Each race is made to overlap: a transaction of the test holds the user's lock while every request starts and
 * waits for it, so each has begun (and, under REPEATABLE READ, taken its snapshot) before any of them writes.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import createKnex, { type Knex } from 'knex';
import request from 'supertest';
import { aad, createTrustedDevices, knexStorage, memoryCache, silentLogger } from '../index.js';
import { lockUser } from '../storage/knex/user-locks.js';
import { KEY_A, ring } from './support/fixtures.js';
import { as, clearOfStepEdge, mfaApp, oathtool } from './support/mfa.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';

/** Waits until `n` backends of this database wait for a lock. */
async function waitingForLocks(knex: Knex, n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const r = await knex.raw<{ rows: Array<{ n: string }> }>("select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'");
    if (Number(r.rows[0]?.n) >= n) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`fewer than ${n} requests waited for the lock`);
}

/** Runs `start` (which sends requests) while a transaction holds the user's lock, releases it once `waiters` wait. */
async function behindTheLock<T>(admin: Knex, userId: string, waiters: number, start: () => Promise<T>): Promise<T> {
  const holder = await admin.transaction();
  try {
    await lockUser(holder, 'acme', userId);
    const running = start();
    await waitingForLocks(admin, waiters);
    await holder.commit();
    return await running;
  } finally {
    if (!holder.isCompleted()) await holder.rollback();
  }
}

const statuses = (answers: Array<{ status: number }>) => answers.map((a) => a.status).sort((a, b) => a - b);

for (const isolation of ['repeatable read', 'serializable'] as const) {
  describe(`on a database whose default isolation is ${isolation}`, function () {
    let db: FreshDatabase;
    let knex: Knex;
    let app: ReturnType<typeof mfaApp>['app'];
    const user = (name: string) => `${name}-${randomBytes(4).toString('hex')}`;

    before(async function () {
      this.timeout(60_000);
      db = await freshDatabase();
      knex = createKnex({ client: 'pg', connection: { connectionString: db.url, options: `-c default_transaction_isolation=${isolation.replace(' ', '\\ ')}` }, pool: { min: 0, max: 30 } });
      const shown = await knex.raw<{ rows: Array<{ transaction_isolation: string }> }>('show transaction_isolation');
      expect(shown.rows[0]?.transaction_isolation).to.equal(isolation);
      const storage = knexStorage({ knex });
      await storage.migrate();
      app = mfaApp(storage, { rateLimit: false, maxDevices: 10, lockout: { maxFailures: 5, cooldownSeconds: 60 } }).app;
    });
    after(async function () {
      await knex?.destroy();
      await db?.drop();
    });

    it('25 enrolments at once: exactly maxDevices (10) created, the rest 409 DEVICE_LIMIT_REACHED', async function () {
      const u = user('enrol');
      const answers = await behindTheLock(db.knex, u, 25, () =>
        Promise.all(Array.from({ length: 25 }, (_, i) => as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: `app ${i}` }), u))),
      );
      expect(statuses(answers)).to.deep.equal([...Array<number>(10).fill(201), ...Array<number>(15).fill(409)]);
      expect(Number((await db.knex('mfa_devices').where({ user_id: u }).count({ n: '*' }).first())?.n)).to.equal(10);
    });

    it('removing both verified devices at once takes the recovery codes and trusted devices with the last', async function () {
      const u = user('remove');
      const ids: string[] = [];
      // Each device's own step: a code is accepted once per user and step. Both from one moment, well inside its step:
      // a step ending between the two would give the second the first one's.
      await clearOfStepEdge(5000);
      const t0 = Date.now();
      for (let i = 0; i < 2; i++) {
        const enrolled = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: `app ${i}` }), u);
        expect(enrolled.status).to.equal(201);
        const verified = await as(request(app).post(`/auth/mfa/devices/${enrolled.body.device.id}/verify`).send({ code: oathtool(enrolled.body.secret as string, t0 - i * 30_000) }), u);
        expect(verified.status, JSON.stringify(verified.body)).to.equal(200);
        ids.push(enrolled.body.device.id as string);
      }
      expect((await as(request(app).post('/auth/mfa/recovery-codes'), u)).status).to.equal(201);
      const trusted = await request(app)
        .post('/internal/session/trusted-devices')
        .set('X-Internal-API-Key', KEY_A)
        .set('X-Tenant-ID', 'acme')
        .send({ user_id: u, device_fingerprint: 'fp-1', device_name: 'Laptop' });
      expect(trusted.status, JSON.stringify(trusted.body)).to.be.oneOf([200, 201]);

      const answers = await behindTheLock(db.knex, u, 2, () => Promise.all(ids.map((id) => as(request(app).delete(`/auth/mfa/devices/${id}`), u))));
      expect(statuses(answers)).to.deep.equal([204, 204]);
      const left = async (table: string) => Number((await db.knex(table).where({ user_id: u }).count({ n: '*' }).first())?.n);
      expect({ devices: await left('mfa_devices'), recoveryCodes: await left('mfa_recovery_codes'), trustedDevices: await left('trusted_devices') }).to.deep.equal({
        devices: 0,
        recoveryCodes: 0,
        trustedDevices: 0,
      });
    });

    it('30 wrong codes at once: at most maxFailures (5) looked at, the rest 429, or 503 to retry; never a 500', async function () {
      const u = user('lockout');
      const enrolled = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'app' }), u);
      const verified = await as(request(app).post(`/auth/mfa/devices/${enrolled.body.device.id}/verify`).send({ code: oathtool(enrolled.body.secret as string, Date.now()) }), u);
      expect(verified.status).to.equal(200);
      const right = oathtool(enrolled.body.secret as string, Date.now());
      const wrong = right === '000000' ? '111111' : '000000';
      const answers = await Promise.all(Array.from({ length: 30 }, () => as(request(app).post('/auth/mfa/verify').send({ code: wrong }), u)));
      const seen = statuses(answers);
      expect(seen.filter((s) => s !== 400 && s !== 429 && s !== 503), JSON.stringify(seen)).to.deep.equal([]);
      expect(seen.filter((s) => s === 400).length).to.be.at.most(5);
      // Some were looked at and the lock answered the rest: all 503 would be a lockout that never ran.
      expect(seen.filter((s) => s === 400).length, JSON.stringify(seen)).to.be.at.least(1);
      expect(seen.filter((s) => s === 429).length, JSON.stringify(seen)).to.be.at.least(1);
      console.log(`      [default-isolation] 30 wrong codes at once: ${JSON.stringify(Object.fromEntries([400, 429, 503].map((s) => [s, seen.filter((x) => x === s).length])))}`);
      for (const a of answers.filter((x) => x.status === 503)) expect(a.headers['retry-after']).to.match(/^\d+$/);
    });
  });
}

describe("the kit's writers inside a host's transaction (knexStorage({ knex: trx })): savepoints, undone with it", function () {
  let db: FreshDatabase;
  before(async function () {
    this.timeout(60_000);
    db = await freshDatabase();
    await knexStorage({ knex: db.knex }).migrate();
  });
  after(async function () {
    await db?.drop();
  });

  it('a trust inside a host transaction that rolls back is never answered trusted (nothing written through, nothing filled)', async function () {
    const u = `host-trust-${randomBytes(4).toString('hex')}`;
    const cache = memoryCache();
    const outside = createTrustedDevices({ storage: knexStorage({ knex: db.knex }), cache, logger: silentLogger });
    // A user the cache knows (a committed change), so a fill would be stored at once.
    await outside.trust('acme', u, { fingerprint: 'fp-known' });
    const trx = await db.knex.transaction();
    const inside = createTrustedDevices({ storage: knexStorage({ knex: trx }), cache, logger: silentLogger });
    try {
      await inside.trust('acme', u, { fingerprint: 'fp-x' });
      // A check in the transaction sees its own write, and caches nothing from it either.
      expect(await inside.check('acme', u, 'fp-x')).to.include({ trusted: true });
    } finally {
      await trx.rollback();
      inside.close();
    }
    try {
      expect(await outside.check('acme', u, 'fp-x')).to.deep.equal({ trusted: false });
      // A committed change later brings Postgres's generation to the number the rolled-back one had.
      await outside.trust('acme', u, { fingerprint: 'fp-y' });
      expect(await outside.check('acme', u, 'fp-x')).to.deep.equal({ trusted: false });
      expect(await outside.check('acme', u, 'fp-y')).to.include({ trusted: true });
    } finally {
      outside.close();
    }
  });

  it('every writer that opens a transaction of its own runs in it, and a rollback of the host leaves nothing', async function () {
    const u = `host-trx-${randomBytes(4).toString('hex')}`;
    const trx = await db.knex.transaction();
    try {
      const s = knexStorage({ knex: trx });
      const id = randomUUID();
      const sealed = ring.seal('JBSWY3DPEHPK3PXP', aad('acme', u, id));
      const created = await s.mfaDevices.create({ id, tenantId: 'acme', userId: u, method: 'totp', deviceName: 'app', secret: sealed, totp: { algorithm: 'SHA1', digits: 6, period: 30, skew: 1 }, expiresAt: new Date(Date.now() + 600_000) }, { maxDevices: 10, now: new Date() });
      expect(created.status).to.equal('OK');
      expect(await s.mfaDevices.markVerified('acme', u, id, { step: 1, now: new Date() })).to.include({ id, verified: true });
      expect(await s.mfaDevices.update('acme', u, id, { enabled: false })).to.include({ enabled: false });
      expect(await s.recoveryCodes.replace('acme', u, [randomBytes(32)])).to.equal(true);
      const trusted = await s.trustedDevices.upsert('acme', u, { fingerprint: 'fp-1', trustedUntil: new Date(Date.now() + 3_600_000) }, new Date());
      expect(trusted?.created).to.equal(true);
      expect((await s.trustedDevices.revoke('acme', u, trusted!.device.id)).revoked).to.equal(true);
      await s.trustedDevices.upsert('acme', u, { fingerprint: 'fp-2', trustedUntil: new Date(Date.now() + 3_600_000) }, new Date());
      expect((await s.trustedDevices.revokeAll('acme', u)).revoked).to.equal(1);
      expect(await s.trustedDevices.bumpCacheEpoch()).to.be.a('number');
      const recordId = `devsync_${randomBytes(16).toString('hex')}`;
      const record = { tenantId: 'acme', userId: u, id: recordId, deviceFingerprint: 'fp', deviceName: 'd', syncToken: randomBytes(16).toString('hex'), vault: ring.seal('[]', aad('acme', u, recordId)) };
      expect((await s.syncRecords.create(record, { maxRecords: 3 })).status).to.equal('created');
      expect((await s.mfaDevices.remove('acme', u, id)).removed?.id).to.equal(id);
      expect((await s.users.erase('acme', u)).erased).to.be.an('object');
    } finally {
      await trx.rollback();
    }
    for (const table of ['mfa_devices', 'mfa_recovery_codes', 'trusted_devices', 'sync_records']) {
      expect(Number((await db.knex(table).where({ user_id: u }).count({ n: '*' }).first())?.n), table).to.equal(0);
    }
  });
});
