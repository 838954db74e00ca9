/**
 * The README says Redis Sentinel and Redis Cluster work through ioredis: examples/several-instances.ts
 * connects to a real three-master cluster and to a real sentinel (own redis-server children), and two
 * instances share revocations and the rate limit through each.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Express } from 'express';
import { Cluster, Redis } from 'ioredis';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { sharedParts, type SharedEnv, type SharedParts } from '../examples/several-instances.js';
import { silentLogger } from '../index.js';
import { rateLimitCommand } from '../lib/verification-throttle.js';
import { KEY_A } from './support/fixtures.js';
import { JWT_SECRET, mfaApp } from './support/mfa.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { findRedisServer } from './support/redis.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const children: ChildProcess[] = [];

/** A redis-server child on a free port, answering PING. */
async function redisNode(bin: string, dir: string, extra: string[] = [], config?: string): Promise<number> {
  const port = await freePort();
  const args = config === undefined ? [] : [config];
  args.push('--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning', ...extra);
  const child = spawn(bin, args, { stdio: 'ignore' });
  children.push(child);
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 100, maxRetriesPerRequest: 1 });
  probe.on('error', () => undefined); // refused until the child listens
  try {
    for (let i = 0; ; i++) {
      try {
        await probe.ping();
        return port;
      } catch (err) {
        if (i > 100) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    probe.disconnect();
  }
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Two instances built from `env` on one fresh database: revocations and the rate limit are shared.
 * `forgetScripts` empties every node's script cache before the limiters are made, so they must load their own.
 */
function sharedBehaviour(env: () => SharedEnv, forgetScripts?: () => Promise<void>) {
  let db: FreshDatabase;
  const parts: SharedParts[] = [];
  before(async () => {
    db = await freshDatabase();
    for (let i = 0; i < 2; i++) parts.push(sharedParts({ ...env(), DATABASE_URL: db.url }, silentLogger));
    await parts[0]!.storage.migrate();
  });
  after(async () => {
    for (const p of parts.splice(0)) await p.close();
    await db?.drop();
  });

  it("both instances' caches answer through this topology: a fill on one is read by the other", async () => {
    const [a, b] = parts as [SharedParts, SharedParts];
    expect(await a.cache.ping()).to.equal(true);
    const scope = { epoch: 4242, tenantId: 'acme', userId: `cache-${randomUUID()}` };
    // A generation the cache knows (a change raised it): a fill that finds none is held (storage/cache/types.ts).
    await a.cache.invalidate(scope, 7);
    expect(await a.cache.fill(scope, 'fp-1', 7, { trusted: true, deviceId: 'd-1', trustedUntil: Date.now() + 60_000 }, 60_000)).to.equal(true);
    expect(await b.cache.get(scope, 'fp-1')).to.deep.include({ trusted: true, deviceId: 'd-1' });
    await b.cache.invalidate(scope, 8);
    expect(await a.cache.get(scope, 'fp-1')).to.equal(undefined);
  });

  it('a revocation on one instance is seen by the other at once', async () => {
    const [a, b] = parts.map((p) => mfaApp(p.storage, { cache: p.cache, ...(p.redis && { redis: p.redis }) }).app) as [Express, Express];
    const internal = (r: request.Test) => r.set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme');
    const check = (app: Express) => internal(request(app).get('/internal/session/trusted-devices/check?user_id=gina&device_fingerprint=fp-gina'));
    const trust = await internal(request(a).post('/internal/session/trusted-devices').send({ user_id: 'gina', device_fingerprint: 'fp-gina' }));
    expect(trust.status).to.equal(201);
    expect((await check(a)).body).to.include({ trusted: true }); // a fills its cache entry
    expect((await check(b)).body).to.include({ trusted: true });
    const id = (trust.body as { id: string }).id;
    expect((await internal(request(b).delete(`/internal/session/trusted-devices/${id}?user_id=gina`))).status).to.equal(204);
    expect((await check(a)).body).to.deep.equal({ trusted: false });
  });

  it('the rate limit counts requests of both instances, for users whose keys fall in any slot', async () => {
    const prefix = `mfa-kit:test:${randomUUID()}:`;
    await forgetScripts?.();
    const [a, b] = parts.map((p) => mfaApp(p.storage, { cache: p.cache, ...(p.redis && { redis: p.redis }), rateLimit: { limit: 3, windowMs: 60_000, prefix } }).app) as [Express, Express];
    for (let u = 0; u < 8; u++) {
      const bearer = `Bearer ${jwt.sign({ sub: `hank-${u}`, tenant_id: 'acme' }, JWT_SECRET, { algorithm: 'HS256', expiresIn: '5m' })}`;
      const statuses: number[] = [];
      for (const app of [a, b, a, b]) statuses.push((await request(app).post('/auth/mfa/verify').set('Authorization', bearer).send({ code: '123456' })).status);
      expect(statuses, `user hank-${u}`).to.deep.equal([400, 400, 400, 429]);
    }
  });
}

describe('Redis topologies through ioredis (examples/several-instances.ts)', function () {
  this.timeout(60_000);
  const bin = findRedisServer();
  let dir: string;

  before(function () {
    if (bin === undefined) {
      if (process.env.REQUIRE_SERVICES === '1') throw new Error('redis-server is not on PATH (REQUIRE_SERVICES=1)');
      this.skip();
    }
    dir = mkdtempSync(path.join(os.tmpdir(), 'mfa-kit-redis-'));
  });
  after(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('Redis Cluster: three masters, slots split between them', () => {
    const ports: number[] = [];
    before(async () => {
      for (let i = 0; i < 3; i++) ports.push(await redisNode(bin!, dir, ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${i}-${process.pid}.conf`]));
      const admin = ports.map((port) => new Redis({ port, host: '127.0.0.1' }));
      try {
        const ranges = [
          [0, 5460],
          [5461, 10922],
          [10923, 16383],
        ];
        await Promise.all(admin.map((r, i) => r.call('CLUSTER', 'ADDSLOTSRANGE', String(ranges[i]![0]), String(ranges[i]![1]))));
        for (const port of ports.slice(1)) await admin[0]!.call('CLUSTER', 'MEET', '127.0.0.1', String(port));
        await until('cluster_state:ok on every node', async () => {
          const infos = await Promise.all(admin.map((r) => r.call('CLUSTER', 'INFO') as Promise<string>));
          return infos.every((info) => info.includes('cluster_state:ok') && info.includes('cluster_known_nodes:3'));
        });
      } finally {
        for (const r of admin) r.disconnect();
      }
    });
    // SCRIPT LOAD names no key: a cluster client sends it to one master, and the limiter must still work on the others.
    const forgetScripts = async () => {
      for (const port of ports) {
        const node = new Redis({ port, host: '127.0.0.1' });
        try {
          await node.call('SCRIPT', 'FLUSH');
        } finally {
          node.disconnect();
        }
      }
    };
    sharedBehaviour(() => ({ DATABASE_URL: '', REDIS_CLUSTER_NODES: ports.map((p) => `127.0.0.1:${p}`).join(',') }), forgetScripts);

    it("loads the limiter's scripts on every master, not on the one node a keyless command goes to", async () => {
      const cluster = new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));
      try {
        await forgetScripts();
        const sha = await rateLimitCommand(cluster)('SCRIPT', 'LOAD', `return '${randomUUID()}'`);
        expect(sha).to.match(/^[0-9a-f]{40}$/);
        const loaded = await Promise.all(
          ports.map(async (port) => {
            const node = new Redis({ port, host: '127.0.0.1' });
            try {
              return ((await node.call('SCRIPT', 'EXISTS', String(sha))) as number[])[0];
            } finally {
              node.disconnect();
            }
          }),
        );
        expect(loaded).to.deep.equal([1, 1, 1]);
      } finally {
        cluster.disconnect();
      }
    });

    it('(the rate-limit counters above did land on more than one master)', async () => {
      const counts = await Promise.all(
        ports.map(async (port) => {
          const node = new Redis({ port, host: '127.0.0.1' });
          try {
            return (await node.keys('mfa-kit:test:*')).length;
          } finally {
            node.disconnect();
          }
        }),
      );
      expect(counts.filter((n) => n > 0).length, `keys per master: ${counts.join(', ')}`).to.be.at.least(2);
    });
  });

  describe('Redis Sentinel: one master, one sentinel', () => {
    let sentinel = 0;
    before(async () => {
      const master = await redisNode(bin!, dir);
      const config = path.join(dir, `sentinel-${process.pid}.conf`);
      writeFileSync(config, `sentinel monitor mfa-test 127.0.0.1 ${master} 1\n`);
      chmodSync(config, 0o600);
      sentinel = await redisNode(bin!, dir, ['--sentinel'], config);
      const probe = new Redis({ port: sentinel, host: '127.0.0.1' });
      try {
        await until('the sentinel to know the master', async () => {
          const addr = (await probe.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mfa-test')) as string[] | null;
          return addr?.[1] === String(master);
        });
      } finally {
        probe.disconnect();
      }
    });
    sharedBehaviour(() => ({ DATABASE_URL: '', REDIS_SENTINELS: `127.0.0.1:${sentinel}`, REDIS_SENTINEL_NAME: 'mfa-test' }));
  });
});
