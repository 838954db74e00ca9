/**
 * Two deployments (each its own Postgres database) on one Redis with the default key prefix: staging and
 * production, two products. A device trusted in one must not be trusted in the other.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import request from 'supertest';
import { migrate } from '../index.js';
import { exampleInstance, internalHeaders, type AppInstance } from './support/cluster.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { redisUrl, requireRedis } from './support/redis.js';

const TD = '/internal/session/trusted-devices';

describe('two deployments with their own databases on one Redis', function () {
  this.timeout(60_000);
  const dbs: FreshDatabase[] = [];
  const apps: AppInstance[] = [];

  before(async function () {
    const url = await redisUrl();
    requireRedis(this, url);
    for (let i = 0; i < 2; i++) {
      const db = await freshDatabase();
      dbs.push(db);
      await migrate(db.knex);
      // No keyPrefix: both on the default one, as two example servers given the same REDIS_URL.
      apps.push(await exampleInstance({ databaseUrl: db.url, redisUrl: url }));
    }
  });

  after(async () => {
    for (const app of apps) await app.destroy();
    for (const db of dbs) await db.drop();
  });

  it('start their cache epochs apart, so a device trusted in one is not trusted in the other, even once cached there', async () => {
    const epochOf = async (db: FreshDatabase) => Number((await db.knex<{ epoch: string }>('trusted_device_cache_epoch').first('epoch'))?.epoch);
    const [epochA, epochB] = await Promise.all(dbs.map(epochOf));
    expect(epochA).to.not.equal(epochB);
    const [a, b] = apps as [AppInstance, AppInstance];
    const user = `ns-${randomBytes(4).toString('hex')}`;
    const check = (app: AppInstance) => request(app.app).get(`${TD}/check`).query({ user_id: user, device_fingerprint: 'fp-shared' }).set(internalHeaders());
    // A's "no" is cached first, then B trusts the device and caches its "yes".
    expect((await check(a)).body).to.deep.equal({ trusted: false });
    const trusted = await request(b.app).post(TD).set(internalHeaders()).send({ user_id: user, device_fingerprint: 'fp-shared' });
    expect(trusted.status, trusted.text).to.equal(201);
    expect((await check(b)).body).to.include({ trusted: true });
    expect((await check(b)).body).to.include({ trusted: true });
    expect((await check(a)).body).to.deep.equal({ trusted: false });
    // And the other way: A trusts its own, B's cache does not answer for it.
    const mine = await request(a.app).post(TD).set(internalHeaders()).send({ user_id: user, device_fingerprint: 'fp-a' });
    expect(mine.status).to.equal(201);
    expect((await request(b.app).get(`${TD}/check`).query({ user_id: user, device_fingerprint: 'fp-a' }).set(internalHeaders())).body).to.deep.equal({ trusted: false });
  });
});
