import { expect } from 'chai';
import { Redis } from 'ioredis';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { redisUrl, requireRedis } from './support/redis.js';

describe('test support', function () {
  describe('postgres', function () {
    let a: FreshDatabase;
    let b: FreshDatabase;

    before(async function () {
      this.timeout(60_000);
      [a, b] = await Promise.all([freshDatabase(), freshDatabase()]);
    });

    after(async function () {
      await Promise.all([a?.drop(), b?.drop()]);
    });

    it('creates distinct, empty databases', async function () {
      expect(a.name).to.not.equal(b.name);
      expect(a.url).to.not.equal(b.url);
      const [ra, rb] = await Promise.all([
        a.knex.raw<{ rows: { db: string }[] }>('select current_database() as db'),
        b.knex.raw<{ rows: { db: string }[] }>('select current_database() as db'),
      ]);
      expect(ra.rows[0]?.db).to.equal(a.name);
      expect(rb.rows[0]?.db).to.equal(b.name);

      await a.knex.schema.createTable('only_in_a', (t) => t.increments('id'));
      expect(await a.knex.schema.hasTable('only_in_a')).to.equal(true);
      expect(await b.knex.schema.hasTable('only_in_a')).to.equal(false);
    });

    it('uses UTF8', async function () {
      const r = await a.knex.raw<{ rows: { enc: string }[] }>(
        "select pg_encoding_to_char(encoding) as enc from pg_database where datname = current_database()",
      );
      expect(r.rows[0]?.enc).to.equal('UTF8');
    });

    it('pool holds two connections at once on different backends', async function () {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let inside = 0;
      let bothInside!: () => void;
      const bothInsidePromise = new Promise<void>((resolve) => (bothInside = resolve));

      const holdPid = (): Promise<number> =>
        a.knex.transaction(async (trx) => {
          const r = await trx.raw<{ rows: { pid: number }[] }>('select pg_backend_pid() as pid');
          inside += 1;
          if (inside === 2) bothInside();
          // Both transactions stay open until both have reported their pid,
          // so they must be on two distinct pooled connections.
          await gate;
          const pid = r.rows[0]?.pid;
          if (pid === undefined) throw new Error('no pid');
          return pid;
        });

      const both = Promise.all([holdPid(), holdPid()]);
      await bothInsidePromise;
      release();
      const [p1, p2] = await both;
      expect(p1).to.be.a('number');
      expect(p2).to.be.a('number');
      expect(p1).to.not.equal(p2);
    });

    it('drop() removes the database', async function () {
      const c = await freshDatabase();
      await c.knex.raw('select 1');
      await c.drop();
      const r = await a.knex.raw<{ rows: unknown[] }>('select 1 from pg_database where datname = ?', [c.name]);
      expect(r.rows).to.have.length(0);
      await c.drop(); // idempotent
    });
  });

  describe('redis', function () {
    let url: string | undefined;
    let redis: Redis | undefined;

    before(async function () {
      url = await redisUrl();
      requireRedis(this, url);
      redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await redis.connect();
    });

    after(async function () {
      if (redis !== undefined) await redis.quit();
    });

    it('answers PING', async function () {
      expect(await redis?.ping()).to.equal('PONG');
    });

    it('round-trips a key under a unique prefix', async function () {
      const key = `mfa-test:${process.pid}:${Date.now()}:support`;
      await redis?.set(key, 'v', 'EX', 10);
      expect(await redis?.get(key)).to.equal('v');
      await redis?.del(key);
    });
  });
});
