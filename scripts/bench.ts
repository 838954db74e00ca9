/**
 * `npm run bench`: the example server (examples/server.ts, on Postgres + Redis) side by side with a bare
 * Express 5 app answering the same JSON (scripts/bare-express.ts), both as child processes on loopback,
 * driven alternately (A B A B) by autocannon or wrk. Prints, per scenario, req/s, p50, p99, failures and
 * the ratio to bare Express; the cost of helmet + the request log; the 1 → 2 worker scaling of the hot
 * path; the cost as the trusted-device table grows from 1k to 1M rows; the server's resident memory.
 * Method and the latest figures: BENCHMARKS.md.
 *
 * Env: DATABASE_URL (a role that may CREATE DATABASE: the bench works in a fresh database it drops at the
 * end; unset → an embedded Postgres), REDIS_URL (unset → a private redis-server when one is on PATH),
 * BENCH_QUICK=1 (a short run), BENCH_DURATION (seconds per measurement), BENCH_ROUNDS, BENCH_CONNECTIONS,
 * BENCH_ROWS (rows of the growth phase), BENCH_ONLY (comma-separated scenario ids / groups to run),
 * BENCH_NODE_FLAGS (Node flags of every server; default '--max-semi-space-size=8 --heap-growing-percent=100'), BENCH_TOOL=autocannon (ignore wrk on PATH), BENCH_TSX=1 (run the servers under tsx instead of compiled), BENCH_PROFILE=1 (run the servers with --cpu-prof; profiles in
 * .data/bench/profiles, summarised by `tsx scripts/bench/cpu-summary.ts <file>`).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import { generateKey, keyRing, knexStorage } from '../index.js';
import { freshDatabase, stopPostgres } from '../test/support/postgres.js';
import { redisUrl, stopRedisServers } from '../test/support/redis.js';
import type { BareRoute } from './bare-express.js';
import { drive, pickTool, type LoadResult, type LoadSpec, type LoadTool } from './bench/load.js';
import { cpuSeconds, freePort, machineCpuBetween, memoryOf, prepareScripts, sampleMachine, startServer, type ServerProcess } from './bench/processes.js';
import { SCENARIOS, type BenchData, type Scenario } from './bench/scenarios.js';
import { VerifyCodes, bulkTrustedDevices, copyTrustedDevices, insertTotpUsers, trustThroughApi } from './bench/seed.js';

const QUICK = process.env.BENCH_QUICK === '1';
const int = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer (got ${raw})`);
  return n;
};
const config = {
  durationSec: int('BENCH_DURATION', QUICK ? 3 : 4),
  warmupSec: QUICK ? 1 : 2,
  /** Short rounds, more of them: the servers take turns often, so drift on a shared machine hits both alike. */
  rounds: int('BENCH_ROUNDS', QUICK ? 2 : 4),
  connections: int('BENCH_CONNECTIONS', 32),
  bigRows: int('BENCH_ROWS', QUICK ? 100_000 : 1_000_000),
  bigUsers: QUICK ? 10_000 : 100_000,
  /**
   * Users with a TOTP device for the verify scenario. Each can verify at most at steps t and t+1 within
   * a 30 s window, and kit and bare together may ask for well over 100k codes in a minute.
   */
  verifyUsers: int('BENCH_VERIFY_USERS', QUICK ? 50_000 : 100_000),
  only: new Set((process.env.BENCH_ONLY ?? '').split(',').filter(Boolean)),
  nodeFlags: (process.env.BENCH_NODE_FLAGS ?? '--max-semi-space-size=8 --heap-growing-percent=100').split(' ').filter(Boolean),
};
const wanted = (id: string) => config.only.size === 0 || config.only.has(id);

/** 40 users × 25 trusted devices = the 1k rows of the base data set. */
const LIST_USERS = 40;
const DEVICES_PER_LIST_USER = 25;
const SMALL_ROWS = (LIST_USERS * DEVICES_PER_LIST_USER).toLocaleString('en');
/** The growth phase's second kit, on the big table. */
const BIG_KIT = `kit, ${config.bigRows.toLocaleString('en')} rows`;
const DEVICE_USERS = 1000;

const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** A load result and, per request in it, the server's CPU time, the local Postgres's and Redis's, and the machine's idle time. */
interface Measured extends LoadResult {
  cpuUsPerRequest: number;
  postgresUsPerRequest: number;
  redisUsPerRequest: number;
  idleUsPerRequest: number;
}

interface Row {
  group: string;
  scenario: string;
  target: string;
  results: Measured[];
}

function summarise(results: Measured[]) {
  const mean = (f: (r: Measured) => number) => results.reduce((s, r) => s + f(r), 0) / results.length;
  return {
    rps: mean((r) => r.rps),
    cpuUs: mean((r) => r.cpuUsPerRequest),
    postgresUs: mean((r) => r.postgresUsPerRequest),
    redisUs: mean((r) => r.redisUsPerRequest),
    idleUs: mean((r) => r.idleUsPerRequest),
    p50: mean((r) => r.p50),
    p99: Math.max(...results.map((r) => r.p99)),
    failures: results.reduce((s, r) => s + r.errors + r.non2xx, 0),
    statuses: results.reduce<Record<string, number>>((acc, r) => {
      for (const [k, v] of Object.entries(r.statuses)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {}),
  };
}

async function main(): Promise<void> {
  const started = Date.now();
  const tool = pickTool();
  const runId = randomBytes(4).toString('hex');
  const tenantId = `bench-${runId}`;
  const internalKey = randomBytes(24).toString('base64url');
  const jwtSecret = randomBytes(32).toString('base64url');
  const encryptionKey = generateKey('bench');
  const ring = keyRing([encryptionKey]);
  const loadBefore = os.loadavg()[0]!;
  const machineAtStart = sampleMachine();
  log(`${tool}, ${config.connections} connections, ${config.durationSec} s × ${config.rounds} rounds per server${QUICK ? ' (BENCH_QUICK)' : ''}`);

  const cleanups: Array<() => Promise<void>> = [];
  const servers = new Set<ServerProcess>();
  const stopServer = async (s: ServerProcess) => {
    servers.delete(s);
    await s.stop();
  };
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    log('interrupted: stopping servers and services');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // ---------------------------------------------------------------- services and data
    const db = await freshDatabase();
    cleanups.unshift(() => db.drop());
    const redis = await redisUrl();
    log(`database ${db.name} on ${process.env.DATABASE_URL ? 'DATABASE_URL' : 'an embedded Postgres'}; cache: ${redis ? (process.env.REDIS_URL ? 'REDIS_URL' : 'a private redis-server') : 'in-process (no Redis found)'}`);
    await knexStorage({ knex: db.knex }).migrate();

    log(`seeding ${config.verifyUsers} users with a TOTP device and ${DEVICE_USERS} users with 3 devices`);
    const seedStart = Date.now();
    const verifyUsers = await insertTotpUsers(db.knex, ring, tenantId, 'v', config.verifyUsers);
    await insertTotpUsers(db.knex, ring, tenantId, 'd', DEVICE_USERS, 3);
    log(`seeded in ${((Date.now() - seedStart) / 1000).toFixed(1)} s`);

    const serverEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
      NODE_ENV: 'production',
      DATABASE_URL: db.url,
      ...(redis && { REDIS_URL: redis }),
      JWT_SECRET: jwtSecret,
      INTERNAL_API_KEYS: internalKey,
      MFA_ENCRYPTION_KEYS: encryptionKey,
      LOG_LEVEL: 'info',
      WORKERS: '1',
      ...extra,
    });
    const profileDir = path.resolve('.data', 'bench', 'profiles');
    // The same Node flags for every server, kit and reference alike, the ones the README recommends (BENCHMARKS.md:
    // 8 MiB semi-spaces, and an old generation let grow to twice its live set between major GCs instead of ~4×,
    // keep a server's resident memory under load ~40 and ~50 MiB lower at little cost).
    const nodeArgs = [...config.nodeFlags, ...(process.env.BENCH_PROFILE === '1' ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])];
    log(process.env.BENCH_TSX === '1' ? 'servers run under tsx' : 'compiling the servers (tsc, incremental)');
    const command = prepareScripts(process.env.BENCH_TSX === '1');
    const start = async (name: string, script: string, env: Record<string, string>) => {
      const s = await startServer({ name, script, command, port: await freePort(), env, nodeArgs });
      servers.add(s);
      return s;
    };
    const kit = await start('kit', 'examples/server.ts', serverEnv());
    const internalHeaders = { 'x-internal-api-key': internalKey, 'x-tenant-id': tenantId };

    const listUsers = Array.from({ length: LIST_USERS }, (_, i) => `t${i}`);
    let trusted: BenchData['trusted'] = [];
    const trustRoute = await fetch(`${kit.url}/internal/session/trusted-devices?user_id=probe`, { headers: internalHeaders });
    if (trustRoute.status !== 404) {
      log(`trusting ${LIST_USERS * DEVICES_PER_LIST_USER} devices through POST /internal/session/trusted-devices`);
      trusted = await trustThroughApi(kit.url, internalHeaders, listUsers, DEVICES_PER_LIST_USER);
    }
    let unique = 0;
    const data: BenchData = {
      runId,
      internalHeaders,
      trusted,
      listUsers,
      missUsers: [...listUsers, ...Array.from({ length: 200 }, (_, i) => `nobody${i}`)],
      deviceUsers: Array.from({ length: DEVICE_USERS }, (_, i) => `d${i}`),
      deviceTokens: Array.from({ length: DEVICE_USERS }, (_, i) => jwt.sign({ sub: `d${i}`, tenant_id: tenantId }, jwtSecret, { algorithm: 'HS256', expiresIn: '3h' })),
      verify: new VerifyCodes(verifyUsers),
      unique: () => unique++,
    };

    // ---------------------------------------------------------------- probes: valid load only
    const available: Scenario[] = [];
    const bareRoutes: BareRoute[] = [];
    const skipped: string[] = [];
    for (const scenario of SCENARIOS) {
      if (!wanted(scenario.id) && !(scenario.id === 'check-hit' && (wanted('variants') || wanted('workers')))) continue;
      let spec: LoadSpec;
      try {
        spec = scenario.load(data);
      } catch (err) {
        skipped.push(`${scenario.id} (${err instanceof Error ? err.message : String(err)})`);
        continue;
      }
      const probe = await send(kit.url, spec);
      if (probe.status === 404 && isRouteNotFound(probe.body)) {
        skipped.push(`${scenario.id} (route not on this server yet)`);
        continue;
      }
      const wrong = scenario.check(probe.status, probe.body);
      if (wrong) throw new Error(`probe of ${scenario.id}: ${wrong}; answer: ${JSON.stringify(probe.body).slice(0, 300)}`);
      available.push(scenario);
      bareRoutes.push({ method: spec.method, path: scenario.barePath, status: probe.status, body: probe.body, ...(scenario.bareWhen && { when: scenario.bareWhen }) });
    }
    if (skipped.length) log(`skipped: ${skipped.join(', ')}`);
    const workDir = path.resolve('.data', 'bench');
    mkdirSync(workDir, { recursive: true });
    const routesFile = path.join(workDir, `bare-routes-${runId}.json`);
    // Routes that tell scenarios apart by a query parameter go first: the bare app tries them in order.
    writeFileSync(routesFile, JSON.stringify([...bareRoutes].sort((a, b) => Number(!a.when) - Number(!b.when))));
    const bare = await start('bare', 'scripts/bare-express.ts', { NODE_ENV: 'production', BENCH_ROUTES: routesFile });

    if (trusted.length) {
      // The hot path is a cache hit: ask about every trusted device once before measuring it.
      const hit = SCENARIOS.find((s) => s.id === 'check-hit')!.load(data);
      for (let i = 0; i < trusted.length; i++) await send(kit.url, hit);
    }

    const rows: Row[] = [];
    const measure = async (group: string, scenario: Scenario, targets: ServerProcess[]) => {
      log(`${group}: ${scenario.id} on ${targets.map((t) => t.name).join(', ')}`);
      const byTarget = new Map<ServerProcess, Measured[]>(targets.map((t) => [t, []]));
      for (const t of targets) await drive(tool, t.url, scenario.load(data), { connections: config.connections, durationSec: config.warmupSec });
      for (let round = 0; round < config.rounds && !interrupted; round++) {
        for (const t of targets) {
          const cpuBefore = cpuSeconds(t.child.pid!);
          const machineBefore = sampleMachine();
          const result = await drive(tool, t.url, scenario.load(data), { connections: config.connections, durationSec: config.durationSec });
          const machine = machineCpuBetween(machineBefore, sampleMachine());
          const perRequest = (seconds: number) => (seconds * 1e6) / Math.max(1, result.total);
          byTarget.get(t)!.push({
            ...result,
            cpuUsPerRequest: perRequest(cpuSeconds(t.child.pid!) - cpuBefore),
            postgresUsPerRequest: perRequest(machine.postgres),
            redisUsPerRequest: perRequest(machine.redis),
            idleUsPerRequest: perRequest(machine.idle),
          });
        }
      }
      for (const [t, results] of byTarget) if (results.length) rows.push({ group, scenario: scenario.id, target: t.name, results });
    };

    // ---------------------------------------------------------------- 1. scenarios, 1k trusted-device rows
    for (const scenario of available) {
      if (interrupted) break;
      if (wanted(scenario.id)) await measure('base', scenario, [kit, bare]);
    }

    // ---------------------------------------------------------------- 2. the hot path: middleware cost and workers
    const hot = available.find((s) => s.id === 'check-hit');
    if (hot && !interrupted && (wanted('variants') || wanted('workers') || config.only.size === 0)) {
      const targets = [kit, bare];
      if (wanted('variants')) {
        targets.push(await start('kit LOG_LEVEL=warn', 'examples/server.ts', serverEnv({ LOG_LEVEL: 'warn' })));
        targets.push(await start('kit REQUEST_LOG=off', 'examples/server.ts', serverEnv({ REQUEST_LOG: 'off' })));
        // What the Redis read costs: the same server on its in-process cache (warmed by the first requests).
        if (redis) targets.push(await start('kit, in-process cache', 'examples/server.ts', serverEnv({ REDIS_URL: '' })));
        // On the bare reference: what the example app's API security headers cost on their own, and pino-http (its former request log).
        for (const [name, middleware] of [
          ['bare + helmet', 'helmet'],
          ['bare + pino-http', 'pino'],
          ['bare + helmet + pino-http', 'helmet,pino'],
        ] as const) {
          targets.push(await start(name, 'scripts/bare-express.ts', { NODE_ENV: 'production', BENCH_ROUTES: routesFile, BARE_MIDDLEWARE: middleware }));
        }
      }
      if (wanted('workers')) targets.push(await start('kit WORKERS=2', 'examples/server.ts', serverEnv({ WORKERS: '2' })));
      await measure('hot path', hot, targets);
      for (const t of targets) if (t !== kit && t !== bare) await stopServer(t);
    }

    // ---------------------------------------------------------------- 3. growth: 1k and BENCH_ROWS trusted devices, side by side
    // A second database holds a copy of this one's trusted devices plus the bulk rows, and a second kit serves it. Both
    // kits are measured in the same rounds (A B A B), so the cost ratio between the two sizes leaves out the machine's
    // drift (a run used to measure the big table minutes after the small one, and bare Express itself moved by 30 %).
    const growth = available.filter((s) => s.id === 'check-miss' || s.id === 'list');
    if (growth.length && !interrupted && wanted('growth')) {
      const big = await freshDatabase();
      cleanups.unshift(() => big.drop());
      await knexStorage({ knex: big.knex }).migrate();
      const copied = await copyTrustedDevices(db.knex, big.knex);
      log(`growth: a second database with the ${copied} trusted devices and ${config.bigRows - copied} more over ${config.bigUsers} more users`);
      const t0 = Date.now();
      await bulkTrustedDevices(big.knex, tenantId, config.bigRows - copied, config.bigUsers);
      // The small table gets its statistics too: both kits read tables their planner knows.
      await db.knex.raw('ANALYZE');
      log(`growth: inserted in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const kitBig = await start(BIG_KIT, 'examples/server.ts', serverEnv({ DATABASE_URL: big.url }));
      for (const scenario of growth) if (!interrupted) await measure('growth', scenario, [kit, kitBig, bare]);
      await stopServer(kitBig);
    }

    // ---------------------------------------------------------------- report
    const memory = memoryOf(kit.child.pid!);
    if (data.verify.exhausted > 0) skipped.push(`${data.verify.exhausted} verify requests found no user with an unused code (sent anyway; raise BENCH_VERIFY_USERS)`);
    const report = render(rows, { tool, memory, skipped, seconds: (Date.now() - started) / 1000, load: [loadBefore, os.loadavg()[0]!], stealSeconds: sampleMachine().steal - machineAtStart.steal });
    process.stdout.write(report);
    const out = path.join(workDir, `results-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(out, JSON.stringify({ config: { ...config, only: [...config.only] }, tool, memory, rows }, null, 2));
    log(`raw results: ${path.relative(process.cwd(), out)}`);
  } finally {
    for (const s of [...servers]) await stopServer(s).catch((err: unknown) => log(`stopping ${s.name}: ${String(err)}`));
    for (const cleanup of cleanups) await cleanup().catch((err: unknown) => log(`cleanup: ${String(err)}`));
    await stopPostgres().catch((err: unknown) => log(`stopping Postgres: ${String(err)}`));
    await stopRedisServers().catch((err: unknown) => log(`stopping Redis: ${String(err)}`));
  }
}

/** One request of a spec, outside the load generator (probes, cache warming). */
async function send(baseUrl: string, spec: LoadSpec): Promise<{ status: number; body: unknown }> {
  const n = spec.next();
  const res = await fetch(baseUrl + n.path, { method: spec.method, headers: { ...spec.headers, ...n.headers }, ...(n.body !== undefined && { body: n.body }) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: res.status, body };
}

/** The 404 of a path no router serves (`NOT_FOUND`, code 40400001), as opposed to a 404 about a record. */
function isRouteNotFound(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as Record<string, unknown>).code === 40400001;
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');

/**
 * req/s of `a` over `b` (of the means), then the lowest and highest ratio of a single round (the two measured in the
 * same round): how far the machine's drift moved it in this run.
 */
function ratioOf(a: Measured[], b: Measured[]): string {
  const paired = a.map((x, i) => x.rps / (b[i]?.rps ?? NaN)).filter(Number.isFinite);
  const spread = paired.length > 1 ? ` (${fmt(Math.min(...paired), 2)}–${fmt(Math.max(...paired), 2)})` : '';
  return fmt(summarise(a).rps / summarise(b).rps, 2) + spread;
}

function render(rows: Row[], info: { tool: LoadTool; memory: ReturnType<typeof memoryOf>; skipped: string[]; seconds: number; load: [number, number]; stealSeconds: number }): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const lines: string[] = [
    '',
    `## npm run bench — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `${os.cpus().length} cores (${cpu}), Node ${process.version}, ${info.tool}, ${config.connections} connections, ` +
      `${config.rounds} × ${config.durationSec} s per server (after ${config.warmupSec} s warm-up), alternating; node flags: ${config.nodeFlags.join(' ') || 'none'}; whole run ${fmt(info.seconds)} s.`,
    `Load average (1 min) before / after: ${fmt(info.load[0], 2)} / ${fmt(info.load[1], 2)}. CPU time the hypervisor gave to others (steal, all cores): ${fmt(info.stealSeconds, 1)} s.`,
    '',
  ];
  // The bench itself keeps the machine busy; a high load before it started means other work competed.
  if (info.load[0] > os.cpus().length / 2) lines.push(`**Warning: the machine was busy before the run (load ${fmt(info.load[0], 2)} on ${os.cpus().length} cores): these figures are not representative.**`, '');
  const bareOf = (group: string, scenario: string) => rows.find((r) => r.group === group && r.scenario === scenario && r.target === 'bare');
  const table = (group: string, title: string) => {
    const inGroup = rows.filter((r) => r.group === group);
    if (!inGroup.length) return;
    lines.push(
      `### ${title}`,
      '',
      '| scenario | server | req/s | p50 ms | p99 ms | errors / non-2xx | ratio to bare (round by round) | server CPU µs/req | Postgres / Redis CPU µs/req | machine idle µs/req |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const r of inGroup) {
      const s = summarise(r.results);
      const bare = bareOf(group, r.scenario);
      const ratio = bare && r.target !== 'bare' ? ratioOf(r.results, bare.results) : '';
      const failures = s.failures ? `${s.failures} (${Object.entries(s.statuses).filter(([k]) => !k.startsWith('2')).map(([k, v]) => `${k}: ${v}`).join(', ')})` : '0';
      // A scenario whose requests are made when sent runs on autocannon even when wrk is the tool: say so.
      const tools = new Set(r.results.map((x) => x.tool));
      const title = (SCENARIOS.find((x) => x.id === r.scenario)?.title ?? r.scenario) + (tools.has(info.tool) ? '' : ` (${[...tools].join(', ')})`);
      lines.push(`| ${title} | ${r.target} | ${fmt(s.rps)} | ${fmt(s.p50, 2)} | ${fmt(s.p99, 2)} | ${failures} | ${ratio} | ${fmt(s.cpuUs)} | ${fmt(s.postgresUs)} / ${fmt(s.redisUs)} | ${fmt(s.idleUs)} |`);
    }
    lines.push('');
  };
  table('base', `Scenarios (${LIST_USERS * DEVICES_PER_LIST_USER} trusted-device rows)`);
  table('hot path', 'Hot path: what helmet and the request log cost, and 1 → 2 workers');
  const one = rows.find((r) => r.group === 'hot path' && r.target === 'kit');
  const two = rows.find((r) => r.group === 'hot path' && r.target === 'kit WORKERS=2');
  if (one && two) lines.push(`Hot path 1 → 2 workers: ×${fmt(summarise(two.results).rps / summarise(one.results).rps, 2)}`, '');
  table('growth', `Growth: ${SMALL_ROWS} and ${config.bigRows.toLocaleString('en')} trusted-device rows, side by side`);
  const growthRows = rows.filter((r) => r.group === 'growth' && r.target === 'kit');
  if (growthRows.length) {
    // Both sizes measured in the same rounds: the ratio of the means, then the lowest and highest of a single round.
    lines.push(
      `| scenario | req/s at ${SMALL_ROWS} | req/s at ${config.bigRows.toLocaleString('en')} | cost ratio (goal ≤ 1.3; round by round) | p50 ratio |`,
      '|---|---:|---:|---:|---:|',
    );
    for (const small of growthRows) {
      const bigRow = rows.find((r) => r.group === 'growth' && r.scenario === small.scenario && r.target === BIG_KIT);
      if (!bigRow) continue;
      const a = summarise(small.results);
      const b = summarise(bigRow.results);
      lines.push(`| ${SCENARIOS.find((x) => x.id === small.scenario)?.title ?? small.scenario} | ${fmt(a.rps)} | ${fmt(b.rps)} | ${ratioOf(small.results, bigRow.results)} | ${fmt(b.p50 / a.p50, 2)} |`);
    }
    lines.push('');
  }
  if (info.memory) lines.push(`Server resident memory after the run (1 worker): ${fmt(info.memory.rssMiB, 1)} MiB (peak ${fmt(info.memory.peakMiB, 1)} MiB; goal < 200 MiB).`, '');
  if (info.skipped.length) lines.push(`Notes: ${info.skipped.join('; ')}.`, '');
  return lines.join('\n') + '\n';
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
