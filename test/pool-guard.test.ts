/**
 * knexStorage's pool guard (storage/knex/pool-guard.ts), on a real Postgres: a pooled connection left inside a
 * transaction, a failed one, or one still running a query (what pg's client-side `query_timeout` leaves behind when
 * the server hangs) is closed instead of handed out, so the kit's writes are committed and its reads answer.
 */
import { expect } from 'chai';
import createKnex, { type Knex } from 'knex';
import { knexStorage, type KnexStorage } from '../index.js';
import { isIdleConnection } from '../storage/knex/pool-guard.js';
import { insertDevice } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';

/** The part of a pg client these tests touch. */
interface PgClient {
  query(sql: string): Promise<unknown>;
  getTransactionStatus(): string | null;
  _ending?: boolean;
}

interface PoolClient {
  acquireConnection(): Promise<PgClient>;
  releaseConnection(connection: PgClient): Promise<void>;
}

describe('knexStorage: the pool hands out no connection left inside a transaction', function () {
  this.timeout(30_000);
  let db: FreshDatabase;
  let knex: Knex;
  let storage: KnexStorage;

  before(async () => {
    db = await freshDatabase();
    await knexStorage({ knex: db.knex }).migrate();
    // One connection: whatever the pool hands out next is the connection that was just put back.
    knex = createKnex({ client: 'pg', connection: db.url, pool: { min: 0, max: 1 } });
    storage = knexStorage({ knex });
  });
  after(async () => {
    await knex?.destroy();
    await db?.drop();
  });

  const pool = () => knex.client as unknown as PoolClient;
  /** Puts a connection back into the pool in the state `dirty` leaves it in; returns it. */
  async function putBackDirty(dirty: (connection: PgClient) => Promise<void>): Promise<PgClient> {
    const connection = await pool().acquireConnection();
    await dirty(connection);
    await pool().releaseConnection(connection);
    return connection;
  }
  /** Rows of the tenant's trusted devices, read on a connection of another pool (what other instances see). */
  const committed = async (tenant: string) => Number(((await db.knex('trusted_devices').where({ tenant_id: tenant }).count({ n: '*' }).first()) as { n: string }).n);

  it('a connection inside an open transaction: closed (its transaction rolled back), and the one-time step written after it is committed', async () => {
    const id = await insertDevice(db.knex, { tenantId: 'guard-b', userId: 'u' });
    const left = await putBackDirty(async (c) => {
      await c.query('BEGIN');
      await c.query("insert into trusted_devices (tenant_id, id, user_id, fingerprint, trusted_until) values ('guard-a', gen_random_uuid(), 'u', 'fp-left', now() + interval '1 day')");
    });
    expect(left.getTransactionStatus()).to.equal('T');
    // The replay guard (a prepared statement): without the guard it ran inside the left transaction, was acknowledged,
    // and no other connection saw it: the same code would pass again on another instance.
    expect(await storage.mfaDevices.recordTotpStep('guard-b', 'u', id, 777)).to.not.equal(null);
    const row = (await db.knex('mfa_devices').where({ tenant_id: 'guard-b', id }).first()) as { last_step: string | number | null };
    expect(Number(row.last_step)).to.equal(777);
    expect(left._ending).to.equal(true);
    expect(await committed('guard-a')).to.equal(0);
    // A knex transaction of the kit after it: committed too.
    const now = new Date();
    expect(await storage.trustedDevices.upsert('guard-b', 'u', { fingerprint: 'fp-1', trustedUntil: new Date(now.getTime() + 86_400_000) }, now)).to.not.equal(null);
    expect(await committed('guard-b')).to.equal(1);
  });

  it('a connection whose transaction failed (25P02 on every statement): closed, and the next read answers', async () => {
    await insertDevice(db.knex, { tenantId: 'guard-c', userId: 'u' });
    const left = await putBackDirty(async (c) => {
      await c.query('BEGIN');
      await c.query('select 1 / 0').catch(() => undefined);
      // pg reports the error on Postgres's ErrorResponse; the ReadyForQuery that says 'E' comes just after.
      while (c.getTransactionStatus() !== 'E') await new Promise((resolve) => setImmediate(resolve));
    });
    expect(left.getTransactionStatus()).to.equal('E');
    // A prepared statement of the kit (the device listing) on a clean connection, not a 25P02.
    expect((await storage.mfaDevices.list('guard-c', 'u', {}, { limit: 20, offset: 0 })).items).to.have.length(1);
    expect(left._ending).to.equal(true);
  });

  it('a connection in a transaction whose statement still runs (a client-side timeout left it): not handed out, and a one-time step is committed at once', async () => {
    const id = await insertDevice(db.knex, { tenantId: 'guard-d', userId: 'u' });
    const left = await putBackDirty(async (c) => {
      await c.query('BEGIN');
      // Not awaited, as after pg's query_timeout: the statement still runs on the server, in the transaction.
      void c.query('select pg_sleep(2)').catch(() => undefined);
    });
    expect(await storage.mfaDevices.recordTotpStep('guard-d', 'u', id, 12345)).to.not.equal(null);
    expect(left._ending).to.equal(true);
    const row = (await db.knex('mfa_devices').where({ tenant_id: 'guard-d', id }).first()) as { last_step: string | number | null };
    expect(Number(row.last_step)).to.equal(12345);
  });

  it("a caught error or a stream left early outside a transaction keeps its connection: no new one, no query killed, no stream hung (found by an adopter review)", async () => {
    const pid = async () => ((await knex.raw<{ rows: Array<{ pid: number }> }>('select pg_backend_pid() as pid')).rows[0]!.pid);
    const first = await pid();
    for (let i = 0; i < 20; i++) {
      // knex puts the connection back on Postgres's ErrorResponse, before the ReadyForQuery that follows it.
      await knex.raw('select 1 / 0').catch(() => undefined);
      expect(await pid(), `after caught error ${i + 1}`).to.equal(first);
    }
    for (let i = 0; i < 5; i++) {
      for await (const _row of knex.raw('select generate_series(1, 5000) as n').stream()) break;
      expect(await pid(), `after stream ${i + 1} left early`).to.equal(first);
    }
  });

  it('isIdleConnection: only idle outside a transaction, or not yet known', () => {
    const pg = (status: string | null) => ({ getTransactionStatus: () => status });
    expect([pg('I'), pg(null), pg('T'), pg('E'), {}].map(isIdleConnection)).to.deep.equal([true, true, false, false, true]);
    // pg-native's client forwards getTransactionStatus() to a library that may not have it: not known, not a failure.
    const native = { getTransactionStatus: () => { throw new TypeError('not a function'); } };
    expect(isIdleConnection(native)).to.equal(true);
  });
});
