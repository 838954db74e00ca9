/**
 * The kit's tables in a schema of their own (README, "Mount into your existing app"): a host database that already
 * has a `trusted_devices` table keeps it, and the kit works from the schema its knex's `searchPath` names. And the
 * schema across versions: code ahead of its migrations, and a database ahead of the code (a rolling deploy).
 */
import { expect } from 'chai';
import knexModule from 'knex';
import { createTrustedDevices, knexStorage, memoryCache, migrate, silentLogger } from '../index.js';
import { migratedStorage } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';

describe("the kit's tables in their own schema (knex searchPath)", function () {
  this.timeout(30_000);
  let db: FreshDatabase;

  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  it("migrates beside a host table of the same name, leaves the host's alone, and serves from its schema", async () => {
    await db.knex.raw('create table trusted_devices (id int primary key, host_data text)');
    await db.knex.raw("insert into trusted_devices values (1, 'the host''s row')");
    await db.knex.raw('create schema mfa_kit');
    const knex = knexModule({ client: 'pg', connection: db.url, searchPath: ['mfa_kit'], pool: { min: 0, max: 2 } });
    try {
      const storage = knexStorage({ knex });
      await storage.migrate();
      await storage.migrate(); // once per deploy: the second finds nothing to do
      const tables = await db.knex('information_schema.tables').select('table_schema', 'table_name').whereIn('table_schema', ['public', 'mfa_kit']);
      expect(tables.filter((t: { table_schema: string }) => t.table_schema === 'public').map((t: { table_name: string }) => t.table_name)).to.deep.equal(['trusted_devices']);
      expect(tables.map((t: { table_name: string }) => t.table_name)).to.include.members(['mfa_devices', 'trusted_device_cache_epoch', 'mfa_kit_migrations']);
      const service = createTrustedDevices({ storage, logger: silentLogger });
      const device = await service.trust('acme', 'u1', { fingerprint: 'fp-1' });
      expect(await service.check('acme', 'u1', 'fp-1')).to.include({ trusted: true, deviceId: device.id });
      expect(await service.revoke('acme', 'u1', device.id)).to.equal(true);
      expect(await service.check('acme', 'u1', 'fp-1')).to.deep.equal({ trusted: false });
      service.close();
      expect(await db.knex('public.trusted_devices').select('*')).to.deep.equal([{ id: 1, host_data: "the host's row" }]);
    } finally {
      await knex.destroy();
    }
  });
});

describe('migrations from several instances at once', function () {
  this.timeout(90_000);

  it("on an empty database, instances that start together (or a few ms apart) all migrate, and leave knex's lock one row", async () => {
    for (let round = 0; round < 6; round++) {
      const db = await freshDatabase();
      const others = [0, 1, 2, 3].map(() => knexModule({ client: 'pg', connection: db.url, pool: { min: 1, max: 2 } }));
      try {
        // Connected first, so the migrations leave at the moments chosen: together, or 2-8 ms apart.
        await Promise.all(others.map((k) => k.raw('select 1')));
        const results = await Promise.allSettled(others.map((k, i) => new Promise((r) => setTimeout(r, i * (round % 3) * 2)).then(() => migrate(k))));
        const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String((r.reason as Error).message).slice(0, 120));
        expect(failed, `round ${round}`).to.deep.equal([]);
        const applied = results.map((r) => (r as PromiseFulfilledResult<string[]>).value.length);
        // One applied them all; the others found nothing left to do.
        expect(applied.filter((n) => n > 0), `round ${round}: ${applied.join(', ')}`).to.have.length(1);
        expect(await db.knex('mfa_kit_migrations_lock').select('*'), `round ${round}`).to.deep.equal([{ index: 1, is_locked: 0 }]);
        expect(await migrate(db.knex)).to.deep.equal([]);
      } finally {
        await Promise.all(others.map((k) => k.destroy()));
        await db.drop();
      }
    }
  });

  it('on a database whose default isolation is SERIALIZABLE (or REPEATABLE READ), several at once wait for each other instead of failing: on an empty database and after', async () => {
    for (const level of ['serializable', 'repeatable read']) {
      const db = await freshDatabase();
      await db.knex.raw(`alter database "${db.name}" set default_transaction_isolation = '${level}'`);
      const others = [0, 1, 2, 3].map(() => knexModule({ client: 'pg', connection: db.url, pool: { min: 1, max: 2 } }));
      try {
        await Promise.all(others.map((k) => k.raw('select 1')));
        for (const wave of ['empty', 'migrated']) {
          const results = await Promise.allSettled(others.map((k) => migrate(k)));
          const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String((r.reason as Error).message).slice(0, 120));
          expect(failed, `${level}, ${wave}`).to.deep.equal([]);
        }
      } finally {
        await Promise.all(others.map((k) => k.destroy()));
        await db.drop();
      }
    }
  });

  it("a second lock row, left by such a race before, is removed (knex's lock refused every run while there were two)", async () => {
    const db = await migratedStorage();
    try {
      await db.knex('mfa_kit_migrations_lock').insert({ is_locked: 0 });
      expect(await db.knex('mfa_kit_migrations_lock').select('*')).to.have.length(2);
      expect(await migrate(db.knex)).to.deep.equal([]);
      expect(await db.knex('mfa_kit_migrations_lock').select('*')).to.have.length(1);
    } finally {
      await db.drop();
    }
  });
});

describe("the kit's schema across versions", function () {
  this.timeout(30_000);

  it('a database migrated by a later version (a migration this code does not know) still migrates and serves', async () => {
    const db = await migratedStorage();
    try {
      await db.knex('mfa_kit_migrations').insert({ name: '0099_from_a_later_version', batch: 99, migration_time: new Date() });
      expect(await db.storage.migrate()).to.deep.equal([]);
      expect(await db.storage.ping()).to.equal(undefined);
    } finally {
      await db.drop();
    }
  });

  it('code ahead of migration 0008 (no bumped_at yet): trusts and revocations work, with the cache told and the epoch bumped as before', async () => {
    const db = await migratedStorage();
    try {
      await db.knex.raw('alter table trusted_device_cache_epoch drop column bumped_at');
      // A raise that fails makes the change bump the epoch instead: the undated bump.
      let failRaise = false;
      const base = memoryCache();
      const cache = Object.assign(Object.create(base) as typeof base, {
        invalidate: (scope: Parameters<typeof base.invalidate>[0], generation: number) => (failRaise ? Promise.reject(new Error('Command timed out')) : base.invalidate(scope, generation)),
      });
      const service = createTrustedDevices({ storage: db.storage, cache, logger: silentLogger, epochRefreshMs: 50, cacheRetryMs: 1 });
      try {
        const first = await service.trust('acme', 'early', { fingerprint: 'fp-1' });
        expect(await service.check('acme', 'early', 'fp-1')).to.include({ trusted: true });
        expect(await service.revoke('acme', 'early', first.id)).to.equal(true);
        expect(await service.check('acme', 'early', 'fp-1')).to.deep.equal({ trusted: false });
        const second = await service.trust('acme', 'early', { fingerprint: 'fp-2' });
        const epoch = await db.storage.trustedDevices.cacheEpoch();
        failRaise = true;
        expect(await service.revoke('acme', 'early', second.id)).to.equal(true);
        expect(await db.storage.trustedDevices.cacheEpoch()).to.equal(epoch + 1);
        expect(await service.check('acme', 'early', 'fp-2')).to.deep.equal({ trusted: false });
      } finally {
        service.close();
      }
    } finally {
      await db.drop();
    }
  });
});
