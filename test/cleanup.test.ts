/** Retention on real Postgres: `cleanupExpired()` and `npm run cleanup` delete what expired and nothing that still decides. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { cleanupExpired, CLEANUP_TABLES, knexStorage, type CleanupResult } from '../index.js';
import { insertDevice, migratedStorage, type TestDb } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { check, get, insertTrusted, instance, TD, type Instance } from './support/trusted.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ago = (ms: number) => new Date(Date.now() - ms);

/** Results as a table → count map, for readable expectations. */
const counts = (results: CleanupResult[]) => Object.fromEntries(results.map((r) => [r.table, r.deleted]));
const ids = async (knex: Knex, table: string, column = 'id'): Promise<string[]> => ((await knex(table).select(column).orderBy(column)) as Array<Record<string, string>>).map((r) => String(r[column]));

async function otpCode(knex: Knex, tenantId: string, userId: string, deviceId: string, expiresAt: Date): Promise<void> {
  await knex('mfa_otp_codes').insert({ tenant_id: tenantId, device_id: deviceId, purpose: 'enrollment', user_id: userId, salt: Buffer.alloc(16, 1), code_hash: Buffer.alloc(32, 2), expires_at: expiresAt });
}

async function failures(knex: Knex, userId: string, row: { failures: number; updatedAgoMs: number; lockedUntil?: Date }): Promise<void> {
  await knex('mfa_verification_failures').insert({ tenant_id: 'acme', user_id: userId, failures: row.failures, updated_at: ago(row.updatedAgoMs), locked_at: row.lockedUntil ? ago(row.updatedAgoMs) : null, locked_until: row.lockedUntil ?? null });
}

/** A list envelope without its `timestamp`. */
const withoutTimestamp = (body: unknown): object => {
  const { timestamp, ...rest } = body as { timestamp: string };
  expect(timestamp).to.match(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  return rest;
};

describe('cleanupExpired (retention)', () => {
  let db: TestDb;
  /** Ids of the rows seeded, by what should become of them. */
  let seeded: Record<string, string>;

  beforeEach(async () => {
    db = await migratedStorage();
    const { knex } = db;
    seeded = {
      trustedLongAgo: await insertTrusted(knex, { tenantId: 'acme', userId: 'u1', trustedUntil: ago(2 * DAY), createdAt: ago(40 * DAY) }),
      trustedLongAgoOther: await insertTrusted(knex, { tenantId: 'other', userId: 'u1', trustedUntil: ago(3 * DAY), createdAt: ago(40 * DAY) }),
      trustedRecently: await insertTrusted(knex, { tenantId: 'acme', userId: 'u1', trustedUntil: ago(HOUR), createdAt: ago(30 * DAY) }),
      trustedLive: await insertTrusted(knex, { tenantId: 'acme', userId: 'u1', trustedUntil: new Date(Date.now() + DAY) }),
      abandoned: await insertDevice(knex, { tenantId: 'acme', userId: 'u2', verified: false }),
      abandonedRecently: await insertDevice(knex, { tenantId: 'acme', userId: 'u3', verified: false }),
      pending: await insertDevice(knex, { tenantId: 'acme', userId: 'u4', verified: false }),
      verified: await insertDevice(knex, { tenantId: 'acme', userId: 'u5', method: 'sms', verified: true }),
    };
    await knex('mfa_devices').where({ id: seeded.abandoned }).update({ expires_at: ago(2 * DAY) });
    await knex('mfa_devices').where({ id: seeded.abandonedRecently }).update({ expires_at: ago(HOUR) });
    await knex('mfa_devices').where({ id: seeded.pending }).update({ expires_at: new Date(Date.now() + HOUR) });
    // A verified device keeps an expiry from its enrolment here: verification, not the date, is what keeps it.
    await knex('mfa_devices').where({ id: seeded.verified }).update({ expires_at: ago(5 * DAY) });
    await otpCode(knex, 'acme', 'u2', seeded.abandoned!, ago(2 * DAY)); // goes with its device
    await otpCode(knex, 'acme', 'u4', seeded.pending!, new Date(Date.now() + 600_000));
    await otpCode(knex, 'acme', 'u5', seeded.verified!, ago(2 * DAY));
    await failures(knex, 'lock-over', { failures: 5, updatedAgoMs: 2 * DAY, lockedUntil: ago(2 * DAY - 900_000) });
    await failures(knex, 'lock-running', { failures: 5, updatedAgoMs: 2 * DAY, lockedUntil: new Date(Date.now() + DAY) });
    await failures(knex, 'counting', { failures: 3, updatedAgoMs: 2 * DAY }); // a cool-down of up to 7 days may still count these
    await failures(knex, 'forgotten', { failures: 3, updatedAgoMs: 8 * DAY });
    await knex('trusted_device_generations').insert({ tenant_id: 'acme', user_id: 'u1', generation: 7 });
  });
  afterEach(async () => {
    await db.drop();
  });

  it('keepLastSeconds: deletes only what expired before the cutoff, in every tenant; a second run finds nothing', async () => {
    const { knex } = db;
    const results = await cleanupExpired({ knex, keepLastSeconds: 86_400 });
    expect(results.map((r) => r.table)).to.deep.equal([...CLEANUP_TABLES]);
    expect(counts(results)).to.deep.equal({ trusted_devices: 2, mfa_devices: 1, mfa_otp_codes: 1, mfa_verification_failures: 2 });

    expect(await ids(knex, 'trusted_devices')).to.have.members([seeded.trustedRecently, seeded.trustedLive]);
    expect(await ids(knex, 'mfa_devices')).to.have.members([seeded.abandonedRecently, seeded.pending, seeded.verified]);
    expect(await ids(knex, 'mfa_otp_codes', 'device_id')).to.deep.equal([seeded.pending]);
    expect(await ids(knex, 'mfa_verification_failures', 'user_id')).to.have.members(['lock-running', 'counting']);
    // The generation is what the cache believes entries by: never swept.
    expect(await knex('trusted_device_generations').where({ user_id: 'u1' }).first()).to.include({ generation: '7' });

    expect(counts(await cleanupExpired({ knex, keepLastSeconds: 86_400 }))).to.deep.equal({ trusted_devices: 0, mfa_devices: 0, mfa_otp_codes: 0, mfa_verification_failures: 0 });
  });

  it('by default (keep nothing): deletes everything past its expiry, and keeps everything live', async () => {
    const { knex } = db;
    expect(counts(await cleanupExpired({ knex }))).to.deep.equal({ trusted_devices: 3, mfa_devices: 2, mfa_otp_codes: 1, mfa_verification_failures: 2 });
    expect(await ids(knex, 'trusted_devices')).to.deep.equal([seeded.trustedLive]);
    expect(await ids(knex, 'mfa_devices')).to.have.members([seeded.pending, seeded.verified]);
    expect(await ids(knex, 'mfa_otp_codes', 'device_id')).to.deep.equal([seeded.pending]);
    // A lock still running, and failures a long cool-down may still count, outlive any keepLast.
    expect(await ids(knex, 'mfa_verification_failures', 'user_id')).to.have.members(['lock-running', 'counting']);
  });

  it('keeps everything with the longest keepLastSeconds (100 years), which the lockout sweep takes as an interval too', async () => {
    expect(counts(await cleanupExpired({ knex: db.knex, keepLastSeconds: 100 * 365 * 86_400 }))).to.deep.equal({ trusted_devices: 0, mfa_devices: 0, mfa_otp_codes: 0, mfa_verification_failures: 0 });
  });

  it('now: the cutoff is taken from the given clock', async () => {
    const results = await cleanupExpired({ knex: db.knex, now: ago(2.5 * DAY) });
    // Only the trusted device of tenant "other" had expired by then (3 days ago); the counters are on the database clock.
    expect(counts(results)).to.include({ trusted_devices: 1, mfa_devices: 0, mfa_otp_codes: 0 });
    expect(await ids(db.knex, 'trusted_devices')).not.to.include(seeded.trustedLongAgoOther);
  });

  it('a row being renewed at that moment is skipped without waiting, and stays trusted', async () => {
    const { knex } = db;
    const renew = await knex.transaction();
    try {
      await renew('trusted_devices').where({ id: seeded.trustedLongAgo }).update({ trusted_until: new Date(Date.now() + DAY) });
      // SKIP LOCKED: the sweep neither waits for the renewal nor deletes the row it holds.
      const results = await Promise.race([
        cleanupExpired({ knex }),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the sweep waited for the locked row')), 5_000)),
      ]);
      expect(counts(results)).to.include({ trusted_devices: 2 });
      await renew.commit();
    } finally {
      if (!renew.isCompleted()) await renew.rollback();
    }
    expect(await ids(knex, 'trusted_devices')).to.have.members([seeded.trustedLongAgo, seeded.trustedLive]);
  });

  it('two sweeps at once over many rows delete each row exactly once, in batches', async () => {
    const { knex } = db;
    await knex.raw(
      `insert into trusted_devices (tenant_id, id, user_id, fingerprint, trusted_until)
       select 'acme', gen_random_uuid(), 'bulk-' || (i % 50), 'fp-' || i, now() - interval '1 day' from generate_series(1, 2500) as i`,
    );
    const [a, b] = await Promise.all([cleanupExpired({ knex, batchSize: 97 }), cleanupExpired({ knex, batchSize: 97 })]);
    expect(counts(a).trusted_devices! + counts(b).trusted_devices!).to.equal(2503);
    expect(await ids(knex, 'trusted_devices')).to.deep.equal([seeded.trustedLive]);
  });

  it('finds the expired rows through the expiry index when most rows are live (not a scan of the table)', async () => {
    const { knex } = db;
    await knex.raw(
      `insert into trusted_devices (tenant_id, id, user_id, fingerprint, trusted_until)
       select 'acme', gen_random_uuid(), 'live-' || (i % 5000), 'fp-' || i, now() + interval '30 days' from generate_series(1, 50000) as i`,
    );
    await knex.raw('analyze trusted_devices');
    const plan = await knex.raw<{ rows: Array<{ 'QUERY PLAN': string }> }>('explain select ctid from trusted_devices where trusted_until <= ? limit 1000 for update skip locked', [new Date()]);
    expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).to.contain('trusted_devices_expiry_idx');
  });

  it('checks its options', async () => {
    const { knex } = db;
    const refused = async (options: Record<string, unknown>, message: RegExp) => {
      const err = await cleanupExpired(options as never).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(TypeError);
      expect((err as Error).message).to.match(message);
    };
    await refused({}, /needs \{ knex \}/);
    await refused({ knex, keepLastSeconds: -1 }, /keepLastSeconds/);
    await refused({ knex, keepLastSeconds: 1.5 }, /keepLastSeconds/);
    await refused({ knex, keepLastSeconds: 101 * 365 * 86_400 }, /keepLastSeconds/);
    await refused({ knex, batchSize: 0 }, /batchSize/);
    await refused({ knex, batchSize: '10' }, /batchSize/);
    await refused({ knex, now: new Date('nope') }, /now/);
    // Nothing was deleted by the refused calls.
    expect(await knex('trusted_devices').count({ n: '*' }).first()).to.deep.equal({ n: '4' });
  });
});

describe('cleanupExpired through the internal API', () => {
  let db: FreshDatabase;
  let svc: Instance;

  before(async () => {
    db = await freshDatabase();
    await knexStorage({ knex: db.knex }).migrate();
    svc = instance(db.url, undefined);
  });
  after(async () => {
    await svc.destroy();
    await db.drop();
  });

  it('changes no answer: the check and the list are the same before and after; include_expired loses the swept rows', async () => {
    const expired = await insertTrusted(db.knex, { tenantId: 'acme', userId: 'amy', fingerprint: 'old-laptop', trustedUntil: ago(DAY) });
    const live = await insertTrusted(db.knex, { tenantId: 'acme', userId: 'amy', fingerprint: 'phone' });

    const before = {
      old: (await check(svc.app, 'amy', 'old-laptop')).body as unknown,
      phone: (await check(svc.app, 'amy', 'phone')).body as unknown,
      list: withoutTimestamp((await get(svc.app, `${TD}?user_id=amy`)).body),
    };
    const all = await get(svc.app, `${TD}?user_id=amy&include_expired=true`);
    expect(all.status).to.equal(200);
    expect((all.body as { items: Array<{ id: string }> }).items.map((d) => d.id)).to.have.members([expired, live]);
    expect(before.old).to.deep.include({ trusted: false });
    expect(before.phone).to.deep.include({ trusted: true });

    expect(counts(await cleanupExpired({ knex: db.knex }))).to.include({ trusted_devices: 1 });

    expect((await check(svc.app, 'amy', 'old-laptop')).body).to.deep.equal(before.old);
    expect((await check(svc.app, 'amy', 'phone')).body).to.deep.equal(before.phone);
    // The envelope's `timestamp` is the moment of the answer (seed 000), to the second: the rest must be the same.
    expect(withoutTimestamp((await get(svc.app, `${TD}?user_id=amy`)).body)).to.deep.equal(before.list);
    const after = await get(svc.app, `${TD}?user_id=amy&include_expired=true`);
    expect((after.body as { items: Array<{ id: string }>; total: number }).items.map((d) => d.id)).to.deep.equal([live]);
  });
});

describe('npm run cleanup', () => {
  let db: FreshDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    await db.drop();
  });

  const run = (env: Record<string, string>) =>
    promisify(execFile)(process.execPath, ['--import', 'tsx', path.resolve('scripts/cleanup.ts')], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );

  it('uses DATABASE_URL and CLEANUP_KEEP_LAST, prints counts per table; refuses bad settings with exit 2', async function () {
    this.timeout(120_000);
    let res = await run({ DATABASE_URL: db.url });
    expect(res.code, res.out).to.equal(0);
    expect(res.out).to.contain('no kit tables found');

    await knexStorage({ knex: db.knex }).migrate();
    await insertTrusted(db.knex, { tenantId: 'acme', userId: 'u', trustedUntil: ago(2 * DAY) });
    await insertTrusted(db.knex, { tenantId: 'acme', userId: 'u', trustedUntil: ago(HOUR) });

    res = await run({ DATABASE_URL: db.url, CLEANUP_KEEP_LAST: '1d' });
    expect(res.code, res.out).to.equal(0);
    expect(res.out).to.contain('trusted_devices: 1 deleted').and.contain('mfa_devices: 0 deleted');
    res = await run({ DATABASE_URL: db.url, CLEANUP_KEEP_LAST: '30m' });
    expect(res.out).to.contain('trusted_devices: 1 deleted');

    res = await run({ DATABASE_URL: db.url, CLEANUP_KEEP_LAST: '99999d' });
    expect(res.code, res.out).to.equal(2);
    expect(res.out).to.contain('keepLastSeconds must be a whole number of seconds from 0');
    for (const bad of ['abc', '-1', '1w', '1.5h', '']) {
      res = await run({ DATABASE_URL: db.url, CLEANUP_KEEP_LAST: bad });
      expect(res.code, `${bad}: ${res.out}`).to.equal(2);
      expect(res.out).to.contain('CLEANUP_KEEP_LAST');
    }
    res = await run({ DATABASE_URL: db.url, CLEANUP_BATCH_SIZE: 'x' });
    expect(res.code, res.out).to.equal(2);
    expect(res.out).to.contain('batchSize');
    res = await run({});
    expect(res.code).to.equal(2);
    expect(res.out).to.contain('DATABASE_URL is not set');
  });

  it('a database it cannot reach: exit 1, no password and no SQL in the output', async function () {
    this.timeout(60_000);
    const res = await run({ DATABASE_URL: 'postgres://sweeper:s3cret-pass@127.0.0.1:1/mfa' });
    expect(res.code).to.equal(1);
    expect(res.out).to.contain('cleanup failed: ECONNREFUSED');
    expect(res.out).not.to.contain('s3cret-pass');
    expect(res.out.toLowerCase()).not.to.contain('select');
  });
});
