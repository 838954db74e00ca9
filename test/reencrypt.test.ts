/** Key rotation on real Postgres: `reencrypt()` and `npm run reencrypt` move sealed rows to the active key, re-runnably and without losing any. */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { aad, keyRing, knexStorage, mismatchedKeyIds, reencrypt, silentLogger, type KeyRing, type Logger } from '../index.js';
import { ENCRYPTION_KEYS } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';

const [NEW_KEY, OLD_KEY] = ENCRYPTION_KEYS as [string, string]; // k2 (active), k1
const oldOnly = keyRing([OLD_KEY]);
const rotated = keyRing([NEW_KEY, OLD_KEY]);
const newOnly = keyRing([NEW_KEY]);
const stranger = keyRing(['k9:' + Buffer.alloc(32, 9).toString('base64')]);

interface DeviceRow {
  tenant_id: string;
  user_id: string;
  id: string;
  secret_key_id: string;
  secret_ciphertext: Buffer;
}

async function insertSealed(knex: Knex, sealer: KeyRing, tenantId: string, userId: string, secret: string): Promise<string> {
  const id = randomUUID();
  const sealed = sealer.seal(secret, aad(tenantId, userId, id));
  await knex('mfa_devices').insert({ tenant_id: tenantId, id, user_id: userId, method: 'totp', device_name: 'Phone', secret_key_id: sealed.keyId, secret_ciphertext: sealed.data, totp_algorithm: 'SHA1', totp_digits: 6, totp_period: 30 });
  return id;
}

async function secrets(knex: Knex, opener: KeyRing): Promise<Map<string, { keyId: string; secret: string }>> {
  const rows = await knex<DeviceRow>('mfa_devices').select('tenant_id', 'user_id', 'id', 'secret_key_id', 'secret_ciphertext');
  return new Map(rows.map((r) => [r.id, { keyId: r.secret_key_id, secret: opener.openText({ keyId: r.secret_key_id, data: r.secret_ciphertext }, aad(r.tenant_id, r.user_id, r.id)) }]));
}

describe('reencrypt (key rotation)', () => {
  let db: FreshDatabase;
  const expected = new Map<string, string>();

  beforeEach(async () => {
    db = await freshDatabase();
    await knexStorage({ knex: db.knex }).migrate();
    expected.clear();
    for (let i = 0; i < 23; i++) {
      const tenant = i % 3 === 0 ? 'other' : 'acme';
      const user = `user-${i % 4}`;
      const secret = `SECRET${i}`.padEnd(32, 'A');
      expected.set(await insertSealed(db.knex, oldOnly, tenant, user, secret), secret);
    }
    for (let i = 0; i < 3; i++) expected.set(await insertSealed(db.knex, rotated, 'acme', 'fresh', `FRESH${i}`), `FRESH${i}`);
  });
  afterEach(async () => {
    await db.drop();
  });

  it('moves every row sealed with an old key to the active key; every secret still opens, now without the old key', async () => {
    const results = await reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 4, logger: silentLogger });
    expect(results).to.deep.equal([{ table: 'mfa_devices', rows: 23, failed: 0, remaining: 0 }, { table: 'sync_records', rows: 0, failed: 0, remaining: 0 }]);
    const after = await secrets(db.knex, newOnly);
    expect(after.size).to.equal(26);
    for (const [id, { keyId, secret }] of after) {
      expect(keyId).to.equal('k2');
      expect(secret).to.equal(expected.get(id));
    }
  });

  it('a second run is a no-op', async () => {
    await reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 5, logger: silentLogger });
    const before = await db.knex<DeviceRow>('mfa_devices').select('id', 'secret_ciphertext');
    expect(await reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 5, logger: silentLogger })).to.deep.equal([{ table: 'mfa_devices', rows: 0, failed: 0, remaining: 0 }, { table: 'sync_records', rows: 0, failed: 0, remaining: 0 }]);
    const again = await db.knex<DeviceRow>('mfa_devices').select('id', 'secret_ciphertext');
    const byId = new Map(again.map((r) => [r.id, r.secret_ciphertext]));
    for (const r of before) expect(byId.get(r.id)?.equals(r.secret_ciphertext)).to.equal(true);
  });

  it('two runs at once move each row exactly once and lose nothing', async () => {
    const [a, b] = await Promise.all([
      reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 3, logger: silentLogger }),
      reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 3, logger: silentLogger }),
    ]);
    expect(a[0]!.rows + b[0]!.rows).to.equal(23);
    const after = await secrets(db.knex, newOnly);
    for (const [id, { secret }] of after) expect(secret).to.equal(expected.get(id));
  });

  it('leaves alone, counts and logs (by id only) a row whose key is not in the ring, and moves the rest', async () => {
    const lost = await insertSealed(db.knex, stranger, 'acme', 'lost', 'LOSTSECRETLOSTSECRET');
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (obj, msg) => warnings.push(JSON.stringify({ ...obj, msg })) };
    const results = await reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 4, logger });
    expect(results).to.deep.equal([{ table: 'mfa_devices', rows: 23, failed: 1, remaining: 1 }, { table: 'sync_records', rows: 0, failed: 0, remaining: 0 }]);
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.contain(lost).and.contain('k9').and.not.contain('LOSTSECRET');
    const row = (await db.knex('mfa_devices').where({ id: lost }).first()) as { secret_key_id: string };
    expect(row.secret_key_id).to.equal('k9');
  });

  it('counts as remaining a row an instance still on the old ring wrote during the run, which a second run moves', async () => {
    // The late row is sealed now, parked, and put in by a trigger on the run's first write: a tenant id before every
    // other, so the walk (in primary-key order) is past it already, as past a row an old instance writes meanwhile.
    const late = await insertSealed(db.knex, oldOnly, 'aaa', 'late', 'LATESECRET'.padEnd(32, 'A'));
    await db.knex.raw('create table late_rows as select * from mfa_devices where tenant_id = ?', ['aaa']);
    await db.knex('mfa_devices').where({ tenant_id: 'aaa' }).delete();
    await db.knex.raw(`
      create function put_late_rows() returns trigger language plpgsql as $$
      begin insert into mfa_devices select * from late_rows; delete from late_rows; return null; end $$;
      create trigger late_rows after update on mfa_devices for each statement execute function put_late_rows();`);
    const results = await reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 4, logger: silentLogger });
    expect(results[0]).to.deep.equal({ table: 'mfa_devices', rows: 23, failed: 0, remaining: 1 });
    expect(((await db.knex('mfa_devices').where({ id: late }).first()) as { secret_key_id: string }).secret_key_id).to.equal('k1');
    await db.knex.raw('drop trigger late_rows on mfa_devices');
    expect((await reencrypt({ knex: db.knex, keyRing: rotated, logger: silentLogger }))[0]).to.deep.equal({ table: 'mfa_devices', rows: 1, failed: 0, remaining: 0 });
    expect((await secrets(db.knex, newOnly)).get(late)?.secret).to.equal('LATESECRET'.padEnd(32, 'A'));
  });

  it('a row an instance on the old ring rewrites between the run reading it and writing it keeps that write (the run leaves it)', async () => {
    // The last row of the walk is rewritten (a new secret, sealed with the old key) by a trigger on the run's first write:
    // after the run read the batch it is in, before it writes that row.
    const [row] = await db.knex<DeviceRow>('mfa_devices').where({ secret_key_id: 'k1' }).orderBy([{ column: 'tenant_id', order: 'desc' }, { column: 'id', order: 'desc' }]).limit(1);
    const rewritten = 'REWRITTEN'.padEnd(32, 'B');
    const sealed = oldOnly.seal(rewritten, aad(row!.tenant_id, row!.user_id, row!.id));
    await db.knex.raw('create table pending_write (id uuid, data bytea)');
    await db.knex('pending_write').insert({ id: row!.id, data: sealed.data });
    await db.knex.raw(`
      create function write_meanwhile() returns trigger language plpgsql as $$
      declare r record;
      begin
        for r in delete from pending_write returning * loop update mfa_devices set secret_ciphertext = r.data where id = r.id; end loop;
        return null;
      end $$;
      create trigger write_meanwhile after update on mfa_devices for each statement execute function write_meanwhile();`);
    const results = await reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 100, logger: silentLogger });
    expect(results[0]).to.deep.equal({ table: 'mfa_devices', rows: 22, failed: 0, remaining: 1 });
    expect((await secrets(db.knex, rotated)).get(row!.id)).to.deep.equal({ keyId: 'k1', secret: rewritten });
    await db.knex.raw('drop trigger write_meanwhile on mfa_devices');
    expect((await reencrypt({ knex: db.knex, keyRing: rotated, logger: silentLogger }))[0]).to.deep.equal({ table: 'mfa_devices', rows: 1, failed: 0, remaining: 0 });
    expect((await secrets(db.knex, newOnly)).get(row!.id)).to.deep.equal({ keyId: 'k2', secret: rewritten });
  });

  it('a ring without the old key cannot open the old rows before the rotation (the test can fail)', async () => {
    let failed = 0;
    const rows = await db.knex<DeviceRow>('mfa_devices').select('tenant_id', 'user_id', 'id', 'secret_key_id', 'secret_ciphertext');
    for (const r of rows) {
      try {
        newOnly.open({ keyId: r.secret_key_id, data: r.secret_ciphertext }, aad(r.tenant_id, r.user_id, r.id));
      } catch {
        failed += 1;
      }
    }
    expect(failed).to.equal(23);
  });

  it('mismatchedKeyIds: an id whose key opens none of its rows (the right id, another key), not one damaged row among good ones', async () => {
    expect(await mismatchedKeyIds(db.knex, rotated)).to.deep.equal([]);
    // k1 with another key: none of the 23 rows under k1 opens (3 tried); k2's rows still do.
    const wrongOld = keyRing([NEW_KEY, `k1:${Buffer.alloc(32, 7).toString('base64')}`]);
    expect(await mismatchedKeyIds(db.knex, wrongOld)).to.deep.equal([{ table: 'mfa_devices', keyId: 'k1', tried: 3 }]);
    // One damaged row under k2 among its three: k2 is still the right key.
    const [row] = await db.knex<DeviceRow>('mfa_devices').where({ secret_key_id: 'k2' }).limit(1);
    await db.knex('mfa_devices').where({ tenant_id: row!.tenant_id, id: row!.id }).update({ secret_ciphertext: Buffer.alloc(40, 1) });
    expect(await mismatchedKeyIds(db.knex, rotated)).to.deep.equal([]);
    // A key id with no rows is not judged.
    expect(await mismatchedKeyIds(db.knex, stranger)).to.deep.equal([]);
  });

  it('checks its options', async () => {
    for (const batchSize of [0, 1.5, 100_000]) {
      let caught: unknown;
      try {
        await reencrypt({ knex: db.knex, keyRing: rotated, batchSize, logger: silentLogger });
      } catch (err) {
        caught = err;
      }
      expect(caught, String(batchSize)).to.be.instanceOf(TypeError);
    }
  });

  it('npm run reencrypt: uses DATABASE_URL and MFA_ENCRYPTION_KEYS, prints counts and key ids, never a key', async function () {
    this.timeout(60_000);
    const run = (keys: string, args: string[] = [], env: Record<string, string> = {}) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', path.resolve('scripts/reencrypt.ts'), ...args], {
        env: { ...process.env, DATABASE_URL: db.url, MFA_ENCRYPTION_KEYS: keys, ...env },
      }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
    const keyMaterial = [NEW_KEY, OLD_KEY].map((k) => k.slice(3));

    // Without the old key nothing can move: non-zero exit, each row reported by id.
    let res = await run(NEW_KEY);
    expect(res.code).to.equal(1);
    expect(res.out).to.contain('mfa_devices: 0 re-encrypted, 23 failed');

    // A dry run counts what a run would move, by key id, and moves nothing; an argument it does not know runs nothing.
    res = await run(NEW_KEY, ['--dry-run']);
    expect(res.code, res.out).to.equal(0);
    expect(res.out).to.contain('mfa_devices: 23 on k1 (not in MFA_ENCRYPTION_KEYS: cannot open) to re-encrypt (dry run: nothing changed)');
    res = await run(`${NEW_KEY},${OLD_KEY}`, ['--dry-run']);
    expect(res.code, res.out).to.equal(0);
    expect(res.out).to.contain('mfa_devices: 23 on k1 to re-encrypt (dry run: nothing changed)');
    res = await run(`${NEW_KEY},${OLD_KEY}`, ['--dryrun']);
    expect(res.code).to.equal(2);
    expect(res.out).to.contain('unknown argument "--dryrun"');
    // `npm run reencrypt --dry-run`: npm keeps the flag, runs the tool without it and says so in its env.
    res = await run(`${NEW_KEY},${OLD_KEY}`, [], { npm_config_dry_run: 'true' });
    expect(res.code, res.out).to.equal(0);
    expect(res.out).to.contain('(dry run: nothing changed)');
    for (const batch of ['abc', '0', '10001', '50000']) {
      res = await run(`${NEW_KEY},${OLD_KEY}`, [], { REENCRYPT_BATCH_SIZE: batch });
      expect(res.code, batch).to.equal(2);
      expect(res.out).to.contain('REENCRYPT_BATCH_SIZE must be a whole number from 1 to 10000');
    }
    // A database it cannot reach: one line by the driver's code, no stack, no URL.
    res = await run(`${NEW_KEY},${OLD_KEY}`, [], { DATABASE_URL: 'postgres://someone:pa55word@127.0.0.1:1/none' });
    expect(res.code).to.equal(1);
    expect(res.out).to.contain('reencrypt failed: ECONNREFUSED').and.not.contain('pa55word').and.not.match(/\n\s+at /);
    expect(Number((await db.knex('mfa_devices').where({ secret_key_id: 'k1' }).count({ n: '*' }).first())?.n)).to.equal(23);

    res = await run(`${NEW_KEY},${OLD_KEY}`);
    expect(res.code, res.out).to.equal(0);
    expect(res.out).to.contain('active key: k2').and.contain('mfa_devices: 23 re-encrypted, 0 failed');
    for (const k of keyMaterial) expect(res.out).not.to.contain(k);

    res = await run('k1:tooshort');
    expect(res.code).to.equal(2);
    expect(res.out).to.contain('32 bytes');
  });
});

describe('reencrypt of sync_records', () => {
  let db: FreshDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('also walks sync_records (vault_* columns) when that table exists, and passes over tables that do not', async () => {
    // A bare database with only a sync_records table of the agreed shape, so this holds whatever migrations add it.
    await db.knex.schema.createTable('sync_records', (t) => {
      t.text('tenant_id').notNullable();
      t.text('id').notNullable();
      t.text('user_id').notNullable();
      t.text('vault_key_id').notNullable();
      t.binary('vault_ciphertext').notNullable();
      t.primary(['tenant_id', 'id']);
    });
    const plain = new Map<string, string>();
    for (let i = 0; i < 7; i++) {
      const id = `devsync_${i}`;
      const json = JSON.stringify([{ secret: `VAULT${i}`, issuer: 'Example' }]);
      const sealed = oldOnly.seal(json, aad('acme', `user-${i % 2}`, id));
      await db.knex('sync_records').insert({ tenant_id: 'acme', id, user_id: `user-${i % 2}`, vault_key_id: sealed.keyId, vault_ciphertext: sealed.data });
      plain.set(id, json);
    }
    expect(await reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 2, logger: silentLogger })).to.deep.equal([{ table: 'sync_records', rows: 7, failed: 0, remaining: 0 }]);
    const rows = (await db.knex('sync_records').select('*')) as Array<{ tenant_id: string; id: string; user_id: string; vault_key_id: string; vault_ciphertext: Buffer }>;
    for (const r of rows) {
      expect(r.vault_key_id).to.equal('k2');
      expect(newOnly.openText({ keyId: r.vault_key_id, data: r.vault_ciphertext }, aad(r.tenant_id, r.user_id, r.id))).to.equal(plain.get(r.id));
    }
  });
});
