/** The example server with `WORKERS=N` (node:cluster): N workers on one port, one migration, a clean SIGTERM. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { expect } from 'chai';
import { EXAMPLE_SERVER_ARGS } from './support/example-process.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { redisUrl, requireRedis } from './support/redis.js';

const KEY = 'workers-test-internal-key-0123456789';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.once('error', reject);
  });
}

function start(env: Record<string, string>): { child: ChildProcess & { stdout: Readable; stderr: Readable }; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, EXAMPLE_SERVER_ARGS, {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Pids of the node processes the primary forked (its workers). */
function workerPids(pid: number): number[] {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return children.filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('examples/server.ts');
    } catch {
      return false;
    }
  });
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** One GET on a connection of its own: its status and body. */
function getOnNewConnection(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('example server: WORKERS', function () {
  this.timeout(120_000);

  it('refuses WORKERS that is not an integer from 1 to 64', async () => {
    for (const workers of ['0', 'two', '65']) {
      const { exited, output } = start({ WORKERS: workers, PORT: '0' });
      expect(await exited).to.equal(1);
      expect(output()).to.contain('WORKERS must be an integer from 1 to 64');
    }
  });

  it('refuses WORKERS > 1 without REDIS_URL (the in-process cache is per process)', async () => {
    const { exited, output } = start({ WORKERS: '2', PORT: '0', DATABASE_URL: 'postgres://127.0.0.1:1/none' });
    expect(await exited).to.equal(1);
    expect(output()).to.contain('WORKERS > 1 needs REDIS_URL');
  });

  describe('with Postgres and Redis', () => {
    let db: FreshDatabase;
    let redis: string;

    before(async function () {
      const url = await redisUrl();
      requireRedis(this, url);
      redis = url;
      db = await freshDatabase();
    });
    after(async () => {
      await db?.drop();
    });

    const productionEnv = (port: number, workers: number) => ({
      WORKERS: String(workers),
      PORT: String(port),
      DATABASE_URL: db.url,
      REDIS_URL: redis,
      NODE_ENV: 'production',
      JWT_SECRET: 'workers-test-jwt-secret-0123456789',
      INTERNAL_API_KEYS: KEY,
      MFA_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}`,
    });

    it('WORKERS=1 (the default) runs in one process and exits 0 on SIGTERM', async () => {
      const port = await freePort();
      const server = start(productionEnv(port, 1));
      try {
        await waitFor('the port', async () => ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok ? true : undefined));
        expect(workerPids(server.child.pid!)).to.deep.equal([]);
        server.child.kill('SIGTERM');
        // 0, not 143: no signal hook of a library cuts the graceful shutdown short.
        expect(await server.exited, server.output()).to.equal(0);
      } finally {
        if (server.child.exitCode === null) server.child.kill('SIGKILL');
      }
    });

    it('migrates once, serves from 2 workers on one port, sweeps from one of them, and stops them all on SIGTERM', async () => {
      const port = await freePort();
      const server = start({ ...productionEnv(port, 2), CLEANUP_EVERY: '1h', LOG_LEVEL: 'info' });
      try {
        const base = `http://127.0.0.1:${port}`;
        await waitFor('both workers', () => Promise.resolve(workerPids(server.child.pid!).length === 2 ? true : undefined));
        await waitFor('the port', async () => ((await fetch(`${base}/healthz`)).ok ? true : undefined));
        // The primary ran the migrations before forking: the schema is there, each migration recorded once.
        const applied = await db.knex<{ name: string }>('mfa_kit_migrations').select('name');
        expect(applied.length).to.be.greaterThan(0);
        expect(new Set(applied.map((m) => m.name)).size).to.equal(applied.length);
        // Every worker answers with the shared secrets (a wrong key on one of them would be a 401): a new connection a
        // request (node:cluster hands connections out in turn), and each worker's pid in the request log.
        // Until both have answered: the port answers once one worker listens, and the other may still be starting.
        const check = async () => {
          const res = await getOnNewConnection(`${base}/internal/session/trusted-devices/check?user_id=u&device_fingerprint=f`, { 'x-internal-api-key': KEY, 'x-tenant-id': 'acme' });
          expect(res.status, res.body).to.equal(200);
          expect(JSON.parse(res.body)).to.deep.equal({ trusted: false });
        };
        for (let i = 0; i < 20; i++) await check();
        const answeredBy = async (): Promise<number[] | undefined> => {
          await check();
          const pids = new Set<number>();
          for (const line of server.output().split('\n')) {
            try {
              const entry = JSON.parse(line) as { msg?: string; pid?: number; req?: { path?: string } };
              if (entry.msg === 'request completed' && entry.req?.path === '/internal/session/trusted-devices/check' && entry.pid !== undefined) pids.add(entry.pid);
            } catch {
              // not a log line
            }
          }
          return pids.size === 2 ? [...pids].sort() : undefined;
        };
        expect(await waitFor('a check answered by each worker', answeredBy)).to.deep.equal(workerPids(server.child.pid!).sort());
        // CLEANUP_EVERY: the first worker sweeps at start-up, the second does not.
        await waitFor('the retention sweep', () => Promise.resolve(server.output().includes('retention sweep') ? true : undefined));
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(server.output().match(/retention sweep: deleted what expired/g), server.output()).to.have.length(1);
        const workers = workerPids(server.child.pid!);
        server.child.kill('SIGTERM');
        expect(await server.exited, server.output()).to.equal(0);
        for (const pid of workers) expect(() => process.kill(pid, 0), `worker ${pid} still running`).to.throw();
      } finally {
        if (server.child.exitCode === null) server.child.kill('SIGKILL');
      }
    });
  });
});
