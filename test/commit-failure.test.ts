/**
 * A COMMIT that fails (the connection lost at that moment; here, a deferred constraint trigger that raises at commit)
 * must fail the write: a trusted device that was not stored must not be answered as trusted, a revocation that did not
 * happen must not be answered 204. On real Postgres, through the store and over HTTP.
 */
import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import { internalRouter, knexStorage, silentLogger, type KnexStorage } from '../index.js';
import { KEY_A } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';

describe('a trusted-device write whose COMMIT fails', function () {
  let db: FreshDatabase;
  let storage: KnexStorage;
  let app: express.Express;
  const internal = (req: request.Test) => req.set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme');

  before(async function () {
    this.timeout(60_000);
    db = await freshDatabase();
    storage = knexStorage({ knex: db.knex });
    await storage.migrate();
    app = express();
    app.use('/internal', internalRouter({ storage, internalKeys: [KEY_A], logger: silentLogger }));
  });
  after(async function () {
    await db?.drop();
  });

  /** From now on, a commit that wrote or deleted a trusted device of `user` fails. */
  async function failCommitsFor(user: string): Promise<() => Promise<void>> {
    await db.knex.raw(`create function test_fail_at_commit() returns trigger language plpgsql as $$
      begin if coalesce(new.user_id, old.user_id) = '${user}' then raise exception 'commit refused for the test'; end if; return null; end $$`);
    await db.knex.raw(`create constraint trigger test_fail_at_commit after insert or update or delete on trusted_devices
      deferrable initially deferred for each row execute function test_fail_at_commit()`);
    return async () => {
      await db.knex.raw('drop trigger test_fail_at_commit on trusted_devices');
      await db.knex.raw('drop function test_fail_at_commit()');
    };
  }

  it('rejects in the store, for a trust, a revocation and a revocation of all', async function () {
    const user = 'store-user';
    const kept = await storage.trustedDevices.upsert('acme', user, { fingerprint: 'fp-kept', trustedUntil: new Date(Date.now() + 3_600_000) }, new Date());
    const restore = await failCommitsFor(user);
    try {
      const outcomes = await Promise.allSettled([
        storage.trustedDevices.upsert('acme', user, { fingerprint: 'fp-new', trustedUntil: new Date(Date.now() + 3_600_000) }, new Date()),
        storage.trustedDevices.revoke('acme', user, kept!.device.id),
        storage.trustedDevices.revokeAll('acme', user),
      ]);
      expect(outcomes.map((o) => o.status)).to.deep.equal(['rejected', 'rejected', 'rejected']);
    } finally {
      await restore();
    }
    expect(await db.knex('trusted_devices').where({ user_id: user }).pluck('fingerprint')).to.deep.equal(['fp-kept']);
  });

  it('answers an error over HTTP, never 201 or 204, and the check still says what is stored', async function () {
    const user = 'http-user';
    const made = await internal(request(app).post('/internal/session/trusted-devices')).send({ user_id: user, device_fingerprint: 'fp-1', device_name: 'Laptop' });
    expect(made.status).to.equal(201);
    const restore = await failCommitsFor(user);
    try {
      const trust = await internal(request(app).post('/internal/session/trusted-devices')).send({ user_id: user, device_fingerprint: 'fp-2', device_name: 'Phone' });
      expect(trust.status, trust.text).to.be.at.least(500);
      const revoke = await internal(request(app).delete(`/internal/session/trusted-devices/${made.body.id}?user_id=${user}`));
      expect(revoke.status, revoke.text).to.be.at.least(500);
      const revokeAll = await internal(request(app).delete(`/internal/session/trusted-devices?user_id=${user}`));
      expect(revokeAll.status, revokeAll.text).to.be.at.least(500);
    } finally {
      await restore();
    }
    const check = (fp: string) => internal(request(app).get(`/internal/session/trusted-devices/check?user_id=${user}&device_fingerprint=${fp}`));
    expect((await check('fp-1')).body.trusted).to.equal(true);
    expect((await check('fp-2')).body.trusted).to.equal(false);
  });
});
