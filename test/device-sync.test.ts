/** Seed 001 / CONTRACT.md §6 over HTTP on real Postgres: `deviceSyncRouter` at /mfa/devices/sync. */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { expect } from 'chai';
import express from 'express';
import jwt from 'jsonwebtoken';
import { knex as createKnex, type Knex } from 'knex';
import request from 'supertest';
import { deviceSyncRouter, keyRing, knexStorage, reencrypt, silentLogger as quiet, type KeyRing, type KnexStorage, type Logger } from '../index.js';
import { ENCRYPTION_KEYS, ring } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { lockSyncRecords } from '../storage/knex/user-locks.js';

const BASE = '/mfa/devices/sync';
const JWT_SECRET = 'device-sync-test-secret-0123456789abcdef';
const SEED_KEYS = ['created_at', 'device_fingerprint', 'device_name', 'id', 'last_sync_at', 'sync_token', 'totp_devices'];
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const TOKEN = /^[0-9a-f]{32}$/;

/** A key the rotation test moves vaults to; the main app can open it too, so test order does not matter. */
const K3 = `k3:${randomBytes(32).toString('base64')}`;
const appRing = keyRing([...ENCRYPTION_KEYS, K3]);

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** Every entry secret any test sends, for the dump and log checks. */
const secretsSent = new Set<string>();
function newSecret(length = 32): string {
  const bytes = randomBytes(length);
  const secret = Array.from(bytes, (b) => B32[b % 32]).join('');
  secretsSent.add(secret);
  return secret;
}

const bearer = (sub: string, tenant = 'acme') => `Bearer ${jwt.sign({ sub, tenant_id: tenant }, JWT_SECRET, { algorithm: 'HS256', expiresIn: '1h' })}`;

/** A logger that keeps every line, to show that no vault content is ever logged. */
const logLines: string[] = [];
const recordingLogger: Logger = {
  debug: (obj, msg) => logLines.push(JSON.stringify([obj, msg])),
  info: (obj, msg) => logLines.push(JSON.stringify([obj, msg])),
  warn: (obj, msg) => logLines.push(JSON.stringify([obj, msg])),
  error: (obj, msg) => logLines.push(JSON.stringify([obj, msg])),
};

function makeApp(storage: KnexStorage, options: { keyRing?: KeyRing; maxEntries?: number; maxVaultBytes?: number; maxRecords?: number; bodyLimit?: string } = {}): express.Express {
  const app = express();
  const { keyRing: ring = appRing, ...limits } = options;
  app.use(BASE, deviceSyncRouter({ storage, keyRing: ring, jwt: { secret: JWT_SECRET }, logger: recordingLogger, ...limits }));
  return app;
}

interface Entry {
  secret: string;
  issuer?: string;
  account?: string;
  digits?: number;
  period?: number;
  algorithm?: string;
}

describe('deviceSyncRouter (seed 001, CONTRACT.md §6)', function () {
  let db: FreshDatabase;
  let storage: KnexStorage;
  let app: express.Express;
  let fpCounter = 0;
  const fingerprint = () => `fp-${++fpCounter}-${randomBytes(4).toString('hex')}`;

  before(async function () {
    this.timeout(60_000);
    db = await freshDatabase();
    storage = knexStorage({ knex: db.knex });
    await storage.migrate();
    app = makeApp(storage);
  });
  after(async function () {
    await db?.drop();
  });

  const post = (target: express.Express | Server, body: unknown, user = 'alice', tenant = 'acme') =>
    request(target).post(BASE).set('Authorization', bearer(user, tenant)).send(body as object);
  const getList = (user = 'alice', tenant = 'acme', query = '') => request(app).get(`${BASE}${query}`).set('Authorization', bearer(user, tenant));
  const getOne = (id: string, user = 'alice', tenant = 'acme') => request(app).get(`${BASE}/${id}`).set('Authorization', bearer(user, tenant));
  const del = (id: string, user = 'alice', tenant = 'acme') => request(app).delete(`${BASE}/${id}`).set('Authorization', bearer(user, tenant));

  /** Creates a record and returns the 201 body. */
  async function create(entries: Entry[] = [{ secret: newSecret() }], user = 'alice', tenant = 'acme', fp = fingerprint()) {
    const res = await post(app, { device_fingerprint: fp, device_name: 'Pixel 8', totp_devices: entries }, user, tenant);
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    return res.body as Record<string, string>;
  }

  describe('authentication', function () {
    it('answers 401 Problem JSON without a token, with a token signed by another key, or an expired one', async function () {
      let res = await request(app).get(BASE);
      expect(res.status).to.equal(401);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      const forged = jwt.sign({ sub: 'alice', tenant_id: 'acme' }, 'another-secret-another-secret-0000', { algorithm: 'HS256' });
      res = await request(app).get(BASE).set('Authorization', `Bearer ${forged}`);
      expect(res.status).to.equal(401);
      const expired = jwt.sign({ sub: 'alice', tenant_id: 'acme', exp: Math.floor(Date.now() / 1000) - 60 }, JWT_SECRET, { algorithm: 'HS256' });
      res = await request(app).get(BASE).set('Authorization', `Bearer ${expired}`);
      expect(res.status).to.equal(401);
      res = await request(app).post(BASE).send({ device_fingerprint: 'x', device_name: 'x', totp_devices: [] });
      expect(res.status).to.equal(401);
    });

    it('answers 403 when X-Tenant-ID disagrees with the token tenant', async function () {
      const res = await getList().set('X-Tenant-ID', 'globex');
      expect(res.status).to.equal(403);
    });
  });

  describe('create, read, update, delete', function () {
    it('creates a record: 201 with the seed 001 shape, a devsync_ id, a new sync_token, totp_devices as a JSON string, no-store', async function () {
      const fp = fingerprint();
      const res = await post(app, { device_fingerprint: fp, device_name: 'iPhone 15', totp_devices: '[{"secret":"JBSWY3DPEHPK3PXP"}]' });
      secretsSent.add('JBSWY3DPEHPK3PXP');
      expect(res.status).to.equal(201);
      expect(res.headers['cache-control']).to.equal('no-store');
      expect(res.headers['content-type']).to.match(/^application\/json/);
      expect(Object.keys(res.body).sort()).to.deep.equal(SEED_KEYS);
      expect(res.body.id).to.match(/^devsync_[0-9a-f]{32}$/);
      expect(res.headers.location).to.equal(`${BASE}/${res.body.id}`);
      expect(res.body).to.include({ device_fingerprint: fp, device_name: 'iPhone 15', totp_devices: '[{"secret":"JBSWY3DPEHPK3PXP"}]' });
      expect(res.body.sync_token).to.match(TOKEN);
      expect(res.body.created_at).to.match(ISO);
      expect(res.body.last_sync_at).to.equal(res.body.created_at);

      const one = await getOne(res.body.id);
      expect(one.status).to.equal(200);
      expect(one.headers['cache-control']).to.equal('no-store');
      expect(one.body).to.deep.equal(res.body);
    });

    it('lists the caller’s records in the seed 001 envelope, decrypted, newest first, no-store', async function () {
      const user = `lister-${randomBytes(3).toString('hex')}`;
      const a = await create([{ secret: newSecret(), issuer: 'GitHub', account: 'alice@example.com', digits: 6, period: 30, algorithm: 'SHA1' }], user);
      const b = await create([{ secret: newSecret() }, { secret: newSecret(), issuer: 'AWS' }], user);
      const res = await getList(user);
      expect(res.status).to.equal(200);
      expect(res.headers['cache-control']).to.equal('no-store');
      expect(Object.keys(res.body).sort()).to.deep.equal(['code', 'items', 'message', 'pagination', 'timestamp', 'total']);
      expect(res.body).to.include({ code: 0, message: 'success', total: 2 });
      expect(res.body.timestamp).to.match(ISO);
      expect(res.body.pagination).to.deep.equal({ page: 1, page_size: 20, total: 2, total_pages: 1, has_next: false, has_prev: false });
      expect(res.body.items).to.deep.equal([b, a]);
      for (const item of res.body.items as Array<Record<string, unknown>>) {
        expect(Object.keys(item).sort()).to.deep.equal(SEED_KEYS);
        expect(item.totp_devices).to.be.a('string');
      }
      expect(JSON.parse(a.totp_devices!)).to.deep.equal([{ secret: JSON.parse(a.totp_devices!)[0].secret, issuer: 'GitHub', account: 'alice@example.com', digits: 6, period: 30, algorithm: 'SHA1' }]);
    });

    it('orders by created_at descending, ties by id descending, and pages without overlap', async function () {
      const user = `pager-${randomBytes(3).toString('hex')}`;
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await create(undefined, user)).id!);
      // Three of them created in the same instant: the id decides.
      await db.knex('sync_records').whereIn('id', ids.slice(0, 3)).update({ created_at: new Date(Date.UTC(2026, 4, 21, 12)) });
      const expected = [ids[4], ids[3], ...ids.slice(0, 3).sort().reverse()];
      const p1 = await getList(user, 'acme', '?page=1&page_size=2');
      const p2 = await getList(user, 'acme', '?page=2&page_size=2');
      const p3 = await getList(user, 'acme', '?page=3&page_size=2');
      const got = [...p1.body.items, ...p2.body.items, ...p3.body.items].map((i: { id: string }) => i.id);
      expect(got).to.deep.equal(expected);
      expect(p2.body.pagination).to.deep.equal({ page: 2, page_size: 2, total: 5, total_pages: 3, has_next: true, has_prev: true });
      // Past the last page: no items, and still the whole count.
      const past = await getList(user, 'acme', '?page=4&page_size=2');
      expect(past.body.items).to.deep.equal([]);
      expect(past.body.pagination).to.deep.equal({ page: 4, page_size: 2, total: 5, total_pages: 3, has_next: false, has_prev: true });
      const bad = await getList(user, 'acme', '?page_size=101');
      expect(bad.status).to.equal(400);
      expect(bad.body.errors[0].field).to.equal('page_size');
    });

    it('updates with the current sync_token: 200, same id and created_at, a new token, the new vault; arrays come back as the canonical JSON string', async function () {
      const first = await create();
      const secret = newSecret();
      const res = await post(app, {
        device_fingerprint: first.device_fingerprint,
        device_name: 'Pixel 8 Pro',
        sync_token: first.sync_token,
        totp_devices: [{ algorithm: 'SHA256', secret, digits: 8, issuer: 'Example' }],
      });
      expect(res.status).to.equal(200);
      expect(res.headers['cache-control']).to.equal('no-store');
      expect(res.body.id).to.equal(first.id);
      expect(res.body.created_at).to.equal(first.created_at);
      expect(res.body.sync_token).to.match(TOKEN).and.not.equal(first.sync_token);
      expect(res.body.device_name).to.equal('Pixel 8 Pro');
      expect(res.body.totp_devices).to.equal(`[{"secret":"${secret}","issuer":"Example","digits":8,"algorithm":"SHA256"}]`);
      expect(Date.parse(res.body.last_sync_at)).to.be.at.least(Date.parse(first.last_sync_at!));
      expect((await getOne(first.id!)).body).to.deep.equal(res.body);
    });

    it('accepts an empty vault and a null sync_token on create', async function () {
      const res = await post(app, { device_fingerprint: fingerprint(), device_name: 'Empty', totp_devices: '[]', sync_token: null });
      expect(res.status).to.equal(201);
      expect(res.body.totp_devices).to.equal('[]');
    });

    it('deletes: 204, then 404 on get and on a second delete; the fingerprint can be created again', async function () {
      const rec = await create();
      let res = await del(rec.id!);
      expect(res.status).to.equal(204);
      expect(res.text).to.equal('');
      expect(res.headers['cache-control']).to.equal('no-store');
      res = await getOne(rec.id!);
      expect(res.status).to.equal(404);
      expect(res.body).to.include({ status: 404, code: 40400004 });
      res = await del(rec.id!);
      expect(res.status).to.equal(404);
      const again = await post(app, { device_fingerprint: rec.device_fingerprint, device_name: 'again', totp_devices: [] });
      expect(again.status).to.equal(201);
      expect(again.body.id).not.to.equal(rec.id);
    });

    it('deletes only the version named by ?sync_token=: a stale one → 409 with the current token and id, and the record stays', async function () {
      const first = await create();
      const v2 = await post(app, { device_fingerprint: first.device_fingerprint, device_name: 'Pixel 8', sync_token: first.sync_token, totp_devices: [{ secret: newSecret() }] });
      expect(v2.status).to.equal(200);
      const delWith = (id: string, query: string) => request(app).delete(`${BASE}/${id}?${query}`).set('Authorization', bearer('alice'));

      let res = await delWith(first.id!, `sync_token=${first.sync_token}`);
      expect(res.status).to.equal(409);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      expect(res.body).to.include({ status: 409, code: 40900003, sync_token: v2.body.sync_token, id: first.id });
      expect((await getOne(first.id!)).body).to.deep.equal(v2.body);

      // A NUL (Postgres refuses it in a text value: was a 500) is a malformed token, in the query as in a body.
      for (const query of ['sync_token=', `sync_token=${'a'.repeat(129)}`, 'sync_token=%00', `sync_token=${v2.body.sync_token}%00`, `sync_token=${v2.body.sync_token}&sync_token=${v2.body.sync_token}`]) {
        res = await delWith(first.id!, query);
        expect(res.status, query).to.equal(400);
        expect(res.body.errors?.[0]?.field, query).to.equal('sync_token');
      }
      // Another user's token for the same id changes nothing either: 404, as without one.
      expect((await request(app).delete(`${BASE}/${first.id}?sync_token=${v2.body.sync_token}`).set('Authorization', bearer('bob'))).status).to.equal(404);
      expect((await getOne(first.id!)).body).to.deep.equal(v2.body);

      res = await delWith(first.id!, `sync_token=${v2.body.sync_token}`);
      expect(res.status).to.equal(204);
      expect((await getOne(first.id!)).status).to.equal(404);
      // Gone: 404 with or without a token.
      expect((await delWith(first.id!, `sync_token=${v2.body.sync_token}`)).status).to.equal(404);
    });

    it("a write's condition spelt otherwise (syncToken, SYNC_TOKEN) or sent in the query is a 400 and writes nothing (was: a deleted record made again)", async function () {
      const first = await create();
      expect((await del(first.id!)).status).to.equal(204);
      const again = { device_fingerprint: first.device_fingerprint, device_name: 'again', totp_devices: [] };
      // As sent: the record is gone, so a write on the token read before is a 409, not a new record.
      expect((await post(app, { ...again, sync_token: first.sync_token })).status).to.equal(409);
      for (const name of ['syncToken', 'SYNC_TOKEN', 'sync-token', 'SyncToken', 'last_sync_token', 'sync_tokens']) {
        const res = await post(app, { ...again, [name]: first.sync_token });
        expect(res.status, name).to.equal(400);
        expect(res.body.errors, name).to.deep.equal([{ field: '(body)', code: 'unknown', description: res.body.detail }]);
      }
      for (const query of [`sync_token=${encodeURIComponent(first.sync_token!)}`, `syncToken=${encodeURIComponent(first.sync_token!)}`]) {
        const res = await request(app).post(`${BASE}?${query}`).set('Authorization', bearer('alice')).send(again);
        expect(res.status, query).to.equal(400);
        expect(res.body.errors[0], query).to.include({ field: '(query)', code: 'unknown' });
      }
      expect(((await getList()).body.items as Array<{ device_fingerprint: string }>).map((r) => r.device_fingerprint)).not.to.include(first.device_fingerprint);
      // A whole record echoed back (its own members beside sync_token) is still a write.
      const made = await post(app, again);
      expect(made.status).to.equal(201);
      const echoed = await post(app, { ...made.body, device_name: 'echoed' });
      expect(echoed.status, echoed.text).to.equal(200);
    });

    it('a condition it cannot read is a 400 and deletes nothing: a misspelt or bracketed sync_token, another parameter, a body (was an unconditional 204)', async function () {
      const first = await create();
      const v2 = await post(app, { device_fingerprint: first.device_fingerprint, device_name: 'Pixel 8', sync_token: first.sync_token, totp_devices: [{ secret: newSecret() }] });
      expect(v2.status).to.equal(200);
      const stale = encodeURIComponent(first.sync_token!);
      const url = (query: string) => `${BASE}/${first.id}?${query}`;
      for (const query of [`sync_token[]=${stale}`, `sync_token%5B%5D=${stale}`, `sync_token[0]=${stale}`, `SYNC_TOKEN=${stale}`, `sync_token.x=${stale}`, `sync_token%00=${stale}`, `token=${stale}`, 'force=1']) {
        const res = await request(app).delete(url(query)).set('Authorization', bearer('alice'));
        expect(res.status, query).to.equal(400);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(res.body.errors, query).to.deep.equal([{ field: '(query)', code: 'unknown', description: res.body.detail }]);
        expect(res.body.detail, query).to.match(/^\(query\): Unrecognized parameter .*: it takes sync_token only$/);
      }
      // Beside a right token too: what the client meant is not known.
      expect((await request(app).delete(url(`sync_token=${encodeURIComponent(v2.body.sync_token)}&sync_token[]=${stale}`)).set('Authorization', bearer('alice'))).status).to.equal(400);
      for (const body of [{ sync_token: first.sync_token }, [], { sync_token: v2.body.sync_token }]) {
        const res = await request(app).delete(`${BASE}/${first.id}`).set('Authorization', bearer('alice')).set('Content-Type', 'application/json').send(JSON.stringify(body));
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body.errors, JSON.stringify(body)).to.deep.equal([{ field: '(body)', code: 'unknown', description: '(body): a DELETE takes no body: send sync_token in the query' }]);
      }
      expect((await getOne(first.id!)).body).to.deep.equal(v2.body);
      // An empty object is no body to speak of.
      const res = await request(app).delete(url(`sync_token=${encodeURIComponent(v2.body.sync_token)}`)).set('Authorization', bearer('alice')).send({});
      expect(res.status).to.equal(204);
    });

    it('answers 404 for unknown and malformed ids', async function () {
      for (const id of [`devsync_${'0'.repeat(32)}`, 'devsync_abc123', 'x', '%00', 'devsync_' + 'a'.repeat(500)]) {
        expect((await getOne(id)).status, id).to.equal(404);
        expect((await del(id)).status, id).to.equal(404);
      }
    });
  });

  describe('optimistic concurrency', function () {
    it('a stale sync_token → 409 Problem carrying the current token; the stored vault is unchanged', async function () {
      const first = await create();
      const winnerSecret = newSecret();
      const v2 = await post(app, { device_fingerprint: first.device_fingerprint, device_name: 'Pixel 8', sync_token: first.sync_token, totp_devices: [{ secret: winnerSecret }] });
      expect(v2.status).to.equal(200);

      const loserSecret = newSecret();
      const res = await post(app, { device_fingerprint: first.device_fingerprint, device_name: 'stale', sync_token: first.sync_token, totp_devices: [{ secret: loserSecret }] });
      expect(res.status).to.equal(409);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      expect(res.body).to.include({ status: 409, code: 40900003, sync_token: v2.body.sync_token, id: first.id });
      expect(JSON.stringify(res.body)).not.to.contain(loserSecret).and.not.to.contain(winnerSecret);

      const stored = await getOne(first.id!);
      expect(stored.body).to.deep.equal(v2.body);
      expect(stored.body.totp_devices).to.contain(winnerSecret).and.not.to.contain(loserSecret);
    });

    it('a create without a token for an existing fingerprint → 409 with the current token, nothing overwritten', async function () {
      const first = await create();
      const res = await post(app, { device_fingerprint: first.device_fingerprint, device_name: 'other', totp_devices: [{ secret: newSecret() }] });
      expect(res.status).to.equal(409);
      expect(res.body.sync_token).to.equal(first.sync_token);
      expect((await getOne(first.id!)).body).to.deep.equal(first);
      // With the token from the 409 the retry goes through.
      const retry = await post(app, { device_fingerprint: first.device_fingerprint, device_name: 'other', sync_token: res.body.sync_token, totp_devices: [] });
      expect(retry.status).to.equal(200);
    });

    it('a create whose fingerprint was taken and then freed between its insert and its read (a delete meanwhile): tried again, 201', async function () {
      // The store answers the first insert as a conflict with no current record, as a record deleted in between leaves it.
      let raced = false;
      const syncRecords = new Proxy(storage.syncRecords, {
        get(target, prop) {
          const value: unknown = Reflect.get(target, prop);
          if (prop !== 'create' || typeof value !== 'function') return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          return (...args: Parameters<typeof target.create>) => {
            if (raced) return target.create(...args);
            raced = true;
            return Promise.resolve({ status: 'conflict' as const, current: null });
          };
        },
      });
      const racing = makeApp(new Proxy(storage, { get: (target, prop) => (prop === 'syncRecords' ? syncRecords : (Reflect.get(target, prop) as unknown)) }));
      const res = await post(racing, { device_fingerprint: fingerprint(), device_name: 'Pixel 8', totp_devices: [] });
      expect(res.status, res.text).to.equal(201);
      expect(raced).to.equal(true);
    });

    it('a token for a record deleted meanwhile → 409 with sync_token null, and nothing is created', async function () {
      const first = await create();
      expect((await del(first.id!)).status).to.equal(204);
      const res = await post(app, { device_fingerprint: first.device_fingerprint, device_name: 'late', sync_token: first.sync_token, totp_devices: [] });
      expect(res.status).to.equal(409);
      expect(res.body.sync_token).to.equal(null);
      const n = await db.knex('sync_records').where({ device_fingerprint: first.device_fingerprint }).count({ n: '*' }).first();
      expect(Number(n?.n)).to.equal(0);
    });

    describe('races between instances (two apps, separate knex pools, one database)', function () {
      let knexB: Knex;
      let serverA: Server;
      let serverB: Server;

      /**
       * Holds the racers at the step before their write until all of them got there, so all 20
       * really meet in Postgres (unheld, the HTTP requests arrive a little staggered and could each
       * see the previous one's write). The stores underneath are the real ones.
       */
      let gate: { size: number; waiting: Array<() => void> } = { size: 0, waiting: [] };
      const arm = (size: number) => {
        gate = { size, waiting: [] };
      };
      const held = <T>(call: () => Promise<T>): Promise<T> => {
        if (gate.size === 0) return call();
        const g = gate;
        const arrived = new Promise<void>((resolve) => g.waiting.push(resolve));
        if (g.waiting.length === g.size) {
          for (const release of g.waiting) release();
          arm(0);
        }
        return arrived.then(call);
      };
      const gated = (base: KnexStorage): KnexStorage => {
        const records = base.syncRecords;
        return {
          ...base,
          syncRecords: {
            list: (...a) => records.list(...a),
            get: (...a) => records.get(...a),
            delete: (...a) => records.delete(...a),
            updateIfToken: (...a) => records.updateIfToken(...a),
            // Updates pass the read first, then the compare-and-set; creates go straight to the insert.
            findByFingerprint: (...a) => held(() => records.findByFingerprint(...a)),
            create: (...a) => held(() => records.create(...a)),
          },
        };
      };

      before(async function () {
        knexB = createKnex({ client: 'pg', connection: db.url, pool: { min: 0, max: 10 } });
        serverA = makeApp(gated(storage)).listen(0, '127.0.0.1');
        serverB = makeApp(gated(knexStorage({ knex: knexB }))).listen(0, '127.0.0.1');
        await Promise.all([serverA, serverB].map((s) => new Promise((resolve) => s.once('listening', resolve))));
      });
      after(async function () {
        await Promise.all([serverA, serverB].map((s) => new Promise((resolve) => s.close(resolve))));
        await knexB?.destroy();
      });

      it('20 writers with the same token: exactly one 200, 19 × 409 carrying the winner’s token; the stored vault is the winner’s', async function () {
        const first = await create();
        const secrets = Array.from({ length: 20 }, () => newSecret());
        arm(20);
        const results = await Promise.all(
          secrets.map((secret, i) =>
            post(i % 2 === 0 ? serverA : serverB, { device_fingerprint: first.device_fingerprint, device_name: `writer ${i}`, sync_token: first.sync_token, totp_devices: [{ secret }] }),
          ),
        );
        const statuses = results.map((r) => r.status).sort();
        expect(statuses).to.deep.equal([200, ...Array<number>(19).fill(409)]);
        const winnerIndex = results.findIndex((r) => r.status === 200);
        const winner = results[winnerIndex]!.body;
        for (const r of results) if (r.status === 409) expect(r.body.sync_token).to.equal(winner.sync_token);
        const stored = await getOne(first.id!);
        expect(stored.body).to.deep.equal(winner);
        expect(JSON.parse(stored.body.totp_devices)).to.deep.equal([{ secret: secrets[winnerIndex] }]);
      });

      it('20 creators of one new fingerprint without a token: exactly one 201, 19 × 409 carrying its token', async function () {
        const fp = fingerprint();
        const secrets = Array.from({ length: 20 }, () => newSecret());
        arm(20);
        const results = await Promise.all(
          secrets.map((secret, i) => post(i % 2 === 0 ? serverA : serverB, { device_fingerprint: fp, device_name: `creator ${i}`, totp_devices: [{ secret }] })),
        );
        expect(results.map((r) => r.status).sort()).to.deep.equal([201, ...Array<number>(19).fill(409)]);
        const winnerIndex = results.findIndex((r) => r.status === 201);
        const winner = results[winnerIndex]!.body;
        for (const r of results) if (r.status === 409) expect(r.body).to.include({ sync_token: winner.sync_token, id: winner.id });
        const stored = await getOne(winner.id);
        expect(JSON.parse(stored.body.totp_devices)).to.deep.equal([{ secret: secrets[winnerIndex] }]);
        const n = await db.knex('sync_records').where({ device_fingerprint: fp }).count({ n: '*' }).first();
        expect(Number(n?.n)).to.equal(1);
      });

      it('the store’s compare-and-set alone (no read-ahead) lets exactly one of 20 concurrent updates through', async function () {
        const first = await create();
        const stores = [storage.syncRecords, knexStorage({ knex: knexB }).syncRecords];
        const key = { tenantId: 'acme', userId: 'alice', deviceFingerprint: first.device_fingerprint!, id: first.id! };
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            stores[i % 2]!.updateIfToken(key, first.sync_token!, { deviceName: `cas ${i}`, syncToken: randomBytes(16).toString('hex'), vault: ring.seal('[]', JSON.stringify(['acme', 'alice', first.id])) }),
          ),
        );
        const updated = results.filter((r) => r.status === 'updated');
        expect(updated).to.have.length(1);
        const winner = updated[0]!;
        if (winner.status !== 'updated') throw new Error('unreachable');
        const losers = results.filter((r) => r !== winner);
        expect(losers.map((r) => r.status)).to.deep.equal(Array<string>(19).fill('conflict'));
        for (const r of losers) if (r.status === 'conflict') expect(r.current?.syncToken).to.equal(winner.record.syncToken);
      });

      /**
       * Deterministic overlap: a winner's write is held open in a transaction while 19 racers
       * start (their statements, and snapshots, begin before it commits) and block on its row
       * lock; only then does it commit. READ COMMITTED re-checks the WHERE and updates nothing;
       * REPEATABLE READ / SERIALIZABLE raise 40001, which the store must also report as a conflict.
       */
      for (const isolation of ['read committed', 'serializable'] as const) {
        it(`racers blocked behind an uncommitted winner all get a conflict (${isolation})`, async function () {
          const pool = () =>
            createKnex({ client: 'pg', connection: { connectionString: db.url, options: `-c default_transaction_isolation=${isolation.replace(' ', '\\ ')}` }, pool: { min: 0, max: 10 } });
          const pools = [pool(), pool()];
          const blockedRacers = async (n: number) => {
            for (let i = 0; i < 200; i++) {
              const r = await db.knex.raw<{ rows: Array<{ n: string }> }>("select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'");
              if (Number(r.rows[0]?.n) >= n) return;
              await new Promise((resolve) => setTimeout(resolve, 25));
            }
            throw new Error(`fewer than ${n} racers blocked`);
          };
          try {
            const check = await pools[0]!.raw<{ rows: Array<{ transaction_isolation: string }> }>('show transaction_isolation');
            expect(check.rows[0]?.transaction_isolation).to.equal(isolation);
            const stores = pools.map((k) => knexStorage({ knex: k }).syncRecords);
            const seal = (id: string) => ring.seal('[]', JSON.stringify(['acme', 'alice', id]));
            const token = () => randomBytes(16).toString('hex');

            // Updates with one token.
            const first = await create();
            const key = { tenantId: 'acme', userId: 'alice', deviceFingerprint: first.device_fingerprint!, id: first.id! };
            const trx = await db.knex.transaction();
            const won = await knexStorage({ knex: trx }).syncRecords.updateIfToken(key, first.sync_token!, { deviceName: 'winner', syncToken: token(), vault: seal(first.id!) });
            expect(won.status).to.equal('updated');
            const racing = Promise.all(Array.from({ length: 19 }, (_, i) => stores[i % 2]!.updateIfToken(key, first.sync_token!, { deviceName: `racer ${i}`, syncToken: token(), vault: seal(first.id!) })));
            await blockedRacers(19);
            await trx.commit();
            const lost = await racing;
            const winnerToken = won.status === 'updated' ? won.record.syncToken : '';
            expect(lost.map((r) => (r.status === 'conflict' ? r.current?.syncToken : r.status))).to.deep.equal(Array<string>(19).fill(winnerToken));
            expect((await getOne(first.id!)).body).to.include({ device_name: 'winner', sync_token: winnerToken });

            // Creates of one fingerprint.
            const fp = fingerprint();
            const newRecord = (name: string) => {
              const id = `devsync_${randomBytes(16).toString('hex')}`;
              return { tenantId: 'acme', userId: 'alice', id, deviceFingerprint: fp, deviceName: name, syncToken: token(), vault: seal(id) };
            };
            const trx2 = await db.knex.transaction();
            const created = await knexStorage({ knex: trx2 }).syncRecords.create(newRecord('winner'));
            expect(created.status).to.equal('created');
            const creating = Promise.all(Array.from({ length: 19 }, (_, i) => stores[i % 2]!.create(newRecord(`racer ${i}`))));
            await blockedRacers(19);
            await trx2.commit();
            const createdToken = created.status === 'created' ? created.record.syncToken : '';
            expect((await creating).map((r) => (r.status === 'conflict' ? r.current?.syncToken : r.status))).to.deep.equal(Array<string>(19).fill(createdToken));
          } finally {
            await Promise.all(pools.map((k) => k.destroy()));
          }
        });
      }
    });
  });

  describe('record limit (maxRecords)', function () {
    it('refuses a create beyond maxRecords with 409 DEVICE_LIMIT_REACHED, storing nothing; updates still pass, a delete frees a place', async function () {
      const limited = makeApp(storage, { maxRecords: 3 });
      const user = `limit-${randomBytes(4).toString('hex')}`;
      const push = (body: object) => request(limited).post(BASE).set('Authorization', bearer(user)).send(body);
      const made: Array<Record<string, string>> = [];
      for (let i = 0; i < 3; i++) {
        const res = await push({ device_fingerprint: fingerprint(), device_name: `device ${i}`, totp_devices: [] });
        expect(res.status).to.equal(201);
        made.push(res.body as Record<string, string>);
      }
      const over = await push({ device_fingerprint: fingerprint(), device_name: 'one too many', totp_devices: [{ secret: newSecret() }] });
      expect(over.status).to.equal(409);
      expect(over.headers['content-type']).to.match(/^application\/problem\+json/);
      expect(over.body).to.include({ status: 409, code: 40900002, detail: 'A user may sync at most 3 devices: delete one first.' });
      expect(Number((await db.knex('sync_records').where({ user_id: user }).count({ n: '*' }).first())?.n)).to.equal(3);

      // At the limit, a device's own record: a create without a token is still the conflict, an update goes through.
      const own = await push({ device_fingerprint: made[0]!.device_fingerprint, device_name: 'again', totp_devices: [] });
      expect(own.status).to.equal(409);
      expect(own.body).to.include({ code: 40900003, sync_token: made[0]!.sync_token, id: made[0]!.id });
      const update = await push({ device_fingerprint: made[0]!.device_fingerprint, device_name: 'renamed', sync_token: made[0]!.sync_token, totp_devices: [] });
      expect(update.status).to.equal(200);

      expect((await request(limited).delete(`${BASE}/${made[1]!.id}`).set('Authorization', bearer(user))).status).to.equal(204);
      expect((await push({ device_fingerprint: fingerprint(), device_name: 'in its place', totp_devices: [] })).status).to.equal(201);
      // Another user has places of their own.
      expect((await request(limited).post(BASE).set('Authorization', bearer(`${user}-2`)).send({ device_fingerprint: fingerprint(), device_name: 'x', totp_devices: [] })).status).to.equal(201);
    });

    it('rejects a maxRecords that is not an integer from 1 to 10000', function () {
      for (const maxRecords of [0, 1.5, 10_001, Number.NaN]) {
        expect(() => makeApp(storage, { maxRecords }), String(maxRecords)).to.throw(TypeError, /maxRecords/);
      }
    });

    /**
     * Ten creates of ten fingerprints wait behind a transaction that holds the user's lock, so all of them start (and,
     * under REPEATABLE READ or SERIALIZABLE, would take their snapshot) before any place is taken: exactly three pass,
     * whatever the database's default isolation.
     */
    for (const isolation of ['read committed', 'repeatable read', 'serializable'] as const) {
      it(`concurrent creates of other fingerprints pass the limit together exactly never (${isolation})`, async function () {
        const pools = [0, 1].map(() =>
          createKnex({ client: 'pg', connection: { connectionString: db.url, options: `-c default_transaction_isolation=${isolation.replaceAll(' ', '\\ ')}` }, pool: { min: 0, max: 10 } }),
        );
        try {
          const user = `race-${randomBytes(4).toString('hex')}`;
          const newRecord = (i: number) => {
            const id = `devsync_${randomBytes(16).toString('hex')}`;
            return { tenantId: 'acme', userId: user, id, deviceFingerprint: fingerprint(), deviceName: `racer ${i}`, syncToken: randomBytes(16).toString('hex'), vault: ring.seal('[]', JSON.stringify(['acme', user, id])) };
          };
          const stores = pools.map((k) => knexStorage({ knex: k }).syncRecords);
          const holder = await db.knex.transaction();
          await lockSyncRecords(holder, 'acme', user);
          const racing = Promise.all(Array.from({ length: 10 }, (_, i) => stores[i % 2]!.create(newRecord(i), { maxRecords: 3 })));
          for (let i = 0; ; i++) {
            const r = await db.knex.raw<{ rows: Array<{ n: string }> }>("select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'");
            if (Number(r.rows[0]?.n) >= 10) break;
            if (i === 200) throw new Error('fewer than 10 creates waited for the lock');
            await new Promise((resolve) => setTimeout(resolve, 25));
          }
          await holder.commit();
          const statuses = (await racing).map((r) => r.status).sort();
          expect(statuses).to.deep.equal([...Array<string>(3).fill('created'), ...Array<string>(7).fill('limit-reached')]);
          expect(Number((await db.knex('sync_records').where({ user_id: user }).count({ n: '*' }).first())?.n)).to.equal(3);
        } finally {
          await Promise.all(pools.map((k) => k.destroy()));
        }
      });
    }
  });

  describe('isolation', function () {
    it('another user sees an empty list, 404 on get and delete (the record stays), and creates the same fingerprint separately', async function () {
      const rec = await create();
      const list = await getList('mallory');
      expect(list.status).to.equal(200);
      expect(list.body.items).to.deep.equal([]);
      expect(list.body.total).to.equal(0);
      expect((await getOne(rec.id!, 'mallory')).status).to.equal(404);
      expect((await del(rec.id!, 'mallory')).status).to.equal(404);
      expect((await getOne(rec.id!)).status).to.equal(200);
      const theirs = await post(app, { device_fingerprint: rec.device_fingerprint, device_name: 'theirs', totp_devices: [] }, 'mallory');
      expect(theirs.status).to.equal(201);
      expect(theirs.body.id).not.to.equal(rec.id);
      // A token of alice's record does not let mallory touch it.
      const res = await post(app, { device_fingerprint: rec.device_fingerprint, device_name: 'x', sync_token: rec.sync_token, totp_devices: [] }, 'mallory');
      expect(res.status).to.equal(409);
      expect(res.body.sync_token).to.equal(theirs.body.sync_token);
      expect((await getOne(rec.id!)).body).to.deep.equal(rec);
    });

    it('the same user id in another tenant sees nothing of this tenant', async function () {
      const rec = await create();
      const list = await getList('alice', 'globex');
      expect(list.status).to.equal(200);
      expect(list.body.items).to.deep.equal([]);
      expect((await getOne(rec.id!, 'alice', 'globex')).status).to.equal(404);
      expect((await del(rec.id!, 'alice', 'globex')).status).to.equal(404);
    });
  });

  describe('validation', function () {
    const valid = () => ({ device_fingerprint: fingerprint(), device_name: 'Phone', totp_devices: [{ secret: newSecret() }] as unknown });

    it('takes the periods the kit\'s own devices take (15 to 300 s): a URI the kit hands out always fits', async function () {
      const ok = await post(app, { ...valid(), totp_devices: [{ secret: newSecret(), period: 15 }, { secret: newSecret(), period: 300 }] });
      expect(ok.status, ok.text).to.equal(201);
      const res = await post(app, { ...valid(), totp_devices: [{ secret: newSecret(), period: 301 }] });
      expect(res.status).to.equal(400);
      expect(res.body.errors).to.deep.equal([{ field: 'totp_devices[0].period', code: 'range', description: 'totp_devices[0].period: must be an integer from 15 to 300' }]);
    });

    it('refuses a member named twice in one entry in either form (I-JSON), and stores nothing', async function () {
      const secret = newSecret();
      const text = `[{"secret":"${secret}","issuer":"a","issuer":"b"}]`;
      for (const body of [
        { ...valid(), totp_devices: text },
        // The array form: the body itself names it twice (jsonBody()).
        `{"device_fingerprint":"${fingerprint()}","device_name":"Phone","totp_devices":${text}}`,
      ]) {
        const res = await request(app).post(BASE).set('Authorization', bearer('dup-user')).set('Content-Type', 'application/json').send(typeof body === 'string' ? body : JSON.stringify(body));
        expect(res.status, res.text).to.equal(400);
        expect(res.body.errors).to.have.length(1);
        expect(res.body.errors[0]).to.include({ code: 'duplicate' });
        expect(res.body.errors[0].description).to.include('"issuer"');
        expect(res.text).not.to.include(secret);
      }
      const list = await getList('dup-user');
      expect(list.status).to.equal(200);
      expect(list.body.total).to.equal(0);
    });

    it('points errors[] at the entry and field, as an array or as a JSON string, without echoing values', async function () {
      const leaked = newSecret(10); // too short: must not come back in the error
      const entries = [
        { secret: newSecret() },
        { secret: newSecret(), digits: 9 },
        { secret: newSecret(), period: 10 },
        { secret: leaked },
        { secret: newSecret(), algorithm: 'MD5' },
        { secret: 'not base32 at all 1890!!' },
        { secret: newSecret(), issuer: 'x'.repeat(256) },
        { secret: newSecret(), account: 'a\u0000b' },
        { secret: newSecret(), label: 'extra' },
        { issuer: 'no secret' },
        { secret: newSecret(300) },
        { secret: newSecret(), digits: 6.5, period: '30' },
        'not an object',
      ];
      for (const form of ['array', 'string'] as const) {
        const body = { ...valid(), totp_devices: form === 'array' ? entries : JSON.stringify(entries) };
        const res = await post(app, body);
        expect(res.status, form).to.equal(400);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        const fields = (res.body.errors as Array<{ field: string; code: string }>).map((e) => `${e.field}:${e.code}`);
        expect(fields, form).to.deep.equal([
          'totp_devices[1].digits:range',
          'totp_devices[2].period:range',
          'totp_devices[3].secret:range',
          'totp_devices[4].algorithm:enum',
          'totp_devices[5].secret:format',
          'totp_devices[6].issuer:range',
          'totp_devices[7].account:format',
          'totp_devices[8]:unknown',
          'totp_devices[9].secret:required',
          'totp_devices[10].secret:range',
          'totp_devices[11].digits:type',
          'totp_devices[11].period:type',
          'totp_devices[12]:type',
        ]);
        expect(res.body.detail).to.equal(res.body.errors[0].description);
        expect(JSON.stringify(res.body)).not.to.contain(leaked);
      }
    });

    it('refuses a string that is not JSON, a non-array, too many entries, and missing or bad top-level fields', async function () {
      const cases: Array<[unknown, string[]]> = [
        [{ ...valid(), totp_devices: '[{"secret":' }, ['totp_devices:format']],
        [{ ...valid(), totp_devices: '{"secret":"JBSWY3DPEHPK3PXP"}' }, ['totp_devices:type']],
        [{ ...valid(), totp_devices: 42 }, ['totp_devices:type']],
        [{ ...valid(), totp_devices: Array.from({ length: 501 }, () => ({ secret: 'JBSWY3DPEHPK3PXP' })) }, ['totp_devices:range']],
        [{ device_name: 'Phone', totp_devices: [] }, ['device_fingerprint:required']],
        [{ device_fingerprint: 'fp', totp_devices: [] }, ['device_name:required']],
        [{ device_fingerprint: 'fp', device_name: 'Phone' }, ['totp_devices:required']],
        [{ ...valid(), device_fingerprint: '' }, ['device_fingerprint:range']],
        [{ ...valid(), device_fingerprint: 'x'.repeat(257) }, ['device_fingerprint:range']],
        [{ ...valid(), device_name: 'a\u0000b' }, ['device_name:format']],
        [{ ...valid(), device_name: 'Pixel\n8' }, ['device_name:format']],
        [{ ...valid(), sync_token: 42 }, ['sync_token:type']],
        [{ ...valid(), sync_token: '' }, ['sync_token:range']],
        [{ ...valid(), sync_token: 'abc\u0000def' }, ['sync_token:format']],
        [[1, 2], ['(body):type']],
      ];
      for (const [body, expected] of cases) {
        const res = await post(app, body);
        expect(res.status, JSON.stringify(body).slice(0, 80)).to.equal(400);
        const fields = (res.body.errors as Array<{ field: string; code: string }>).map((e) => `${e.field}:${e.code}`);
        expect(fields, JSON.stringify(body).slice(0, 80)).to.deep.equal(expected);
      }
      // 500 entries is the default maximum, and is accepted.
      const ok = await post(app, { ...valid(), totp_devices: Array.from({ length: 500 }, () => ({ secret: 'JBSWY3DPEHPK3PXP' })) });
      expect(ok.status).to.equal(201);
    });

    it('takes a secret only as base32 of whole bytes (RFC 4648), and issuer, account and device_name only as display text', async function () {
      // 16 data characters are 10 bytes; padded, a group is filled to eight characters with the right number of `=`.
      const accepted = ['JBSWY3DPEHPK3PXP', 'jbswy3dpehpk3pxp', 'JBSWY3DPEHPK3PXPAA======', 'JBSWY3DPEHPK3PXPAAAA====', 'JBSWY3DPEHPK3PXPAAAAA===', 'JBSWY3DPEHPK3PXPAAAAAAA=', 'JBSWY3DPEHPK3PXPAAAAAAA'];
      for (const secret of accepted) {
        const res = await post(app, { ...valid(), totp_devices: [{ secret }] }, 'base32-user');
        expect(res.status, secret).to.equal(201);
      }
      const refused: Array<[string, string]> = [
        // One data character, or 5 bytes, under padding that makes the text look long enough.
        ['A====================', 'range'],
        ['B===============', 'range'],
        ['AAAAAAAA========', 'range'],
        // 17, 19 and 22 data characters: no number of bytes is written so.
        ['JBSWY3DPEHPK3PXPA', 'format'],
        ['JBSWY3DPEHPK3PXPAAA', 'format'],
        ['JBSWY3DPEHPK3PXPAAAAAA', 'format'],
        // Whole bytes, but padding of the wrong length, or padding where no group needs it.
        ['JBSWY3DPEHPK3PXPAA====', 'format'],
        ['JBSWY3DPEHPK3PXP=', 'format'],
        ['JBSWY3DPEHPK3PXP========', 'format'],
        ['JBSWY3DP=EHPK3PXP', 'format'],
        ['', 'range'],
      ];
      for (const [secret, code] of refused) {
        const res = await post(app, { ...valid(), totp_devices: [{ secret }] }, 'base32-user');
        expect(res.status, secret).to.equal(400);
        expect(res.body.errors, secret).to.have.length(1);
        expect(res.body.errors[0], secret).to.include({ field: 'totp_devices[0].secret', code });
      }
      for (const [member, value] of [
        ['issuer', 'x\u202eexe.gpj'],
        ['account', 'line1\nline2'],
        ['issuer', 'a\u0001b'],
        ['account', 'a\u2028b'],
      ] as const) {
        const res = await post(app, { ...valid(), totp_devices: [{ secret: newSecret(), [member]: value }] }, 'base32-user');
        expect(res.status, JSON.stringify(value)).to.equal(400);
        expect(res.body.errors, JSON.stringify(value)).to.deep.equal([{ field: `totp_devices[0].${member}`, code: 'format', description: res.body.errors[0].description }]);
      }
      for (const name of ['   ', '\u200b', '\u2060\ufeff', '']) {
        const res = await post(app, { ...valid(), device_name: name }, 'base32-user');
        expect(res.status, JSON.stringify(name)).to.equal(400);
        expect(res.body.errors, JSON.stringify(name)).to.have.length(1);
        expect(res.body.errors[0], JSON.stringify(name)).to.include({ field: 'device_name', code: 'format' });
        expect(res.body.errors[0].description).to.include('must not be blank');
      }
      // A name is trimmed, as mfaDevicesRouter trims its device names; an issuer with an emoji sequence is display text.
      const trimmed = await post(app, { ...valid(), device_name: '  Pixel 8\n', totp_devices: [{ secret: newSecret(), issuer: 'Acme 👩‍💻', account: 'alice@example.com' }] }, 'base32-user');
      expect(trimmed.status, trimmed.text).to.equal(201);
      expect(trimmed.body.device_name).to.equal('Pixel 8');
    });

    it('names at most five unknown entry fields, cut short and with a bidi override escaped', async function () {
      const extra = { ['k\u202E'.repeat(30)]: 1, a: 1, b: 2, c: 3, d: 4, e: 5 };
      const res = await post(app, { ...valid(), totp_devices: [{ secret: newSecret(), ...extra }] });
      expect(res.status).to.equal(400);
      expect(res.body.errors[0]).to.deep.equal({
        field: 'totp_devices[0]',
        code: 'unknown',
        description: `totp_devices[0]: unknown entry field "${'k\\u202e'.repeat(20)}…", "a", "b", "c", "d" and 1 more: allowed are secret, issuer, account, digits, period, algorithm`,
      });
    });

    it('answers 400 for a list query that is not percent-encoded UTF-8, and a page for a well-formed one', async function () {
      for (const query of ['?page=%ZZ', '?page=1%FF', '?page_size=%ED%A0%80']) {
        const res = await getList('alice', 'acme', query);
        expect(res.status, query).to.equal(400);
        expect(res.body.errors, query).to.deep.equal([{ field: '(query)', code: 'format', description: 'The query string has malformed percent-encoding or is not UTF-8.' }]);
        expect(res.body.instance, query).to.equal(BASE);
      }
      expect((await getList('alice', 'acme', '?page=%31&page_size=2%30')).status).to.equal(200);
    });

    it('lists at most 20 violations: 500 wrong entries (3,500 violations) are a 400 of a few KB, whose detail gives the count', async function () {
      const wrong = Array.from({ length: 500 }, () => ({ secret: 1, issuer: 1, account: 1, digits: 'x', period: 'x', algorithm: 1, z: 1 }));
      const res = await post(app, { ...valid(), totp_devices: wrong });
      expect(res.status).to.equal(400);
      expect(res.body.errors).to.have.length(20);
      expect(res.body.detail).to.match(/^totp_devices\[0\]\.secret.* \(3500 violations; the first 20 are listed\)$/);
      expect(res.text.length).to.be.below(10_000);
      // Fewer than that: all of them, and the detail is the first one's.
      const two = await post(app, { ...valid(), totp_devices: [{ secret: 1 }, { secret: 2 }] });
      expect(two.body.errors).to.have.length(2);
      expect(two.body.detail).to.equal(two.body.errors[0].description);
    });

    it('refuses a vault over maxVaultBytes (default 128 KiB of JSON) with a 400 naming totp_devices, storing nothing; configurable', async function () {
      // 400 entries with long issuers and accounts: ~300 KB as JSON, under the body limit, each field within its own limit.
      const user = `bytes-${randomBytes(3).toString('hex')}`;
      const long = Array.from({ length: 400 }, () => ({ secret: newSecret(), issuer: 'i'.repeat(255), account: 'a'.repeat(255) }));
      const fp = fingerprint();
      const res = await post(app, { ...valid(), device_fingerprint: fp, totp_devices: long }, user);
      expect(res.status, res.text).to.equal(400);
      expect(res.body.errors).to.have.length(1);
      expect(res.body.errors[0]).to.include({ field: 'totp_devices', code: 'range' });
      expect(res.body.detail).to.match(/^totp_devices: must be at most 131072 bytes as JSON \(this vault is \d+\)$/);
      expect(await db.knex('sync_records').where({ device_fingerprint: fp }).first()).to.equal(undefined);
      // An ordinary vault of 500 entries fits.
      const ordinary = Array.from({ length: 500 }, (_, i) => ({ secret: newSecret(), issuer: 'GitHub', account: `alice+${i}@example.com` }));
      expect((await post(app, { ...valid(), totp_devices: ordinary }, user)).status).to.equal(201);
      // Configurable: a small limit refuses a small vault.
      const small = makeApp(storage, { maxVaultBytes: 1024 });
      expect((await post(small, { ...valid(), totp_devices: ordinary.slice(0, 20) }, user)).status).to.equal(400);
      expect((await post(small, { ...valid(), totp_devices: ordinary.slice(0, 2) }, user)).status).to.equal(201);
      expect(() => deviceSyncRouter({ storage, keyRing: ring, jwt: { secret: JWT_SECRET }, maxVaultBytes: 10 })).to.throw(TypeError, /maxVaultBytes/);
    });

    it('honours a configured maxEntries', async function () {
      const small = makeApp(storage, { maxEntries: 2 });
      const three = [{ secret: newSecret() }, { secret: newSecret() }, { secret: newSecret() }];
      const res = await post(small, { ...valid(), totp_devices: three });
      expect(res.status).to.equal(400);
      expect(res.body.errors[0]).to.include({ field: 'totp_devices', code: 'range' });
      expect((await post(small, { ...valid(), totp_devices: three.slice(0, 2) })).status).to.equal(201);
    });

    it('answers 413 over the body limit (default 1 MiB, configurable), 415 for a body that is not JSON, 400 for malformed JSON', async function () {
      const big = JSON.stringify({ ...valid(), totp_devices: 'x'.repeat(1024 * 1024 + 1) });
      let res = await request(app).post(BASE).set('Authorization', bearer('alice')).set('Content-Type', 'application/json').send(big);
      expect(res.status).to.equal(413);
      expect(res.body).to.include({ status: 413, code: 41300001 });
      // Just under the limit is read (and then refused for its content, not its size).
      const under = JSON.stringify({ ...valid(), totp_devices: 'x'.repeat(1024 * 1024 - 200) });
      res = await request(app).post(BASE).set('Authorization', bearer('alice')).set('Content-Type', 'application/json').send(under);
      expect(res.status).to.equal(400);

      const limited = makeApp(storage, { bodyLimit: '2kb' });
      res = await request(limited).post(BASE).set('Authorization', bearer('alice')).set('Content-Type', 'application/json').send(JSON.stringify({ ...valid(), device_name: 'n'.repeat(2100) }));
      expect(res.status).to.equal(413);

      res = await request(app).post(BASE).set('Authorization', bearer('alice')).set('Content-Type', 'text/plain').send('device_fingerprint=fp');
      expect(res.status).to.equal(415);
      expect(res.body).to.include({ status: 415, code: 41500001 });
      res = await request(app).post(BASE).set('Authorization', bearer('alice')).type('form').send({ device_fingerprint: 'fp' });
      expect(res.status).to.equal(415);

      res = await request(app).post(BASE).set('Authorization', bearer('alice')).set('Content-Type', 'application/json').send('{"device_fingerprint":');
      expect(res.status).to.equal(400);
      expect(res.body.code).to.equal(40000002);
    });
  });

  describe('encryption at rest', function () {
    it('a record sealed with a key id the ring does not hold (a rotation not yet deployed here) fails the list, 500: a client must not overwrite what another instance can open', async function () {
      const secret = newSecret();
      const other = await create([{ secret }], 'dave');
      await db.knex('sync_records').where({ id: other.id }).update({ vault_key_id: 'k-new' });
      try {
        const res = await getList('dave');
        expect(res.status).to.equal(500);
        expect(res.body).to.include({ status: 500, code: 50000002 });
        expect(res.text).not.to.contain(secret).and.not.to.contain('sync_token');
      } finally {
        await db.knex('sync_records').where({ id: other.id }).delete();
      }
    });

    it('a damaged record (its key in the ring) is listed without its vault (vault_unreadable), and its owner can overwrite it with its sync_token', async function () {
      const lost = await create([{ secret: newSecret() }], 'carol');
      const row = (await db.knex('sync_records').where({ id: lost.id }).first()) as { vault_ciphertext: Buffer };
      const damaged = Buffer.from(row.vault_ciphertext);
      damaged.writeUInt8(damaged.readUInt8(damaged.length - 1) ^ 0x01, damaged.length - 1);
      await db.knex('sync_records').where({ id: lost.id }).update({ vault_ciphertext: damaged });
      let res = await getList('carol');
      expect(res.status, res.text).to.equal(200);
      expect(res.body.items).to.have.length(1);
      expect(res.body.items[0]).to.deep.equal({ id: lost.id, device_fingerprint: lost.device_fingerprint, device_name: lost.device_name, sync_token: lost.sync_token, vault_unreadable: true, created_at: lost.created_at, last_sync_at: lost.last_sync_at });
      expect((await getOne(lost.id!, 'carol')).status).to.equal(500);
      const fresh = newSecret();
      const over = await post(app, { device_fingerprint: lost.device_fingerprint, device_name: 'Pixel 8', totp_devices: [{ secret: fresh }], sync_token: lost.sync_token }, 'carol');
      expect(over.status, over.text).to.equal(200);
      res = await getList('carol');
      expect(res.body.items[0]).to.not.have.property('vault_unreadable');
      expect(res.body.items[0].totp_devices).to.contain(fresh);
      expect((await del(lost.id!, 'carol')).status).to.equal(204);
    });

    it('a vault moved to another user (or row) does not decrypt: 500 Problem without plaintext', async function () {
      const secret = newSecret();
      const rec = await create([{ secret }], 'victim');
      await db.knex('sync_records').where({ id: rec.id }).update({ user_id: 'thief' });
      try {
        let res = await getOne(rec.id!, 'thief');
        expect(res.status).to.equal(500);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(res.body).to.include({ status: 500, code: 50000002 });
        expect(res.text).not.to.contain(secret);
        // One log line has the cause (which row, which key) and the request id the client got, as CONTRACT.md §2 asks.
        const line = logLines.map((l) => (JSON.parse(l) as [Record<string, unknown>, string])[0]).find((l) => l.reason === 'sync record vault did not decrypt' && l.record_id === rec.id);
        expect(line, 'the cause line').to.include({ request_id: res.body.request_id, tenant_id: 'acme' });
        // The list answers the records that open, and this one without its vault (logged), so the others still sync.
        const kept = await create([{ secret: newSecret() }], 'thief');
        res = await getList('thief');
        expect(res.status, res.text).to.equal(200);
        expect(res.text).not.to.contain(secret);
        expect(res.body.total).to.equal(2);
        const listed = (res.body.items as Array<Record<string, unknown>>).find((i) => i.id === rec.id);
        expect(listed).to.include({ id: rec.id, vault_unreadable: true, sync_token: rec.sync_token }).and.not.have.property('totp_devices');
        expect((res.body.items as Array<Record<string, unknown>>).find((i) => i.id === kept.id)).to.include({ totp_devices: kept.totp_devices }).and.not.have.property('vault_unreadable');
        const listLine = logLines.map((l) => JSON.parse(l) as [Record<string, unknown>, string]).find(([l, msg]) => msg === 'sync record listed without its vault: it did not decrypt' && l.record_id === rec.id);
        expect(listLine, "the list's cause line").to.not.equal(undefined);
        expect(listLine![0]).to.include({ request_id: res.headers['x-request-id'], tenant_id: 'acme', record_id: rec.id });
        await db.knex('sync_records').where({ id: kept.id }).delete();
      } finally {
        await db.knex('sync_records').where({ id: rec.id }).update({ user_id: 'victim' });
      }
      expect((await getOne(rec.id!, 'victim')).body.totp_devices).to.contain(secret);

      // A ciphertext copied onto another record of the same user does not open either.
      const other = await create([{ secret: newSecret() }], 'victim');
      const row = (await db.knex('sync_records').where({ id: rec.id }).first()) as { vault_key_id: string; vault_ciphertext: Buffer };
      await db.knex('sync_records').where({ id: other.id }).update({ vault_key_id: row.vault_key_id, vault_ciphertext: row.vault_ciphertext });
      const res = await getOne(other.id!, 'victim');
      expect(res.status).to.equal(500);
      expect(res.text).not.to.contain(secret);
      await db.knex('sync_records').where({ id: other.id }).delete();
    });

    it('an update after a key rotation seals the vault under the new active key and names that key in the row', async function () {
      const user = `rekey-${randomBytes(3).toString('hex')}`;
      const rec = await create([{ secret: newSecret() }], user);
      expect((await db.knex('sync_records').where({ id: rec.id }).first<{ vault_key_id: string }>()).vault_key_id).to.equal('k2');
      const rotatedApp = makeApp(storage, { keyRing: keyRing([K3, ...ENCRYPTION_KEYS]) });
      const secret = newSecret();
      const updated = await post(rotatedApp, { device_fingerprint: rec.device_fingerprint, device_name: 'rekeyed', sync_token: rec.sync_token, totp_devices: [{ secret }] }, user);
      expect(updated.status, updated.text).to.equal(200);
      expect((await db.knex('sync_records').where({ id: rec.id }).first<{ vault_key_id: string }>()).vault_key_id).to.equal('k3');
      // Readable with the new key alone: the row's key id is the one it was sealed under.
      const res = await request(makeApp(storage, { keyRing: keyRing([K3]) })).get(`${BASE}/${rec.id}`).set('Authorization', bearer(user));
      expect(res.status, res.text).to.equal(200);
      expect(res.body).to.deep.equal(updated.body);
      expect(res.body.totp_devices).to.contain(secret);
    });

    it('reencrypt moves every vault to the active key, keeps tokens, and leaves rows that do not open', async function () {
      const user = `rotate-${randomBytes(3).toString('hex')}`;
      const recs = [await create(undefined, user), await create(undefined, user), await create(undefined, user)];
      const rotated = keyRing([K3, ...ENCRYPTION_KEYS]);
      // One row nobody can open (garbage ciphertext under a known key id).
      const broken = await create(undefined, user);
      await db.knex('sync_records').where({ id: broken.id }).update({ vault_ciphertext: randomBytes(64) });

      const before = (await db.knex('sync_records').whereNot('vault_key_id', 'k3').count({ n: '*' }).first())!;
      const results = await reencrypt({ knex: db.knex, keyRing: rotated, batchSize: 2, logger: quiet });
      const result = results.find((r) => r.table === 'sync_records')!;
      expect(result.failed).to.equal(1);
      expect(result.rows).to.equal(Number(before.n) - 1);
      expect(result.remaining).to.equal(1);
      const left = await db.knex('sync_records').whereNot('vault_key_id', 'k3').select<Array<{ id: string }>>('id');
      expect(left.map((r) => r.id)).to.deep.equal([broken.id]);
      await db.knex('sync_records').where({ id: broken.id }).delete();

      // Readable with the new key alone, unchanged, same tokens.
      const onlyNew = makeApp(storage, { keyRing: keyRing([K3]) });
      for (const rec of recs) {
        const res = await request(onlyNew).get(`${BASE}/${rec.id}`).set('Authorization', bearer(user));
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal(rec);
      }
      // Running it again finds nothing to do.
      const again = await reencrypt({ knex: db.knex, keyRing: rotated, logger: quiet });
      expect(again.find((r) => r.table === 'sync_records')).to.deep.equal({ table: 'sync_records', rows: 0, failed: 0, remaining: 0 });
    });

    /** The forms an entry secret could be stored in: as sent, lower-case, hex, base64, base64url. */
    const forms = (s: string) => [s, s.toLowerCase(), Buffer.from(s).toString('hex'), Buffer.from(s).toString('base64').replace(/=+$/, ''), Buffer.from(s).toString('base64url').replace(/=+$/, '')];

    it('no entry secret is in the database in plaintext, hex or base64 (every row read raw)', async function () {
      expect(secretsSent.size).to.be.greaterThan(50);
      const rows = (await db.knex('sync_records').select('*')) as Array<Record<string, unknown>>;
      expect(rows.length).to.be.greaterThan(10);
      const dumpText = rows
        .map((row) =>
          Object.values(row)
            .map((v) => (Buffer.isBuffer(v) ? [v.toString('hex'), v.toString('base64'), v.toString('latin1'), v.toString('utf8')].join('\n') : String(v)))
            .join('\n'),
        )
        .join('\n');
      for (const secret of secretsSent) for (const form of forms(secret)) expect(dumpText.includes(form), `${secret} as ${form}`).to.equal(false);
      // The known seed secret as the database itself would find it in the bytes.
      const hit = await db.knex.raw<{ rows: Array<{ n: string }> }>("select count(*) as n from sync_records where position(convert_to('JBSWY3DPEHPK3PXP', 'UTF8') in vault_ciphertext) > 0");
      expect(Number(hit.rows[0]?.n)).to.equal(0);
    });

    it('nor in pg_dump of the database (pending when no pg_dump can dump this server, a failure under REQUIRE_SERVICES=1)', function () {
      expect(secretsSent.size).to.be.greaterThan(50);
      const dump = spawnSync('pg_dump', ['--no-owner', db.url], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
      if (dump.error || dump.status !== 0) {
        if (process.env.REQUIRE_SERVICES === '1') throw new Error(`pg_dump failed: ${dump.error?.message ?? dump.stderr}`);
        console.log(`      [pg_dump skipped: ${(dump.error?.message ?? dump.stderr).split('\n', 1)[0]}]`);
        this.skip();
      }
      expect(dump.stdout).to.contain('sync_records');
      for (const secret of secretsSent) for (const form of forms(secret)) expect(dump.stdout.includes(form), `pg_dump: ${secret} as ${form}`).to.equal(false);
    });

    it('no log line holds an entry secret', function () {
      const all = logLines.join('\n');
      expect(logLines.some((l) => l.includes('did not decrypt'))).to.equal(true);
      for (const secret of secretsSent) expect(all).not.to.contain(secret);
    });
  });

  describe('set-up errors', function () {
    it('fail loudly with the fix in the message', function () {
      expect(() => deviceSyncRouter({ method: 'GET', headers: {}, url: '/' } as never)).to.throw(TypeError, /without being called/);
      expect(() => deviceSyncRouter({ storage, jwt: { secret: JWT_SECRET } } as never)).to.throw(TypeError, /needs 'keyRing'/);
      expect(() => deviceSyncRouter({ keyRing: ring, jwt: { secret: JWT_SECRET } } as never)).to.throw(TypeError, /needs 'storage'/);
      expect(() => deviceSyncRouter({ storage: { ping: () => Promise.resolve() } as never, keyRing: ring, jwt: { secret: JWT_SECRET } })).to.throw(TypeError, /syncRecords\.list/);
      expect(() => deviceSyncRouter({ storage, keyRing: ring })).to.throw(TypeError, /needs 'jwt'/);
      expect(() => deviceSyncRouter({ storage, keyRing: ring, jwt: { secret: JWT_SECRET }, maxEntrys: 5 } as never)).to.throw(TypeError, /Did you mean 'maxEntries'/);
      expect(() => deviceSyncRouter({ storage, keyRing: ring, jwt: { secret: JWT_SECRET }, maxEntries: 0 })).to.throw(TypeError, /maxEntries/);
      expect(() => deviceSyncRouter({ storage, keyRing: ring, jwt: { secret: JWT_SECRET }, stepUp: {} })).to.throw(TypeError, /deviceSyncRouter\(\) option 'stepUp' needs the 'amr' or 'acr'/);
      expect(() => deviceSyncRouter({ storage, keyRing: ring, jwt: { secret: JWT_SECRET }, stepUp: { amr: ['mfa'], maxAge: 60 } as never })).to.throw(TypeError, /unknown option 'maxAge'/);
    });
  });

  describe('stepUp (RFC 9470): the vault only for a token that shows a second factor', function () {
    const CHALLENGE =
      'Bearer error="insufficient_user_authentication", error_description="A second factor is required for the authenticator vault", acr_values="urn:example:mfa", max_age=600';
    let guarded: express.Express;
    before(function () {
      guarded = express();
      guarded.use(BASE, deviceSyncRouter({ storage, keyRing: appRing, jwt: { secret: JWT_SECRET }, logger: quiet, stepUp: { amr: ['mfa'], acr: ['urn:example:mfa'], maxAgeSeconds: 600 } }));
    });
    const now = () => Math.floor(Date.now() / 1000);
    const tokenWith = (sub: string, claims: Record<string, unknown>) => `Bearer ${jwt.sign({ sub, tenant_id: 'acme', ...claims }, JWT_SECRET, { algorithm: 'HS256', expiresIn: '1h' })}`;

    it('refuses every route to a password-only or stale token with the challenge, and changes nothing', async function () {
      const user = `stepup-${randomBytes(4).toString('hex')}`;
      const full = tokenWith(user, { amr: ['pwd', 'mfa'], auth_time: now() });
      const created = await request(guarded).post(BASE).set('Authorization', full).send({ device_fingerprint: fingerprint(), device_name: 'Phone', totp_devices: [{ secret: newSecret() }] });
      expect(created.status, created.text).to.equal(201);
      const id = (created.body as { id: string }).id;
      for (const weak of [tokenWith(user, { amr: ['pwd'], auth_time: now() }), tokenWith(user, { amr: ['pwd', 'mfa'], auth_time: now() - 601 }), tokenWith(user, {})]) {
        for (const call of [
          request(guarded).get(BASE),
          request(guarded).get(`${BASE}/${id}`),
          request(guarded).post(BASE).send({ device_fingerprint: fingerprint(), device_name: 'Other', totp_devices: [{ secret: newSecret() }] }),
          request(guarded).delete(`${BASE}/${id}`),
          // Refused before the body is read (else a 400), and before the method is judged (else a 405).
          request(guarded).post(BASE).set('Content-Type', 'application/json').send('{bad'),
          request(guarded).put(BASE).send({ x: 1 }),
        ]) {
          const res = await call.set('Authorization', weak);
          expect(res.status, res.text).to.equal(401);
          expect(res.body).to.include({ code: 40100003, title: 'Second Factor Required', detail: 'The authenticator vault needs a second factor: pass one and retry with the token your sign-in issues for it.' });
          expect(res.headers['www-authenticate']).to.equal(CHALLENGE);
          expect(res.text).not.to.include('secret');
        }
      }
      // Nothing was added or removed; the acr alone shows a second factor too.
      const list = await request(guarded).get(BASE).set('Authorization', tokenWith(user, { acr: 'urn:example:mfa', auth_time: now() }));
      expect(list.status, list.text).to.equal(200);
      expect(list.body.total).to.equal(1);
      expect((await request(guarded).delete(`${BASE}/${id}`).set('Authorization', full)).status).to.equal(204);
    });

    it('is off unless set: the router without stepUp takes a password-only token', async function () {
      const res = await getList(`nostepup-${randomBytes(4).toString('hex')}`);
      expect(res.status, res.text).to.equal(200);
    });
  });
});
