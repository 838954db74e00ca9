/**
 * The pieces the performance work added (BENCHMARKS.md): `chain()`, `jsonBody()` without a body, the example
 * app's request log and security headers, `parseOrThrow()` parsing without reportInput first, the fast
 * `isoSeconds()`, and the prepared statements of `knexStorage()` on a real Postgres (the hot reads, the page
 * built as one json value, a verification's writes), with and without `preparedStatements`, seen by knex's
 * query events.
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import express, { type RequestHandler } from 'express';
import createKnex from 'knex';
import { pino } from 'pino';
import request from 'supertest';
import { createExampleApp, createExampleServer } from '../examples/app.js';
import { jsonBody, knexStorage, ProblemError, problemJson, silentLogger } from '../index.js';
import { chain } from '../lib/chain.js';
import { isoSeconds } from '../lib/pagination.js';
import { parseOrThrow, userIdSchema } from '../lib/validation.js';
import { z } from 'zod';
import { KEY_A, ring } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';

/** A stream a pino logger writes to, and the JSON lines it received. */
function jsonLines(): { lines: Array<Record<string, unknown>>; sink: Writable } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, sink };
}

describe('hot-path helpers', () => {
  describe('chain()', () => {
    const app = (handlers: RequestHandler[]) => {
      const a = express();
      a.use(chain(handlers));
      a.get('/', (req, res) => {
        res.json({ seen: (req as { seen?: string[] }).seen ?? [] });
      });
      a.use(problemJson({ logger: silentLogger }));
      return a;
    };
    const mark =
      (name: string): RequestHandler =>
      (req, _res, next) => {
        const r = req as { seen?: string[] };
        (r.seen ??= []).push(name);
        next();
      };

    it('runs every handler in order, once, then the routes', async () => {
      const res = await request(app([mark('a'), mark('b'), mark('c')])).get('/');
      expect(res.status).to.equal(200);
      expect(res.body.seen).to.deep.equal(['a', 'b', 'c']);
    });

    it("goes on after next('route') or a falsy value, as Express does for a use layer", async () => {
      const res = await request(app([mark('a'), (_req, _res, next) => next('route'), mark('b'), (_req, _res, next) => next(false as unknown as Error), mark('c')])).get('/');
      expect(res.status).to.equal(200);
      expect(res.body.seen).to.deep.equal(['a', 'b', 'c']);
    });

    it('stops at next(err), a throw, or a rejected promise, and hands the error on', async () => {
      const boom = new Error('boom');
      const failing: RequestHandler[] = [
        (_req, _res, next) => next(boom),
        () => {
          throw boom;
        },
        async () => {
          await Promise.resolve();
          throw boom;
        },
      ];
      for (const fail of failing) {
        const res = await request(app([mark('a'), fail, mark('never')])).get('/');
        expect(res.status).to.equal(500);
        expect(res.body.seen).to.equal(undefined);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      }
    });
  });

  describe('jsonBody()', () => {
    const app = express();
    app.use(...jsonBody('1kb'));
    app.all('/', (req, res) => {
      res.json({ body: req.body === undefined ? 'none' : req.body });
    });
    app.use(problemJson({ logger: silentLogger }));

    it('passes a request without a body straight on, and still parses, refuses and limits bodies', async () => {
      expect((await request(app).get('/')).body).to.deep.equal({ body: 'none' });
      expect((await request(app).post('/').send({ a: 1 })).body).to.deep.equal({ body: { a: 1 } });
      expect((await request(app).post('/').set('Content-Type', 'text/plain').send('a=1')).status).to.equal(415);
      expect((await request(app).post('/').set('Content-Type', 'application/json').send('{"a":')).status).to.equal(400);
      expect((await request(app).post('/').send({ a: 'x'.repeat(2000) })).status).to.equal(413);
    });

    it('with only(req): parses the requests it picks; any other passes on with its body unread, for the next parser', async () => {
      const picky = express();
      picky.use(...jsonBody('1kb', { only: (req) => req.path === '/mine' }));
      picky.post('/mine', (req, res) => {
        res.json({ body: req.body as unknown });
      });
      picky.post('/theirs', express.text({ type: '*/*' }), (req, res) => {
        res.json({ text: req.body as unknown });
      });
      picky.use(problemJson({ logger: silentLogger }));
      expect((await request(picky).post('/mine').send({ a: 1 })).body).to.deep.equal({ body: { a: 1 } });
      expect((await request(picky).post('/mine').set('Content-Type', 'application/json').send('{"a":')).status).to.equal(400);
      const theirs = await request(picky).post('/theirs').set('Content-Type', 'application/json').send('{"a":');
      expect(theirs.status, theirs.text).to.equal(200);
      expect(theirs.body).to.deep.equal({ text: '{"a":' });
    });
  });

  describe("the example app's request log", () => {
    it('writes one line per request without the query string, and still logs a 5xx at LOG_LEVEL=error', async () => {
      for (const level of ['info', 'error'] as const) {
        const { lines, sink } = jsonLines();
        // Storage that cannot connect: /readyz answers 503.
        const knex = createKnex({ client: 'pg', connection: 'postgres://nobody@127.0.0.1:1/none', pool: { min: 0, max: 1 }, acquireConnectionTimeout: 500 });
        try {
          const app = createExampleApp({ storage: knexStorage({ knex }), internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'hot-path-test-jwt-secret-0123456789', logger: pino({ level }, sink) });
          expect((await request(app).get('/healthz?user_id=secret-looking')).status).to.equal(200);
          expect((await request(app).get('/readyz')).status).to.equal(503);
          // The line is written when the server side of the response closes, which may come after the client has it.
          await new Promise((resolve) => setTimeout(resolve, 100));
        } finally {
          await knex.destroy();
        }
        const access = lines.filter((l) => l.msg === 'request completed' || l.msg === 'request failed');
        const expected = level === 'info' ? [['request completed', '/healthz', 200], ['request failed', '/readyz', 503]] : [['request failed', '/readyz', 503]];
        expect(access.map((l) => [l.msg, (l.req as { path: string }).path, (l.res as { status: number }).status])).to.deep.equal(expected);
        expect(JSON.stringify(lines)).not.to.contain('secret-looking');
      }
    });

    it('requestLog: false (REQUEST_LOG=off) writes no line per request, but still logs what the routers log (storage unavailable)', async () => {
      const { lines, sink } = jsonLines();
      // knex's own warning of each failed connection attempt is not what this test reads.
      const quiet = { warn() {}, error() {}, debug() {}, deprecate() {} };
      const knex = createKnex({ client: 'pg', connection: 'postgres://nobody@127.0.0.1:1/none', pool: { min: 0, max: 1 }, acquireConnectionTimeout: 500, log: quiet });
      try {
        const app = createExampleApp({ storage: knexStorage({ knex }), internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'hot-path-test-jwt-secret-0123456789', logger: pino({ level: 'info' }, sink), requestLog: false });
        expect((await request(app).get('/healthz')).status).to.equal(200);
        const failed = await request(app).get('/internal/session/trusted-devices?user_id=u1').set({ 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' });
        expect(failed.status).to.equal(503);
        await new Promise((resolve) => setTimeout(resolve, 100));
      } finally {
        await knex.destroy();
      }
      expect(lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('request '))).to.deep.equal([]);
      expect(lines.map((l) => l.msg)).to.include('storage unavailable');
    });

    it('logs a request the client gave up on once, as "request aborted" (warn), and every other request once', async () => {
      const { lines, sink } = jsonLines();
      // A database that accepts connections and never answers: /readyz waits for it (up to its probe timeout).
      const held: Socket[] = [];
      const silent = createNetServer((s) => held.push(s)).listen(0, '127.0.0.1');
      await once(silent, 'listening');
      const dbPort = (silent.address() as AddressInfo).port;
      const knex = createKnex({ client: 'pg', connection: `postgres://nobody@127.0.0.1:${dbPort}/none`, pool: { min: 0, max: 1 } });
      const app = createExampleApp({ storage: knexStorage({ knex }), internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'hot-path-test-jwt-secret-0123456789', logger: pino({ level: 'info' }, sink) });
      const server = createExampleServer(app).listen(0, '127.0.0.1');
      try {
        await once(server, 'listening');
        for (let i = 0; i < 3; i++) expect((await request(server).get('/healthz')).status).to.equal(200);
        const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
        await once(socket, 'connect');
        socket.write('GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n');
        await new Promise((resolve) => setTimeout(resolve, 100));
        socket.destroy();
        await new Promise((resolve) => setTimeout(resolve, 100));
      } finally {
        server.close();
        server.closeAllConnections();
        silent.close();
        for (const s of held) s.destroy();
        await knex.destroy();
      }
      const access = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('request '));
      expect(access.map((l) => [l.msg, l.level, (l.req as { path: string }).path])).to.deep.equal([
        ['request completed', 30, '/healthz'],
        ['request completed', 30, '/healthz'],
        ['request completed', 30, '/healthz'],
        ['request aborted', 40, '/readyz'],
      ]);
      // No status was sent: the line names none (not the 200 a response starts with).
      expect(access.map((l) => l.res)).to.deep.equal([{ status: 200 }, { status: 200 }, { status: 200 }, {}]);
    });

    it("follows the logger's level when it is changed at run time, and still redacts the logger's other lines", async () => {
      const { lines, sink } = jsonLines();
      const knex = createKnex({ client: 'pg', connection: 'postgres://nobody@127.0.0.1:1/none', pool: { min: 0, max: 1 } });
      try {
        const logger = pino({ level: 'info', redact: ['req.headers.authorization'] }, sink);
        const app = createExampleApp({ storage: knexStorage({ knex }), internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'hot-path-test-jwt-secret-0123456789', logger });
        await request(app).get('/healthz');
        logger.level = 'warn';
        await request(app).get('/healthz');
        logger.level = 'info';
        await request(app).get('/openapi.json');
        await new Promise((resolve) => setTimeout(resolve, 100));
        logger.info({ req: { headers: { authorization: 'Bearer not-for-logs' } } }, 'other line');
      } finally {
        await knex.destroy();
      }
      const access = lines.filter((l) => l.msg === 'request completed').map((l) => (l.req as { path: string }).path);
      expect(access).to.deep.equal(['/healthz', '/openapi.json']);
      expect(JSON.stringify(lines)).not.to.contain('not-for-logs');
    });
  });

  describe("the example app's security headers", () => {
    it('sends the JSON set on API answers and errors, and helmet\'s full set on /docs only', async () => {
      const knex = createKnex({ client: 'pg', connection: 'postgres://nobody@127.0.0.1:1/none', pool: { min: 0, max: 1 } });
      try {
        const app = createExampleApp({ storage: knexStorage({ knex }), internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'hot-path-test-jwt-secret-0123456789', logger: pino({ level: 'silent' }) });
        const apiSet = {
          'content-security-policy': "default-src 'none';frame-ancestors 'none'",
          'cross-origin-resource-policy': 'same-origin',
          'strict-transport-security': 'max-age=31536000; includeSubDomains',
          'x-content-type-options': 'nosniff',
          'x-frame-options': 'DENY',
        };
        const htmlOnly = ['cross-origin-opener-policy', 'origin-agent-cluster', 'referrer-policy', 'x-dns-prefetch-control', 'x-download-options', 'x-permitted-cross-domain-policies', 'x-xss-protection'];
        for (const res of [await request(app).get('/healthz'), await request(app).get('/internal/session/trusted-devices/check'), await request(app).get('/nowhere')]) {
          expect(res.headers).to.include(apiSet);
          for (const h of htmlOnly) expect(res.headers, h).not.to.have.property(h);
          expect(res.headers).not.to.have.property('x-powered-by');
          expect(res.headers['x-request-id']).to.match(/^req_/);
        }
        const docs = await request(app).get('/docs/');
        expect(docs.status).to.equal(200);
        expect(docs.headers['content-type']).to.match(/^text\/html/);
        expect(docs.headers['content-security-policy']).to.contain("default-src 'self'");
        for (const h of htmlOnly) expect(docs.headers, h).to.have.property(h);
      } finally {
        await knex.destroy();
      }
    });
  });

  describe('parseOrThrow()', () => {
    it('tells a missing field from a mistyped one although the first parse runs without reportInput', () => {
      const schema = z.object({ user_id: userIdSchema, n: z.number() });
      expect(parseOrThrow(schema, { user_id: 'u', n: 1 })).to.deep.equal({ user_id: 'u', n: 1 });
      const violations = (input: unknown) => {
        try {
          parseOrThrow(schema, input);
        } catch (err) {
          expect(err).to.be.instanceOf(ProblemError);
          return ((err as ProblemError).errors ?? []).map(({ field, code }) => ({ field, code }));
        }
        throw new Error('expected a ProblemError');
      };
      expect(violations({ n: 1 })).to.deep.equal([{ field: 'user_id', code: 'required' }]);
      expect(violations({ user_id: 5, n: 'x' })).to.deep.equal([
        { field: 'user_id', code: 'type' },
        { field: 'n', code: 'type' },
      ]);
    });
  });

  describe('isoSeconds()', () => {
    const reference = (d: Date) => d.toISOString().slice(0, -5) + 'Z';

    it('prints what toISOString() prints, without the milliseconds, for any date', () => {
      const edges = [0, 1, 999, 1000, 59_999, 86_399_999, 86_400_000, 951_782_400_000, 253_402_300_799_999, 253_402_300_800_000, -1, -62_198_755_200_000, 8.64e15];
      for (const ms of edges) expect(isoSeconds(new Date(ms)), String(ms)).to.equal(reference(new Date(ms)));
      for (let i = 0; i < 20_000; i++) {
        const d = new Date(Math.floor(Math.random() * 2.6e14) - 1e13);
        expect(isoSeconds(d), String(d.getTime())).to.equal(reference(d));
      }
    });

    it('throws for an invalid date, as toISOString() does', () => {
      expect(() => isoSeconds(new Date(Number.NaN))).to.throw(RangeError);
    });
  });

  describe('knexStorage() hot reads on Postgres', function () {
    let db: FreshDatabase;
    before(async function () {
      this.timeout(60_000);
      db = await freshDatabase();
      await knexStorage({ knex: db.knex }).migrate();
    });
    after(async () => {
      await db?.drop();
    });

    for (const prepared of [true, false]) {
      it(`answers the same with preparedStatements: ${prepared}, and knex's query events see each read`, async () => {
        const storage = knexStorage({ knex: db.knex, preparedStatements: prepared });
        const user = `u-${String(prepared)}`;
        const now = new Date();
        const until = new Date(now.getTime() + 3_600_000);
        const { device } = (await storage.trustedDevices.upsert('acme', user, { fingerprint: 'fp', trustedUntil: until, deviceName: 'laptop' }, now))!;
        const seen: Array<{ sql: string; options: { name?: string } }> = [];
        const onQuery = (q: { sql: string; options: { name?: string } }) => seen.push(q);
        db.knex.on('query', onQuery);
        try {
          const found = await storage.trustedDevices.find('acme', user, 'fp', new Date());
          expect(found.device).to.deep.equal(device);
          expect(found.generation).to.equal(1);
          const page = await storage.trustedDevices.list('acme', user, { includeExpired: false, now: new Date() }, { limit: 20, offset: 0 });
          expect(page).to.deep.equal({ items: [device], total: 1 });
          expect(await storage.trustedDevices.list('acme', user, { includeExpired: true, now: new Date() }, { limit: 20, offset: 20 })).to.deep.equal({ items: [], total: 1 });
          expect((await storage.trustedDevices.find('acme', user, 'other', new Date())).device).to.equal(null);
          expect(await storage.mfaDevices.list('acme', user, {}, { limit: 20, offset: 0 })).to.deep.equal({ items: [], total: 0 });
        } finally {
          db.knex.off('query', onQuery);
        }
        // The four prepared reads and the count of a page past the end (a builder query).
        expect(seen).to.have.length(6);
        const named = seen.filter((q) => q.options.name !== undefined);
        expect(named).to.have.length(prepared ? 5 : 0);
        for (const q of named) expect(q.options.name).to.match(/^mfa_[0-9a-f]{24}$/);
        // Times keep their millisecond, as pg's date parser gave them.
        expect(device.trustedUntil.getTime()).to.equal(until.getTime());
      });
    }

    for (const prepared of [true, false]) {
      it(`runs a verification's writes the same with preparedStatements: ${prepared}: lockout charge and reset, the single-use step`, async () => {
        const storage = knexStorage({ knex: db.knex, preparedStatements: prepared });
        const user = `v-${String(prepared)}`;
        const now = new Date();
        const created = await storage.mfaDevices.create(
          { id: randomUUID(), tenantId: 'acme', userId: user, method: 'totp', deviceName: 'Phone', secret: ring.seal(Buffer.from('secret'), 'test'), totp: { algorithm: 'SHA1', digits: 6, period: 30, skew: 1 }, expiresAt: new Date(now.getTime() + 600_000) },
          { maxDevices: 5, now },
        );
        if (created.status !== 'OK') throw new Error('device not created');
        const id = created.device.id;
        expect(await storage.mfaDevices.markVerified('acme', user, id, { step: 100, now })).not.to.equal(null);
        const seen: Array<{ options: { name?: string } }> = [];
        const onQuery = (q: { options: { name?: string } }) => seen.push(q);
        db.knex.on('query', onQuery);
        const policy = { maxFailures: 2, cooldownSeconds: 60 };
        try {
          // The replay guard: a step above the last one is taken once; the same or an older one is refused.
          const used = await storage.mfaDevices.recordTotpStep('acme', user, id, 101);
          expect(used).to.deep.include({ id, lastStep: 101, verified: true, enabled: true });
          expect(used!.lastUsedAt).to.be.instanceOf(Date);
          expect(Math.abs(used!.lastUsedAt!.getTime() - Date.now())).to.be.below(60_000);
          expect(used!.createdAt.getTime()).to.equal(created.device.createdAt.getTime());
          expect(await storage.mfaDevices.recordTotpStep('acme', user, id, 101)).to.equal(null);
          expect(await storage.mfaDevices.recordTotpStep('acme', user, id, 99)).to.equal(null);
          expect(await storage.mfaDevices.recordTotpStep('acme', user, randomUUID(), 200)).to.equal(null);
          // Lockout: two attempts fill the counter, the third is refused with a retry time; a reset forgets them.
          expect(await storage.verificationThrottle.charge('acme', user, policy)).to.deep.equal({ status: 'OK' });
          expect(await storage.verificationThrottle.charge('acme', user, policy)).to.deep.equal({ status: 'OK' });
          const locked = await storage.verificationThrottle.charge('acme', user, policy);
          expect(locked).to.include({ status: 'LOCKED', newlyLocked: true });
          expect((locked as { retryAfterSeconds: number }).retryAfterSeconds).to.be.within(1, 60);
          await storage.verificationThrottle.reset('acme', user);
          expect(await storage.verificationThrottle.charge('acme', user, policy)).to.deep.equal({ status: 'OK' });
        } finally {
          db.knex.off('query', onQuery);
        }
        // 4 replay-guard updates, 4 charges, 1 reset: every one named when prepared, none otherwise.
        expect(seen).to.have.length(9);
        expect(seen.filter((q) => q.options.name !== undefined)).to.have.length(prepared ? 9 : 0);
      });
    }

    it('lists a page in order (newest first, ties by id descending) with the total of every page', async () => {
      const storage = knexStorage({ knex: db.knex });
      const user = 'ties';
      const at = new Date(Date.UTC(2026, 4, 12, 12, 0, 0, 123));
      const until = new Date(at.getTime() + 86_400_000 * 3650);
      const ids: string[] = [];
      // Five devices trusted at one instant, then two later.
      for (let i = 0; i < 7; i++) {
        const when = i < 5 ? at : new Date(at.getTime() + i * 1000);
        ids.push((await storage.trustedDevices.upsert('acme', user, { fingerprint: `fp-${i}`, trustedUntil: until, deviceName: `Device ${i}`, ip: '2001:db8::1', os: 'Łódź OS ✓' }, when))!.device.id);
      }
      const expected = [ids[6]!, ids[5]!, ...ids.slice(0, 5).sort().reverse()];
      const seenIds: string[] = [];
      for (const offset of [0, 3, 6]) {
        const page = await storage.trustedDevices.list('acme', user, { includeExpired: false, now: new Date() }, { limit: 3, offset });
        expect(page.total).to.equal(7);
        seenIds.push(...page.items.map((d) => d.id));
        for (const d of page.items) {
          expect(d).to.include({ tenantId: 'acme', userId: user, ip: '2001:db8::1', os: 'Łódź OS ✓', browser: null, deviceType: null });
          expect(d.deviceName).to.match(/^Device \d$/);
          expect(d.createdAt).to.be.instanceOf(Date);
        }
      }
      expect(seenIds).to.deep.equal(expected);
      expect((await storage.trustedDevices.list('acme', user, { includeExpired: false, now: new Date() }, { limit: 3, offset: 0 })).items[2]!.createdAt.getTime()).to.equal(at.getTime());
    });

    it('read on the transaction, and refuse once it is done', async () => {
      const trx = await db.knex.transaction();
      const inTrx = knexStorage({ knex: trx });
      expect((await inTrx.trustedDevices.find('acme', 'u', 'fp', new Date())).device).to.equal(null);
      await trx.commit();
      let refused: unknown;
      await inTrx.trustedDevices.find('acme', 'u', 'fp', new Date()).catch((err: unknown) => (refused = err));
      expect(String(refused)).to.match(/already complete/);
    });

    it('refuses a preparedStatements that is not a boolean', () => {
      expect(() => knexStorage({ knex: db.knex, preparedStatements: 'yes' as unknown as boolean })).to.throw(TypeError, /preparedStatements/);
    });
  });
});
