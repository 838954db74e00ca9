/**
 * Postgres faults on a private server this suite stops, starts, freezes and locks: every request
 * answers a 503 Problem with Retry-After in bounded time (never a 500, never SQL), `/readyz` says
 * 503, and the same app object serves again once Postgres is back, without a restart.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import { pino } from 'pino';
import request from 'supertest';
import { knexStorage, silentLogger } from '../index.js';
import { isStorageUnavailable } from '../lib/errors.js';
import { createExampleApp } from '../examples/app.js';
import { createKnex, longestStatementWaitMs, scrubKnexMessage, timeoutsFromEnv } from '../examples/db.js';
import type { EmbeddedPostgresServer } from '../examples/embedded-postgres.js';
import { KEY_A, insertDevice, ring } from './support/fixtures.js';
import { freshDatabase } from './support/postgres.js';

const DATABASE = 'mfa_faults';
/** The example server's default statement timeout (examples/db.ts). */
const STATEMENT_TIMEOUT_MS = 5000;
/** Every fault must be answered within this (CONTRACT: 503 within 5 s). */
const FAULT_ANSWER_MS = 5000;
/** Scheduling slack on a loaded CI machine, on top of a configured timeout. */
const MARGIN_MS = 1500;
const DEVICES = '/internal/mfa/totp/devices?user_id=alice';
/** Anything that would show SQL, connection details or a stack in a body or a log line. */
const LEAK = /select\s|insert\s|update\s|delete\s|from\s+"|mfa_devices|postgres:\/\/|password|\bat\s+\S+\s\(|node_modules/i;

interface Answer {
  status: number;
  retryAfter: string | null;
  contentType: string;
  text: string;
  body: Record<string, unknown>;
  ms: number;
}

const SETTINGS = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: 50 };

describe('isStorageUnavailable(): the error shapes the fault runs produced (regressions)', () => {
  const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });
  it('is true for a database closed to connections, timeouts of every kind and dropped connections', () => {
    for (const err of [
      pgError('55000', 'database "mfa_faults" is not currently accepting connections'),
      pgError('57P01', 'terminating connection due to administrator command'),
      pgError('57P05', 'terminating connection due to idle-session timeout'),
      pgError('25P03', 'terminating connection due to idle-in-transaction timeout'),
      pgError('57014', 'canceling statement due to statement timeout'),
      pgError('55P03', 'canceling statement due to lock timeout'),
      new Error('Query read timeout'),
      new Error('Connection terminated unexpectedly'),
      new Error('Connection terminated due to connection timeout'),
      new Error('timeout expired'), // pg's connect timeout: a host that takes the TCP connection and never answers
      new Error('select * from "mfa_devices" - timeout expired'),
      new Error('Client was closed and is not queryable'),
      new Error('Unable to acquire a connection'),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
      new AggregateError([Object.assign(new Error('connect ECONNREFUSED ::1:1'), { code: 'ECONNREFUSED' })]),
    ]) {
      expect(isStorageUnavailable(err), err.message).to.equal(true);
    }
  });
  it('is false for bugs and constraint errors, including the other 55000 errors', () => {
    for (const err of [
      pgError('55000', 'currval of sequence "s" is not yet defined in this session'),
      pgError('23505', 'duplicate key value violates unique constraint'),
      pgError('42P01', 'relation "x" does not exist'),
      new Error('boom'),
      new TypeError("Cannot read properties of undefined (reading 'id')"),
    ]) {
      expect(isStorageUnavailable(err), err.message).to.equal(false);
    }
    expect(isStorageUnavailable('Connection terminated')).to.equal(false);
    expect(isStorageUnavailable(null)).to.equal(false);
  });
});

describe('longestStatementWaitMs(): how long a stopping example server gives its in-flight requests', () => {
  it("a pooled connection's wait, the query's client-side cap (the statement's + 1 s), then knex's wait for a transaction's ROLLBACK (5 s, or the cap when shorter): 15 s by default, from DB_* when set", () => {
    expect(longestStatementWaitMs()).to.equal(4000 + 6000 + 5000);
    expect(longestStatementWaitMs(timeoutsFromEnv({ DB_STATEMENT_TIMEOUT_MS: '20000', DB_ACQUIRE_TIMEOUT_MS: '1000' }))).to.equal(1000 + 21000 + 5000);
    expect(longestStatementWaitMs({ queryTimeoutMs: 500, acquireTimeoutMs: 100 })).to.equal(100 + 500 + 500);
  });
});

describe('scrubKnexMessage(): knex warnings without SQL (regression: a fault run logged the query)', () => {
  it('keeps the label and the driver reason, drops the SQL', () => {
    expect(scrubKnexMessage('Connection Error: Error: select *, count(*) over () as full_count from "mfa_devices" where "tenant_id" = $1 - read ECONNRESET')).to.equal('Connection Error: read ECONNRESET');
    expect(scrubKnexMessage('Connection Error: Error: Connection terminated unexpectedly')).to.equal('Connection Error: Error: Connection terminated unexpectedly');
    expect(scrubKnexMessage('Connection Error: select 1 from x')).to.equal('Connection Error: (message withheld: it held query text)');
    expect(scrubKnexMessage({ sql: 'select 1' })).to.equal('knex message');
  });

  it("writes knex's warnings at most once per 10 s while the database is down (one per failed connection attempt before), counting those left out", async () => {
    const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
    const capture = (level: string) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, obj, msg });
    const logger = { ...silentLogger, warn: capture('warn'), error: capture('error') };
    // Nothing listens on port 1: every attempt is refused at once.
    const knex = createKnex('postgres://postgres@127.0.0.1:1/x', { logger, acquireTimeoutMs: 1500, connectTimeoutMs: 300 });
    try {
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => knex.raw('select 1')));
      expect(results.every((r) => r.status === 'rejected')).to.equal(true);
      const warned = lines.filter((l) => l.obj.component === 'knex');
      expect(warned.map((l) => l.msg)).to.deep.equal(['Acquire connection error: Error: connect ECONNREFUSED 127.0.0.1:1']);
    } finally {
      await knex.destroy();
    }
  });
});

describe('a database host that takes the connection and never answers (a frozen host, a hung proxy)', function () {
  this.timeout(30_000);
  it("new connections time out (pg's 'timeout expired'): 503 with Retry-After, not a 500", async () => {
    const sockets: Socket[] = [];
    const silent = createNetServer((socket) => void sockets.push(socket));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const knex = createKnex(`postgres://app@127.0.0.1:${(silent.address() as AddressInfo).port}/app`, { connectTimeoutMs: 300, acquireTimeoutMs: 5000 });
    try {
      const app = createExampleApp({ storage: knexStorage({ knex }), internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'silent-host-jwt-secret-0123456789', logger: pino({ level: 'silent' }) });
      const res = await request(app).get('/internal/mfa/totp/devices').query({ user_id: 'alice' }).set({ 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' });
      expect(res.status, res.text).to.equal(503);
      expect(res.headers['retry-after']).to.equal('5');
    } finally {
      await knex.destroy();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe('a database that takes no writes (default_transaction_read_only: a standby after a fail-over)', function () {
  this.timeout(30_000);
  it('/readyz 503; a write is a 503 to retry (not a 500); reads keep working', async () => {
    const db = await freshDatabase();
    let knex: Knex | undefined;
    try {
      await knexStorage({ knex: db.knex }).migrate();
      await db.knex.raw(`alter database "${db.name}" set default_transaction_read_only = on`);
      knex = createKnex(db.url); // new connections take the database's setting
      const storage = knexStorage({ knex });
      let refused: unknown;
      await storage.ping().catch((err: unknown) => (refused = err));
      expect(refused, 'ping rejects').to.be.instanceOf(Error);
      const app = createExampleApp({ storage, internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'read-only-test-jwt-secret-0123456789', logger: pino({ level: 'silent' }) });
      const ready = await request(app).get('/readyz');
      expect(ready.status).to.equal(503);
      const headers = { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' };
      const write = await request(app).post('/internal/session/trusted-devices').set(headers).send({ user_id: 'ro', device_fingerprint: 'fp' });
      expect(write.status, write.text).to.equal(503);
      expect(write.headers['retry-after']).to.equal('5');
      const read = await request(app).get('/internal/session/trusted-devices/check').query({ user_id: 'ro', device_fingerprint: 'fp' }).set(headers);
      expect(read.status, read.text).to.equal(200);
      expect(read.body).to.deep.equal({ trusted: false });
    } finally {
      await knex?.destroy();
      await db.drop();
    }
  });
});

describe('Postgres faults (private server: stopped, killed, closed to connections, frozen, locked)', function () {
  this.timeout(180_000);

  let dir: string;
  let pgServer: EmbeddedPostgresServer | undefined;
  let port: number;
  let url: string;
  let adminUrl: string;
  let knex: Knex;
  let http: Server;
  let base: string;
  const logLines: string[] = [];
  const frozen: number[] = [];
  /** Statuses seen across the whole suite, to report what was survived. */
  const seen = new Map<number, number>();
  /** The same, for the current test only (printed after it). */
  const testSeen = new Map<number, number>();
  const tally = (m: Map<number, number>) => [...m.entries()].sort(([a], [b]) => a - b).map(([st, n]) => `${n}×${st}`).join(', ');

  const start = async (): Promise<void> => {
    // Imported lazily: the module has a top-level await (its CLI part), which mocha's require-first
    // loading of test files cannot take.
    const { startEmbeddedPostgres } = await import('../examples/embedded-postgres.js');
    pgServer = await startEmbeddedPostgres({ dataDir: dir, database: DATABASE, settings: SETTINGS, ...(port === undefined ? {} : { port }) });
    port = pgServer.port;
    url = pgServer.url;
    adminUrl = url.replace(/\/[^/]*$/, '/postgres');
  };

  const admin = async <T>(run: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return await run(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  /** Terminates every backend of the app's database; returns how many. */
  const killBackends = () =>
    admin(async (c) => {
      const r = await c.query<{ n: string }>('SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [DATABASE]);
      return Number(r.rows[0]?.n ?? 0);
    });

  const call = async (pathAndQuery: string): Promise<Answer> => {
    const t0 = performance.now();
    const res = await fetch(`${base}${pathAndQuery}`, {
      headers: { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' },
      // Bounds the test even if the app hangs; the assertions below are far tighter.
      signal: AbortSignal.timeout(20_000),
    });
    const text = await res.text();
    const ms = performance.now() - t0;
    seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
    testSeen.set(res.status, (testSeen.get(res.status) ?? 0) + 1);
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // asserted by the callers
    }
    return { status: res.status, retryAfter: res.headers.get('retry-after'), contentType: res.headers.get('content-type') ?? '', text, body, ms };
  };

  /** The 503 every fault must give: Problem JSON, Retry-After, nothing leaked, in time. */
  const expectUnavailable = (a: Answer, what: string, withinMs = FAULT_ANSWER_MS): void => {
    expect(a.status, `${what}: ${a.text}`).to.equal(503);
    expect(a.retryAfter, what).to.match(/^\d+$/);
    expect(a.ms, `${what}: answered in ${Math.round(a.ms)} ms`).to.be.below(withinMs);
    expect(a.text, what).not.to.match(LEAK);
  };

  const expectProblem503 = (a: Answer, what: string, withinMs?: number): void => {
    expectUnavailable(a, what, withinMs);
    expect(a.contentType, what).to.match(/^application\/problem\+json/);
    expect(a.body, what).to.include({ status: 503, code: 50300001 });
    expect(a.body.retry_after, what).to.equal(Number(a.retryAfter));
  };

  const expectReadyz503 = (a: Answer, what: string): void => {
    expectUnavailable(a, what);
    expect(a.body, what).to.include({ status: 'unavailable', storage: 'down' });
  };

  /** Polls until a request succeeds again: recovery without restarting the app. */
  const expectRecovery = async (what: string): Promise<number> => {
    const t0 = performance.now();
    for (;;) {
      const a = await call(DEVICES);
      expect([200, 503], `${what}: ${a.text}`).to.include(a.status);
      expect(a.text).not.to.match(LEAK);
      if (a.status === 200) {
        expect((a.body.items as unknown[]).length).to.equal(2);
        expect((await call('/readyz')).status).to.equal(200);
        return performance.now() - t0;
      }
      expect(performance.now() - t0, `${what}: still 503 after 10 s`).to.be.below(10_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  before(async function () {
    // A private cluster, so stopping it cannot disturb any other suite or process.
    dir = await mkdtemp(path.join(os.tmpdir(), 'mfa-kit-faults-'));
    await start();
    // Same configuration as the example server (examples/db.ts): the thing under test.
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    const logger = pino({ level: 'debug' }, sink);
    knex = createKnex(url, { logger });
    const storage = knexStorage({ knex });
    await storage.migrate();
    await insertDevice(knex, { tenantId: 'acme', userId: 'alice', deviceName: 'Phone' });
    await insertDevice(knex, { tenantId: 'acme', userId: 'alice', deviceName: 'Tablet' });
    const app = createExampleApp({ storage, internalKeys: [KEY_A], keyRing: ring, jwtSecret: 'faults-test-jwt-secret-0123456789', logger });
    http = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => http.once('listening', resolve));
    base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });

  after(async function () {
    for (const pid of frozen.splice(0)) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
    }
    await new Promise<void>((resolve) => (http ? http.close(() => resolve()) : resolve()));
    http?.closeAllConnections();
    await knex?.destroy().catch(() => undefined);
    await pgServer?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    console.log(`      [faults-postgres] answers seen in all: ${tally(seen)}`);
  });

  beforeEach(() => testSeen.clear());

  afterEach(function () {
    if (testSeen.size > 0) console.log(`      [faults-postgres] ${tally(testSeen)}`);
    // No fault may ever surface as a 500 (or any 5xx other than 503).
    const bad = [...seen.keys()].filter((s) => s >= 500 && s !== 503);
    expect(bad, 'a 5xx other than 503 was answered').to.deep.equal([]);
  });

  it('serves normally to begin with', async () => {
    const a = await call(DEVICES);
    expect(a.status, a.text).to.equal(200);
    expect((await call('/readyz')).status).to.equal(200);
  });

  it('server stopped (connections refused): 503 + Retry-After within 5 s, /readyz 503, /healthz 200; recovers once it is back', async () => {
    await pgServer!.stop();
    pgServer = undefined;
    for (let i = 0; i < 5; i++) expectProblem503(await call(DEVICES), `request ${i} while stopped`);
    const concurrent = await Promise.all(Array.from({ length: 12 }, () => call(DEVICES)));
    concurrent.forEach((a, i) => expectProblem503(a, `concurrent request ${i} while stopped`));
    expectReadyz503(await call('/readyz'), '/readyz while stopped');
    expect((await call('/healthz')).status).to.equal(200);

    await start();
    await expectRecovery('after restart');
  });

  it('pooled connections killed (pg_terminate_backend): never a 500, each answer a 200 or a clean 503 in time, then serves again', async () => {
    // Fill the pool with several live connections first.
    await Promise.all(Array.from({ length: 8 }, () => call(DEVICES)));
    expect(await killBackends()).to.be.greaterThan(0);
    for (let i = 0; i < 5; i++) {
      const a = await call(DEVICES);
      if (a.status === 503) expectProblem503(a, `request ${i} after kill`);
      else expect(a.status, a.text).to.equal(200);
    }

    // Keep killing while requests run: each answer is a 200 or a clean 503, in time.
    const stopAt = performance.now() + 2500;
    const killer = (async () => {
      let kills = 0;
      while (performance.now() < stopAt) {
        kills += await killBackends();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return kills;
    })();
    const worker = async () => {
      const answers: Answer[] = [];
      while (performance.now() < stopAt) answers.push(await call(DEVICES));
      return answers;
    };
    const [kills, ...perWorker] = await Promise.all([killer, ...Array.from({ length: 6 }, worker)]);
    const answers = perWorker.flat();
    for (const a of answers) {
      if (a.status === 503) expectProblem503(a, 'under repeated kills');
      else expect(a.status, a.text).to.equal(200);
    }
    expect(kills).to.be.greaterThan(0);
    expect(answers.length).to.be.greaterThan(0);
    await expectRecovery('after the kills stopped');
  });

  it('ALTER DATABASE … ALLOW_CONNECTIONS false (and the pool killed): 503 within 5 s, /readyz 503; ALLOW_CONNECTIONS true → serves again', async () => {
    await Promise.all(Array.from({ length: 4 }, () => call(DEVICES)));
    await admin(async (c) => {
      await c.query(`ALTER DATABASE ${c.escapeIdentifier(DATABASE)} ALLOW_CONNECTIONS false`);
    });
    try {
      await killBackends();
      // A connection killed under a request may answer 503 through another path first; after that
      // every new connection is refused by the server (55000).
      for (let i = 0; i < 5; i++) expectProblem503(await call(DEVICES), `request ${i} while connections are not allowed`);
      expectReadyz503(await call('/readyz'), '/readyz while connections are not allowed');
    } finally {
      await admin(async (c) => {
        await c.query(`ALTER DATABASE ${c.escapeIdentifier(DATABASE)} ALLOW_CONNECTIONS true`);
      });
    }
    await expectRecovery('after ALLOW_CONNECTIONS true');
  });

  it('a query stuck behind an ACCESS EXCLUSIVE lock is cancelled by statement_timeout: 503 in time, the rest keeps serving', async () => {
    const locker = new pg.Client({ connectionString: url });
    locker.on('error', () => undefined);
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE mfa_devices IN ACCESS EXCLUSIVE MODE');
      // More concurrent requests than the pool has connections: the first ten hit the
      // statement timeout, the rest the acquire timeout. Both are bounded, both are 503.
      const stuck = Promise.all(Array.from({ length: 14 }, () => call(DEVICES)));
      await new Promise((resolve) => setTimeout(resolve, 200));
      // Health does not touch the table and answers while they wait.
      expect((await call('/healthz')).status).to.equal(200);
      for (const [i, a] of (await stuck).entries()) expectProblem503(a, `stuck request ${i}`, STATEMENT_TIMEOUT_MS + MARGIN_MS);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end().catch(() => undefined);
    }
    await expectRecovery('after the lock was released');
  });

  it('server frozen (SIGSTOP: accepts TCP, never answers): 503 within the client-side timeouts; serves again after SIGCONT', async () => {
    await Promise.all(Array.from({ length: 4 }, () => call(DEVICES)));
    const postmaster = Number((await readFile(path.join(dir, 'postmaster.pid'), 'utf8')).split('\n', 1)[0]);
    const backends = await admin(async (c) => (await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [DATABASE])).rows.map((r) => r.pid));
    expect(postmaster).to.be.greaterThan(1);
    for (const pid of [postmaster, ...backends]) {
      process.kill(pid, 'SIGSTOP');
      frozen.push(pid);
    }
    try {
      // Pooled connections hit query_timeout (statement timeout + 1 s); new ones the connect timeout.
      const answers = await Promise.all(Array.from({ length: 6 }, () => call(DEVICES)));
      answers.forEach((a, i) => expectProblem503(a, `request ${i} while frozen`, STATEMENT_TIMEOUT_MS + 1000 + MARGIN_MS));
      expectReadyz503(await call('/readyz'), '/readyz while frozen');
    } finally {
      for (const pid of frozen.splice(0)) process.kill(pid, 'SIGCONT');
    }
    await expectRecovery('after SIGCONT');
  });

  it('logged nothing that shows SQL, connection strings or stacks, and no unexpected-error line', () => {
    expect(logLines.length).to.be.greaterThan(0);
    for (const line of logLines) expect(line, line).not.to.match(LEAK);
    const unexpected = logLines.filter((l) => l.includes('unhandled error'));
    expect(unexpected).to.deep.equal([]);
    // Storage faults are reported as warnings with a reason code.
    expect(logLines.some((l) => l.includes('storage unavailable'))).to.equal(true);
  });
});
