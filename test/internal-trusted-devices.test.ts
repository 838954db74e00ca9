/** Seed 002 over HTTP on real Postgres and real Redis: the trusted-device routes of `internalRouter`. */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import request from 'supertest';
import { Redis } from 'ioredis';
import express from 'express';
import { knex as createKnex } from 'knex';
import { createMfaEvents, internalRouter, knexStorage, migrate, redisCache, REDIS_CACHE_CLIENT_OPTIONS, silentLogger, type TrustedDeviceCache } from '../index.js';
import { KEY_A } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { redisUrl, requireRedis } from './support/redis.js';
import { checkQuery, isCheckQuery } from '../routers/internal/trusted-devices.js';
import { TD, check, del, get, headers, insertTrusted, instance, post, sleep, type Instance } from './support/trusted.js';

const ISO_SECONDS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const FIELDS = ['id', 'tenant_id', 'user_id', 'device_fingerprint', 'device_name', 'device_type', 'browser', 'os', 'ip', 'created_at', 'trusted_until'];
/** The members always present: a detail (device_name, device_type, browser, os, ip) the device was never given is left out. */
const REQUIRED_FIELDS = ['id', 'tenant_id', 'user_id', 'device_fingerprint', 'created_at', 'trusted_until'];

describe('internalRouter /session/trusted-devices (seed 002)', function () {
  let db: FreshDatabase;
  let client: Redis;
  let cache: TrustedDeviceCache;
  let a: Instance;
  const uid = () => `user-${randomBytes(4).toString('hex')}`;

  before(async function () {
    const url = await redisUrl();
    requireRedis(this, url);
    db = await freshDatabase();
    await migrate(db.knex);
    client = new Redis(url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    await client.connect();
    cache = redisCache({ client, keyPrefix: `test:${randomBytes(6).toString('hex')}:`, logger: silentLogger, timeoutMs: 2_000 }); // generous: these tests are about interleavings, not timeouts (the fault suites cover those)
    // A long epoch refresh: no background query can blur the "a hit does no query" assertions.
    a = instance(db.url, cache, { epochRefreshMs: 3_600_000 });
  });
  after(async () => {
    await a?.destroy();
    await cache?.close?.();
    await client?.quit();
    await db?.drop();
  });

  describe('POST (trust, renew)', () => {
    it('answers 201 with every field of TrustedDeviceResponse', async () => {
      const user = uid();
      const before = Date.now();
      const res = await post(a.app, { user_id: user, device_fingerprint: 'fp-1', device_name: 'Work laptop', device_type: 'desktop', browser: 'Firefox 140', os: 'Linux', ip: '203.0.113.7', ttl_seconds: 3600 });
      expect(res.status).to.equal(201);
      expect(res.headers['content-type']).to.match(/^application\/json/);
      expect(Object.keys(res.body), "every member, in seed 002's order").to.deep.equal(FIELDS);
      expect(res.body).to.include({ tenant_id: 'acme', user_id: user, device_fingerprint: 'fp-1', device_name: 'Work laptop', device_type: 'desktop', browser: 'Firefox 140', os: 'Linux', ip: '203.0.113.7' });
      expect(res.body.id).to.match(UUID);
      expect(res.body.created_at).to.match(ISO_SECONDS);
      expect(res.body.trusted_until).to.match(ISO_SECONDS);
      const until = Date.parse(res.body.trusted_until);
      expect(until).to.be.within(before + 3600_000 - 1000, Date.now() + 3600_000);
      // Location names the record (RFC 9110 §15.3.2): where it is revoked.
      expect(res.headers.location).to.equal(`/internal/session/trusted-devices/${res.body.id}?user_id=${encodeURIComponent(user)}`);
      expect((await request(a.app).delete(res.headers.location as string).set(headers())).status).to.equal(204);
    });

    it('defaults the TTL to 30 days, leaves out the details not given (never null), and accepts null and IPv6', async () => {
      const user = uid();
      const res = await post(a.app, { user_id: user, device_fingerprint: 'fp-min', device_name: null, ip: '2001:db8::1' });
      expect(res.status).to.equal(201);
      expect(res.body).to.have.all.keys(REQUIRED_FIELDS.concat('ip'));
      expect(res.body.ip).to.equal('2001:db8::1');
      expect(res.text).not.to.include('null');
      expect(Date.parse(res.body.trusted_until) - Date.parse(res.body.created_at)).to.be.within(30 * 86400_000 - 2000, 30 * 86400_000 + 2000);
      // Only what seed 002 requires, in the seed's order, on the 201 and in the list.
      const bare = await post(a.app, { user_id: user, device_fingerprint: 'fp-bare' });
      expect(bare.status).to.equal(201);
      expect(Object.keys(bare.body)).to.deep.equal(REQUIRED_FIELDS);
      const list = await get(a.app, `${TD}?user_id=${user}`);
      expect((list.body.items as object[]).map((i) => Object.keys(i))).to.deep.equal([REQUIRED_FIELDS, [...REQUIRED_FIELDS.slice(0, 4), 'ip', ...REQUIRED_FIELDS.slice(4)]]);
      expect(list.body.items[0]).to.deep.equal(bare.body);
      expect(list.text).not.to.include('null');
    });

    it('renews the same fingerprint: same id, new details and trusted_until, still one row', async () => {
      const user = uid();
      const first = await post(a.app, { user_id: user, device_fingerprint: 'fp-r', device_name: 'Old', browser: 'Chrome 1', ttl_seconds: 60 });
      const second = await post(a.app, { user_id: user, device_fingerprint: 'fp-r', device_name: 'New', os: 'macOS', ttl_seconds: 7200 });
      expect(second.status).to.equal(201);
      expect(second.body.id).to.equal(first.body.id);
      expect(second.body.created_at).to.equal(first.body.created_at);
      expect(second.body).to.include({ device_name: 'New', os: 'macOS', browser: 'Chrome 1' });
      expect(Date.parse(second.body.trusted_until)).to.be.greaterThan(Date.parse(first.body.trusted_until) + 7000_000);
      const list = await get(a.app, `${TD}?user_id=${user}`);
      expect(list.body.total).to.equal(1);
      expect(list.body.items[0]).to.deep.equal(second.body);
      const c = await check(a.app, user, 'fp-r');
      expect(c.body).to.deep.equal({ trusted: true, device_id: first.body.id, trusted_until: second.body.trusted_until });
    });

    it('the same fingerprint of another user or tenant is another device', async () => {
      const user = uid();
      const mine = await post(a.app, { user_id: user, device_fingerprint: 'shared' });
      const other = await post(a.app, { user_id: uid(), device_fingerprint: 'shared' });
      const otherTenant = await post(a.app, { user_id: user, device_fingerprint: 'shared' }, 'globex');
      expect(new Set([mine.body.id, other.body.id, otherTenant.body.id]).size).to.equal(3);
      expect(otherTenant.body.tenant_id).to.equal('globex');
    });

    it('rejects bad bodies with 400 and errors[] naming the field', async () => {
      const user = uid();
      const cases: Array<[unknown, string]> = [
        [{ user_id: user }, 'device_fingerprint'],
        [{ user_id: user, device_fingerprint: '' }, 'device_fingerprint'],
        [{ user_id: user, device_fingerprint: 'x'.repeat(513) }, 'device_fingerprint'],
        [{ user_id: user, device_fingerprint: 'a\u0000b' }, 'device_fingerprint'],
        [{ user_id: user, device_fingerprint: 42 }, 'device_fingerprint'],
        [{ device_fingerprint: 'fp' }, 'user_id'],
        [{ user_id: user, device_fingerprint: 'fp', ttl_seconds: 0 }, 'ttl_seconds'],
        [{ user_id: user, device_fingerprint: 'fp', ttl_seconds: -5 }, 'ttl_seconds'],
        [{ user_id: user, device_fingerprint: 'fp', ttl_seconds: 1.5 }, 'ttl_seconds'],
        [{ user_id: user, device_fingerprint: 'fp', ttl_seconds: 30 * 86400 + 1 }, 'ttl_seconds'],
        [{ user_id: user, device_fingerprint: 'fp', ttl_seconds: '3600' }, 'ttl_seconds'],
        [{ user_id: user, device_fingerprint: 'fp', ip: '999.1.1.1' }, 'ip'],
        [{ user_id: user, device_fingerprint: 'fp', ip: 'localhost' }, 'ip'],
        [{ user_id: user, device_fingerprint: 'fp', device_name: 'x'.repeat(256) }, 'device_name'],
        [{ user_id: user, device_fingerprint: 'fp', device_name: 'Work laptop\nTrusted: all' }, 'device_name'],
        [{ user_id: user, device_fingerprint: 'fp', browser: 'Firefox\u001b[2J' }, 'browser'],
        [{ user_id: user, device_fingerprint: 'fp', os: 'Linux\u0085' }, 'os'],
        [{ user_id: user, device_fingerprint: 'fp', device_type: 'desk\ttop' }, 'device_type'],
        [{ user_id: user, device_fingerprint: 'fp', device_name: 'Work laptop\u2028Trusted: all' }, 'device_name'],
        [{ user_id: user, device_fingerprint: 'fp', device_name: 'Phone\u202Eenod' }, 'device_name'],
        [{ user_id: user, device_fingerprint: 'fp', browser: 'Firefox\u2066x' }, 'browser'],
        [{ user_id: user, device_fingerprint: 'fp', ttl: 60 }, '(body)'],
        [{ user_id: `${user}\u2028Trusted: all`, device_fingerprint: 'fp' }, 'user_id'],
        [{ user_id: `admin\u202Enimda`, device_fingerprint: 'fp' }, 'user_id'],
        [{ user_id: `${user}\u2069`, device_fingerprint: 'fp' }, 'user_id'],
      ];
      for (const [body, field] of cases) {
        const res = await post(a.app, body);
        expect(res.status, JSON.stringify(body).slice(0, 80)).to.equal(400);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(res.body.errors, JSON.stringify(body).slice(0, 80)).to.be.an('array').that.is.not.empty;
        expect(res.body.errors[0].field, JSON.stringify(body).slice(0, 80)).to.equal(field);
      }
      expect((await get(a.app, `${TD}?user_id=${user}`)).body.total).to.equal(0);
    });

    it('answers 400 for a body that is not UTF-8, instead of storing U+FFFD in its place, and stores nothing', async () => {
      // The bytes as given: superagent would serialise a Buffer as JSON ({"type":"Buffer",…}).
      const postBytes = (body: Buffer) =>
        request(a.app)
          .post(TD)
          .set(headers())
          .set('Content-Type', 'application/json')
          .serialize(() => body as unknown as string)
          .send(body);
      const user = uid();
      for (const bytes of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe0, 0xa4]]) {
        const body = Buffer.concat([Buffer.from(`{"user_id":"${user}","device_fingerprint":"fp`), Buffer.from(bytes), Buffer.from('"}')]);
        const res = await postBytes(body);
        expect(res.status, String(bytes)).to.equal(400);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(res.body.detail).to.equal('The request body is not valid UTF-8.');
      }
      expect((await get(a.app, `${TD}?user_id=${user}`)).body.total).to.equal(0);
      // A BOM and any well-formed UTF-8 still pass.
      const ok = await postBytes(Buffer.from(`\uFEFF{"user_id":"${user}","device_fingerprint":"fp-ü-😀"}`, 'utf8'));
      expect(ok.status).to.equal(201);
      expect(ok.body.device_fingerprint).to.equal('fp-ü-😀');
    });

    it('names at most five unknown members, each cut to 40 characters, so the answer stays small whatever the body held', async () => {
      const long = 'K'.repeat(90_000);
      let res = await post(a.app, { user_id: uid(), device_fingerprint: 'fp', [long]: 1 });
      expect(res.status).to.equal(400);
      expect(res.body.errors).to.deep.equal([{ field: '(body)', code: 'unknown', description: `(body): Unrecognized key: "${'K'.repeat(40)}…"` }]);
      expect(res.text.length).to.be.below(2_000);
      res = await post(a.app, { user_id: uid(), device_fingerprint: 'fp', ['x'.repeat(39) + '😀tail']: 1, 'a\u202Eb\u2028c\u0085': 2 });
      expect(res.body.errors[0].description).to.equal(`(body): Unrecognized keys: "${'x'.repeat(39)}😀…", "a\\u202eb\\u2028c\\u0085"`);
      const many = Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`x${i}`, i]));
      res = await post(a.app, { user_id: uid(), device_fingerprint: 'fp', ...many });
      expect(res.body.errors[0].description).to.equal('(body): Unrecognized keys: "x0", "x1", "x2", "x3", "x4" and 2 more');
    });

    it('answers 415 for a body that is not JSON and 400 for malformed JSON', async () => {
      let res = await post(a.app, 'user_id=x').type('form');
      expect(res.status).to.equal(415);
      res = await post(a.app, '{"user_id":').type('json');
      expect(res.status).to.equal(400);
      // No body at all is a missing body, not a body of the wrong type; an array is the latter.
      res = await request(a.app).post(TD).set(headers());
      expect(res.body.errors, res.text).to.deep.equal([{ field: '(body)', code: 'required', description: '(body) is required' }]);
      res = await post(a.app, '[]').type('json');
      expect(res.body.errors, res.text).to.deep.equal([{ field: '(body)', code: 'type', description: '(body) must be a JSON object' }]);
    });

    it('needs the internal key and a tenant', async () => {
      const { default: request } = await import('supertest');
      let res = await request(a.app).post(TD).send({ user_id: 'u', device_fingerprint: 'f' });
      expect(res.status).to.equal(401);
      res = await request(a.app).get(`${TD}/check?user_id=u&device_fingerprint=f`).set('X-Internal-API-Key', 'test-internal-key-aaaaaaaaaaaaaaaaaaaa');
      expect(res.status).to.equal(400);
      expect(res.body.errors[0].field).to.equal('X-Tenant-ID');
    });
  });

  describe('GET (list)', () => {
    const user = `lister-${randomBytes(3).toString('hex')}`;
    const ids: string[] = [];
    const base = Date.UTC(2026, 4, 12, 12, 0, 0);

    before(async () => {
      for (let i = 0; i < 25; i++) {
        ids.push(await insertTrusted(db.knex, { tenantId: 'acme', userId: user, deviceName: `Device ${i}`, createdAt: new Date(base + i * 1000) }));
      }
      await insertTrusted(db.knex, { tenantId: 'acme', userId: user, deviceName: 'Expired', createdAt: new Date(base + 99_000), trustedUntil: new Date(Date.now() - 1000) });
      await insertTrusted(db.knex, { tenantId: 'acme', userId: `${user}-other`, deviceName: 'Other user' });
      await insertTrusted(db.knex, { tenantId: 'globex', userId: user, deviceName: 'Other tenant' });
    });

    it("writes the page with the host app's JSON settings, as res.json() would (json spaces, json escape)", async () => {
      const marked = `${user}-marked`;
      const id = await insertTrusted(db.knex, { tenantId: 'acme', userId: marked, deviceName: 'a<b>&c' });
      a.app.set('json spaces', 2);
      a.app.set('json escape', true);
      try {
        const res = await get(a.app, `${TD}?user_id=${marked}`);
        expect(res.status).to.equal(200);
        expect(res.text).to.match(/^\{\n {2}"code": 0,\n/);
        expect(res.text).to.include('"device_name": "a\\u003cb\\u003e\\u0026c"').and.not.match(/[<>&]/);
        expect(res.body.items[0]).to.include({ id, device_name: 'a<b>&c' });
      } finally {
        a.app.set('json spaces', undefined);
        a.app.set('json escape', undefined);
      }
      const plain = await get(a.app, `${TD}?user_id=${marked}`);
      expect(plain.text).to.match(/^\{"code":0,/).and.include('"device_name":"a<b>&c"');
    });

    it('returns the seed 002 envelope with every field, newest first, without expired devices', async () => {
      const res = await get(a.app, `${TD}?user_id=${user}`);
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ code: 0, message: 'success', total: 25 });
      expect(res.body.timestamp).to.match(ISO_SECONDS);
      expect(res.body.pagination).to.deep.equal({ page: 1, page_size: 20, total: 25, total_pages: 2, has_next: true, has_prev: false });
      expect(res.body.items).to.have.length(20);
      // These were given a name only: the other details are left out, not null.
      for (const item of res.body.items) expect(Object.keys(item)).to.deep.equal([...REQUIRED_FIELDS.slice(0, 4), 'device_name', ...REQUIRED_FIELDS.slice(4)]);
      expect(res.text).not.to.include('null');
      expect(res.body.items[0]).to.include({ id: ids[24], tenant_id: 'acme', user_id: user, device_name: 'Device 24', created_at: '2026-05-12T12:00:24Z' });
      const names = (res.body.items as Array<{ device_name: string }>).map((i) => i.device_name);
      expect(names).not.to.include.members(['Expired', 'Other user', 'Other tenant']);
    });

    it('include_expired=true adds expired devices; bad values are 400', async () => {
      const res = await get(a.app, `${TD}?user_id=${user}&include_expired=true&page_size=100`);
      expect(res.body.total).to.equal(26);
      expect(res.body.items[0].device_name).to.equal('Expired');
      expect(Date.parse(res.body.items[0].trusted_until)).to.be.lessThan(Date.now());
      expect((await get(a.app, `${TD}?user_id=${user}&include_expired=false`)).body.total).to.equal(25);
      const bad = await get(a.app, `${TD}?user_id=${user}&include_expired=yes`);
      expect(bad.status).to.equal(400);
      expect(bad.body.errors[0].field).to.equal('include_expired');
    });

    it('pages are disjoint and complete', async () => {
      const pages = await Promise.all([1, 2, 3, 4].map((p) => get(a.app, `${TD}?user_id=${user}&page=${p}&page_size=10`)));
      const all = pages.flatMap((p) => (p.body.items as Array<{ id: string }>).map((i) => i.id));
      expect(all).to.deep.equal([...ids].reverse());
      expect(pages[2]!.body.pagination).to.include({ has_next: false, has_prev: true, total_pages: 3 });
      expect(pages[3]!.body.items).to.deep.equal([]);
      expect(pages[3]!.body.total).to.equal(25);
    });

    it('rejects page 0, negative, non-integer and over-max page_size with errors[]', async () => {
      for (const q of ['page=0', 'page=-1', 'page=1.5', 'page=abc', 'page_size=0', 'page_size=-3', 'page_size=101', 'page_size=2.5', 'page=1&page=2']) {
        const res = await get(a.app, `${TD}?user_id=${user}&${q}`);
        expect(res.status, q).to.equal(400);
        expect(res.body.errors, q).to.be.an('array').that.is.not.empty;
        expect(res.body.errors[0].field, q).to.match(/^page(_size)?$/);
      }
    });

    it('needs user_id; another tenant or user sees nothing of this one', async () => {
      const missing = await get(a.app, TD);
      expect(missing.status).to.equal(400);
      expect(missing.body.errors[0]).to.deep.include({ field: 'user_id', code: 'required' });
      const other = await get(a.app, `${TD}?user_id=${user}`, 'globex');
      expect(other.body.total).to.equal(1);
      expect(other.body.items[0].device_name).to.equal('Other tenant');
      expect((await get(a.app, `${TD}?user_id=nobody`)).body).to.include({ total: 0 });
    });
  });

  describe('GET /check (the hot path)', () => {
    it('answers 400 for a query string that is not percent-encoded UTF-8, on every route that reads one, and changes nothing', async () => {
      const user = uid();
      const t = await post(a.app, { user_id: user, device_fingerprint: 'fp-ü' });
      expect(t.status).to.equal(201);
      // Before, each of these decoded to U+FFFD or stayed as typed, so different ids named the same row.
      for (const bad of ['%ZZ', '%E0%A4', '%ED%A0%80', '%C0%AF', '%FF', '%']) {
        for (const [method, path] of [
          ['get', `${TD}/check?user_id=${user}&device_fingerprint=${bad}`],
          ['get', `${TD}?user_id=${user}${bad}`],
          ['delete', `${TD}/${t.body.id}?user_id=${user}${bad}`],
          ['delete', `${TD}?user_id=${user}${bad}`],
        ] as const) {
          const res = await (method === 'get' ? get(a.app, path) : del(a.app, path));
          expect(res.status, `${method} ${path}`).to.equal(400);
          expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
          expect(res.body.errors, path).to.deep.equal([{ field: '(query)', code: 'format', description: 'The query string has malformed percent-encoding or is not UTF-8.' }]);
          // Not the query rewritten (U+FFFD, `%25ZZ`): a URL the client never sent.
          expect(res.body.instance, path).to.equal(path.split('?', 1)[0]);
        }
      }
      // What real clients send stays accepted: `+`, escaped `+` / `%`, `?` and `|` and brackets in a value, empty values.
      const fp = 'a+b %2B%25?|[]';
      const odd = await post(a.app, { user_id: user, device_fingerprint: decodeURIComponent(fp.replace(/\+/g, ' ')) });
      expect(odd.status).to.equal(201);
      const ok = await get(a.app, `${TD}/check?user_id=${user}&device_fingerprint=${fp}&ids[]=&x=`);
      expect(ok.status).to.equal(200);
      expect(ok.body).to.include({ trusted: true, device_id: odd.body.id });
      // A raw byte outside ASCII (Node hands it on as Latin-1: 0xFC became "ü"), sent as is, which HTTP clients do not.
      const server = a.app.listen(0, '127.0.0.1');
      await once(server, 'listening');
      try {
        const { port } = server.address() as AddressInfo;
        const status = await new Promise<number>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: `${TD}/check?user_id=${user}&device_fingerprint=fp-\u00fc`, headers: headers() }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.once('error', reject);
        });
        expect(status).to.equal(400);
      } finally {
        server.close();
      }
      expect((await check(a.app, user, 'fp-ü')).body).to.include({ trusted: true, device_id: t.body.id });
      expect((await get(a.app, `${TD}?user_id=${user}`)).body.total).to.equal(2);
    });

    it('answers false for an unknown fingerprint and true with device_id and trusted_until for a trusted one', async () => {
      const user = uid();
      expect((await check(a.app, user, 'nope')).body).to.deep.equal({ trusted: false });
      const t = await post(a.app, { user_id: user, device_fingerprint: 'yes' });
      const res = await check(a.app, user, 'yes');
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ trusted: true, device_id: t.body.id, trusted_until: t.body.trusted_until });
    });

    it('no answer may be kept by a cache between the caller and the kit: Cache-Control no-store on the trusted-device and TOTP routes, errors too', async () => {
      const user = uid();
      const trusted = await post(a.app, { user_id: user, device_fingerprint: 'kept' });
      const answers = [
        trusted,
        await check(a.app, user, 'kept'),
        await check(a.app, user, 'kept'),
        await get(a.app, `${TD}?user_id=${user}`),
        await del(a.app, `${TD}/${String(trusted.body.id)}?user_id=${user}`),
        await check(a.app, user, ''),
        await request(a.app).get(`${TD}/check?user_id=${user}&device_fingerprint=kept`),
        await get(a.app, `/internal/mfa/totp/devices?user_id=${user}`),
      ];
      expect(answers.map((r) => r.status)).to.deep.equal([201, 200, 200, 200, 204, 400, 401, 200]);
      for (const res of answers) expect(res.headers['cache-control'], `${res.status}`).to.equal('no-store');
    });

    it('a hit costs no database query; a miss does (the counter works)', async () => {
      const user = uid();
      await post(a.app, { user_id: user, device_fingerprint: 'hot' });
      await check(a.app, user, 'hot');
      const miss = await a.queriesDuring(() => check(a.app, user, 'cold'));
      expect(miss.result.body).to.deep.equal({ trusted: false });
      expect(miss.sql.length).to.be.greaterThan(0);
      for (const fp of ['hot', 'cold']) {
        const hit = await a.queriesDuring(() => check(a.app, user, fp));
        expect(hit.result.body.trusted).to.equal(fp === 'hot');
        expect(hit.sql, fp).to.deep.equal([]);
      }
    });

    it('a trust ends a cached "not trusted" at once', async () => {
      const user = uid();
      // A user whose generation the cache knows (a change set it); a first check of a user it does not know is held
      // (storage/cache/types.ts, newGenerationHoldMs).
      await post(a.app, { user_id: user, device_fingerprint: 'known' });
      expect((await check(a.app, user, 'later')).body.trusted).to.equal(false);
      expect((await a.queriesDuring(() => check(a.app, user, 'later'))).sql).to.deep.equal([]); // the negative entry is cached
      await post(a.app, { user_id: user, device_fingerprint: 'later' });
      expect((await check(a.app, user, 'later')).body.trusted).to.equal(true);
    });

    it('does not mix tenants or users', async () => {
      const user = uid();
      await post(a.app, { user_id: user, device_fingerprint: 'iso' });
      expect((await check(a.app, user, 'iso')).body.trusted).to.equal(true);
      expect((await check(a.app, `${user}x`, 'iso')).body.trusted).to.equal(false);
      expect((await check(a.app, user, 'iso', 'globex')).body.trusted).to.equal(false);
    });

    it('an expired device is not trusted, and the cache never outlives trusted_until', async () => {
      const user = uid();
      // Expired in the database before it was ever checked.
      const id = await insertTrusted(db.knex, { tenantId: 'acme', userId: user, fingerprint: 'old', trustedUntil: new Date(Date.now() - 1) });
      expect((await check(a.app, user, 'old')).body.trusted).to.equal(false);
      expect((await get(a.app, `${TD}?user_id=${user}`)).body.total).to.equal(0);
      expect((await get(a.app, `${TD}?user_id=${user}&include_expired=true`)).body.items[0].id).to.equal(id);
      // Trusted for one second: true, cached, then false once the second has passed (another user: the check above
      // found no generation, and its fills are held for a while).
      const brief = uid();
      await post(a.app, { user_id: brief, device_fingerprint: 'brief', ttl_seconds: 1 });
      expect((await check(a.app, brief, 'brief')).body.trusted).to.equal(true);
      expect((await a.queriesDuring(() => check(a.app, brief, 'brief'))).sql).to.deep.equal([]);
      await sleep(1100);
      expect((await check(a.app, brief, 'brief')).body).to.deep.equal({ trusted: false });
      expect((await get(a.app, `${TD}?user_id=${brief}`)).body.total).to.equal(0);
      expect((await get(a.app, `${TD}?user_id=${brief}&include_expired=true`)).body.total).to.equal(1);
    });

    it('rejects a missing or bad fingerprint and user_id with 400', async () => {
      for (const q of ['user_id=u', 'device_fingerprint=f', 'user_id=u&device_fingerprint=', 'user_id=u&device_fingerprint=a&device_fingerprint=b', `user_id=u&device_fingerprint=${'x'.repeat(513)}`, 'user_id=u&device_fingerprint=%00']) {
        const res = await get(a.app, `${TD}/check?${q}`);
        expect(res.status, q).to.equal(400);
        expect(res.body.errors[0].field, q).to.be.oneOf(['user_id', 'device_fingerprint']);
      }
    });

    it("answers the same by the prelude's layer (the exact path, one trailing slash) and by the route (another letter case), and to HEAD", async () => {
      const user = uid();
      const t = await post(a.app, { user_id: user, device_fingerprint: 'spelt' });
      const query = `?user_id=${user}&device_fingerprint=spelt`;
      const want = { trusted: true, device_id: t.body.id, trusted_until: t.body.trusted_until };
      for (const path of [`${TD}/check`, `${TD}/check/`, `${TD}/CHECK`, '/internal/Session/Trusted-Devices/Check/']) {
        const res = await get(a.app, path + query);
        expect(res.status, path).to.equal(200);
        expect(res.body, path).to.deep.equal(want);
        expect(res.headers['content-type'], path).to.equal('application/json; charset=utf-8');
        expect(res.headers['content-length'], path).to.equal(String(Buffer.byteLength(JSON.stringify(want))));
        expect(res.headers['cache-control'], path).to.equal('no-store');
        expect(res.headers['x-request-id'], path).to.match(/^req_/);
        const head = await request(a.app).head(path + query).set(headers());
        expect(head.status, path).to.equal(200);
        expect(head.headers['content-length'], path).to.equal(res.headers['content-length']);
        expect(head.text ?? '', path).to.equal('');
        // Errors on either way are the router's Problems.
        const bad = await get(a.app, `${path}?user_id=${user}`);
        expect([bad.status, bad.headers['content-type'], bad.body.errors?.[0]?.field], path).to.deep.equal([400, 'application/problem+json; charset=utf-8', 'device_fingerprint']);
        const unauthenticated = await request(a.app).get(path + query).set('X-Tenant-ID', 'acme');
        expect(unauthenticated.status, path).to.equal(401);
      }
      // Other methods on the path are not the check: 405 (DELETE is the revoke of a device whose id is "check").
      const post405 = await request(a.app).post(`${TD}/check${query}`).set(headers());
      expect([post405.status, post405.headers.allow]).to.deep.equal([405, 'DELETE, GET, HEAD']);
    });

    it('an answer no cache may keep carries no ETag, so If-None-Match never turns it into a 304 (the app has ETags on)', async () => {
      const user = uid();
      await post(a.app, { user_id: user, device_fingerprint: 'tagged' });
      const path = `${TD}/check?user_id=${user}&device_fingerprint=tagged`;
      const first = await get(a.app, path);
      expect(first.headers.etag).to.equal(undefined);
      const again = await get(a.app, path).set('If-None-Match', '*');
      expect([again.status, again.body.trusted]).to.deep.equal([200, true]);
    });

    it("the check's fast query test accepts exactly what its schema accepts (else the schema answers)", () => {
      const values: unknown[] = ['u', 'user-1', 'ü', '😀', 'a'.repeat(128), 'a'.repeat(129), '😀'.repeat(128), '😀'.repeat(129), '', '\u0000', 'a\u0000b', 'a\tb', '\u007f', '\u0085', '\ud800', 'x\udc00', '\u202e', ' ', 'x'.repeat(512), 'x'.repeat(513), ['a', 'b'], [], 1, undefined, null, { a: 'b' }];
      let accepted = 0;
      for (const user of values) {
        for (const fp of values) {
          const q: Record<string, unknown> = { user_id: user, device_fingerprint: fp, other: 'ignored' };
          const schema = checkQuery.safeParse(q);
          expect(isCheckQuery(q), JSON.stringify([user, fp])).to.equal(schema.success);
          if (schema.success) {
            accepted++;
            expect(schema.data).to.deep.equal({ user_id: user, device_fingerprint: fp });
          }
        }
      }
      expect(accepted).to.be.greaterThan(20);
    });
  });

  describe('events', () => {
    it('announces a trust, a revocation and a revocation of all on the emitter it is given, via internal; nothing for a 404 or none revoked', async () => {
      const events = createMfaEvents();
      const seen: Array<[string, Record<string, unknown>]> = [];
      for (const name of ['trusted_device.created', 'trusted_device.revoked'] as const) events.on(name, (e) => seen.push([name, { ...e }]));
      const knex = createKnex({ client: 'pg', connection: db.url, pool: { min: 0, max: 2 } });
      try {
        const app = express();
        app.use('/internal', internalRouter({ storage: knexStorage({ knex }), internalKeys: [KEY_A], logger: silentLogger, cache, events }));
        const user = uid();
        const first = await post(app, { user_id: user, device_fingerprint: 'e-1' });
        await post(app, { user_id: user, device_fingerprint: 'e-2' });
        await post(app, { user_id: user, device_fingerprint: 'e-3' });
        expect((await del(app, `${TD}/${first.body.id}?user_id=${user}`)).status).to.equal(204);
        expect((await del(app, `${TD}/${first.body.id}?user_id=${user}`)).status).to.equal(404);
        expect((await del(app, `${TD}?user_id=${user}`).set('X-Request-ID', 'req-revoke-all')).body).to.deep.equal({ revoked: 2 });
        expect((await del(app, `${TD}?user_id=${user}`)).body).to.deep.equal({ revoked: 0 });
        expect(seen.map(([name]) => name)).to.deep.equal(['trusted_device.created', 'trusted_device.created', 'trusted_device.created', 'trusted_device.revoked', 'trusted_device.revoked']);
        expect(seen[0]![1]).to.include({ tenantId: 'acme', userId: user, trustedDeviceId: first.body.id, via: 'internal' });
        expect(seen[3]![1]).to.include({ tenantId: 'acme', userId: user, trustedDeviceId: first.body.id, count: 1, via: 'internal' });
        expect(seen[4]![1]).to.include({ tenantId: 'acme', userId: user, count: 2, via: 'internal', requestId: 'req-revoke-all' });
        expect(seen[4]![1]).not.to.have.property('trustedDeviceId');
      } finally {
        await knex.destroy();
      }
    });
  });

  describe('DELETE (revoke, revoke all)', () => {
    it('revokes one device: 204, then check false and gone from the list', async () => {
      const user = uid();
      const t = await post(a.app, { user_id: user, device_fingerprint: 'gone' });
      await post(a.app, { user_id: user, device_fingerprint: 'stays' });
      expect((await check(a.app, user, 'gone')).body.trusted).to.equal(true);
      const res = await del(a.app, `${TD}/${t.body.id}?user_id=${user}`);
      expect(res.status).to.equal(204);
      expect(res.text).to.equal('');
      expect((await check(a.app, user, 'gone')).body).to.deep.equal({ trusted: false });
      expect((await check(a.app, user, 'stays')).body.trusted).to.equal(true);
      const list = await get(a.app, `${TD}?user_id=${user}&include_expired=true`);
      expect((list.body.items as Array<{ device_fingerprint: string }>).map((i) => i.device_fingerprint)).to.deep.equal(['stays']);
      expect((await del(a.app, `${TD}/${t.body.id}?user_id=${user}`)).status).to.equal(404);
    });

    it("answers 404 for another user's or tenant's device and leaves it trusted", async () => {
      const user = uid();
      const t = await post(a.app, { user_id: user, device_fingerprint: 'mine' });
      for (const [path, tenant] of [
        [`${TD}/${t.body.id}?user_id=${user}x`, 'acme'],
        [`${TD}/${t.body.id}?user_id=${user}`, 'globex'],
      ] as const) {
        const res = await del(a.app, path, tenant);
        expect(res.status, `${tenant} ${path}`).to.equal(404);
        expect(res.body).to.include({ status: 404, code: 40400003 });
      }
      expect((await check(a.app, user, 'mine')).body.trusted).to.equal(true);
    });

    it('answers 404 (not 500) for malformed ids, and 400 without user_id', async () => {
      for (const id of ['not-a-uuid', '1', "x'; drop table trusted_devices; --", '00000000-0000-0000-0000-00000000000g', '%E2%82%AC']) {
        const res = await del(a.app, `${TD}/${id}?user_id=u`);
        expect(res.status, id).to.equal(404);
      }
      const res = await del(a.app, `${TD}/00000000-0000-0000-0000-000000000000`);
      expect(res.status).to.equal(400);
      expect(res.body.errors[0].field).to.equal('user_id');
    });

    it('revoke-all answers {revoked: n}, including expired devices, and every check is false after', async () => {
      const user = uid();
      for (const fp of ['a', 'b', 'c']) await post(a.app, { user_id: user, device_fingerprint: fp });
      await insertTrusted(db.knex, { tenantId: 'acme', userId: user, trustedUntil: new Date(Date.now() - 1000) });
      await post(a.app, { user_id: user, device_fingerprint: 'a' }, 'globex');
      for (const fp of ['a', 'b', 'c']) expect((await check(a.app, user, fp)).body.trusted).to.equal(true);
      const res = await del(a.app, `${TD}?user_id=${user}`);
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ revoked: 4 });
      for (const fp of ['a', 'b', 'c']) expect((await check(a.app, user, fp)).body.trusted, fp).to.equal(false);
      expect((await check(a.app, user, 'a', 'globex')).body.trusted).to.equal(true);
      expect((await del(a.app, `${TD}?user_id=${user}`)).body).to.deep.equal({ revoked: 0 });
      expect((await del(a.app, TD)).status).to.equal(400);
    });

    it('an empty id (`…/trusted-devices/`, a trailing slash) is a 404 and revokes nothing; the query is checked first', async () => {
      const user = uid();
      for (const fp of ['a', 'b']) await post(a.app, { user_id: user, device_fingerprint: fp });
      const res = await del(a.app, `${TD}/?user_id=${user}`);
      expect(res.status).to.equal(404);
      expect(res.body).to.include({ status: 404, code: 40400003 });
      for (const fp of ['a', 'b']) expect((await check(a.app, user, fp)).body.trusted, fp).to.equal(true);
      expect((await get(a.app, `${TD}?user_id=${user}`)).body.total).to.equal(2);
      const noUser = await del(a.app, `${TD}/`);
      expect(noUser.status).to.equal(400);
      expect(noUser.body.errors[0].field).to.equal('user_id');
    });

    it('a parameter the route does not take is a 400 and revokes nothing: `device_id` on the revoke-all (was: every device revoked)', async () => {
      const user = uid();
      const one = await post(a.app, { user_id: user, device_fingerprint: 'a' });
      await post(a.app, { user_id: user, device_fingerprint: 'b' });
      for (const url of [`${TD}?user_id=${user}&device_id=${one.body.id}`, `${TD}?user_id=${user}&id=${one.body.id}`, `${TD}/${one.body.id}?user_id=${user}&user_id[]=${user}`]) {
        const res = await del(a.app, url);
        expect(res.status, url).to.equal(400);
        expect(res.body.errors[0], url).to.include({ field: '(query)', code: 'unknown' });
      }
      for (const fp of ['a', 'b']) expect((await check(a.app, user, fp)).body.trusted, fp).to.equal(true);
      expect((await del(a.app, `${TD}/${one.body.id}?user_id=${user}`)).status).to.equal(204);
    });
  });

  describe('two instances (separate pools, one Redis)', () => {
    let b: Instance;
    before(() => {
      b = instance(db.url, cache, { epochRefreshMs: 3_600_000 });
    });
    after(async () => {
      await b.destroy();
    });

    it('a revocation on one instance is seen by the other at once; a trust too', async () => {
      const user = uid();
      const t = await post(a.app, { user_id: user, device_fingerprint: 'both' });
      expect((await check(a.app, user, 'both')).body.trusted).to.equal(true);
      expect((await check(b.app, user, 'both')).body.trusted).to.equal(true);
      // B answers from the cache A filled.
      expect((await b.queriesDuring(() => check(b.app, user, 'both'))).sql).to.deep.equal([]);
      expect((await del(b.app, `${TD}/${t.body.id}?user_id=${user}`)).status).to.equal(204);
      expect((await check(a.app, user, 'both')).body).to.deep.equal({ trusted: false });
      expect((await check(b.app, user, 'both')).body).to.deep.equal({ trusted: false });
      // B caches "not trusted"; a trust on A ends it.
      await post(a.app, { user_id: user, device_fingerprint: 'both' });
      expect((await check(b.app, user, 'both')).body.trusted).to.equal(true);
      // Revoke-all on A, seen by B.
      await del(a.app, `${TD}?user_id=${user}`);
      expect((await check(b.app, user, 'both')).body.trusted).to.equal(false);
    });

    it('racing checks and a revocation never leave a stale positive behind', async () => {
      for (let round = 0; round < 10; round++) {
        const user = uid();
        const t = await post(a.app, { user_id: user, device_fingerprint: 'race' });
        // Checks on both instances (misses and fills after the generation changes) race the revocation.
        const results = await Promise.all([
          check(a.app, user, 'race'),
          check(b.app, user, 'race'),
          del(b.app, `${TD}/${t.body.id}?user_id=${user}`),
          check(a.app, user, 'race'),
          check(b.app, user, 'race'),
        ]);
        expect(results[2].status).to.equal(204);
        expect((await check(a.app, user, 'race')).body.trusted, `round ${round}`).to.equal(false);
        expect((await check(b.app, user, 'race')).body.trusted, `round ${round}`).to.equal(false);
      }
    });
  });

  describe('without a cache', () => {
    it('every check reads Postgres and answers the same', async () => {
      const plain = instance(db.url, undefined);
      try {
        const user = uid();
        const t = await post(plain.app, { user_id: user, device_fingerprint: 'nc' });
        const hit = await plain.queriesDuring(() => check(plain.app, user, 'nc'));
        expect(hit.result.body).to.deep.equal({ trusted: true, device_id: t.body.id, trusted_until: t.body.trusted_until });
        expect(hit.sql).to.have.length(1);
        expect((await del(plain.app, `${TD}/${t.body.id}?user_id=${user}`)).status).to.equal(204);
        expect((await check(plain.app, user, 'nc')).body.trusted).to.equal(false);
      } finally {
        await plain.destroy();
      }
    });
  });
});
