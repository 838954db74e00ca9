/**
 * The kit's tables in a schema of their own (README, "Mount into your existing app"): a host database that already
 * has a `trusted_devices` table keeps it, and the kit works from the schema its knex's `searchPath` names.
 */
import { expect } from 'chai';
import knexModule from 'knex';
import { createTrustedDevices, knexStorage, silentLogger } from '../index.js';
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
