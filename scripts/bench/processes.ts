/** Child processes of the benchmark: compile and start a server script, wait until it answers, read its memory, stop it. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BUILD = path.join(ROOT, '.data', 'bench', 'build');

/**
 * Compiles the example server and the bare app to plain JavaScript in .data/bench/build (incremental:
 * seconds after the first time), so both run as they would in production: no TypeScript loader, whose
 * hooks thread alone holds ~40 MB. Returns how to start a script: with the build, or (`tsx` true) under tsx.
 */
export function prepareScripts(tsx: boolean): (script: string) => string[] {
  if (tsx) return (script) => ['--import', 'tsx', script];
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'scripts', 'bench', 'tsconfig.json')], { cwd: ROOT, stdio: 'inherit' });
  return (script) => [path.join(BUILD, script.replace(/\.ts$/, '.js'))];
}
const READY_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 20_000;

/** A server started by the benchmark. */
export interface ServerProcess {
  name: string;
  url: string;
  child: ChildProcess;
  /** Last lines of stderr (and of stdout when it is kept), for error messages. */
  tail(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  name: string;
  /** Script path relative to the project root. */
  script: string;
  /** Node arguments that run `script` (from `prepareScripts()`). */
  command: (script: string) => string[];
  port: number;
  env: Record<string, string>;
  /** Extra node flags, e.g. `--cpu-prof`. */
  nodeArgs?: string[];
  /** Keep stdout (start-up messages) instead of sending it to /dev/null. The request log goes to stdout: keep it off under load. */
  keepStdout?: boolean;
}

/**
 * Starts node on the script directly (not through a wrapper like the `tsx` CLI: the pid must be the
 * server's own, for /proc/<pid>/status) and waits for `GET /healthz`.
 * stdout goes to /dev/null by default: the request log is written as in production, but nobody reads it.
 */
export async function startServer(options: StartOptions): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), ...options.command(options.script)], {
    cwd: ROOT,
    env: { ...process.env, ...options.env, PORT: String(options.port), HOST: '127.0.0.1' },
    stdio: ['ignore', options.keepStdout ? 'pipe' : 'ignore', 'pipe'],
  });
  const lines: string[] = [];
  const collect = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    if (lines.length > 40) lines.splice(0, lines.length - 40);
  };
  child.stderr?.on('data', collect);
  child.stdout?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${options.port}`;
  const server: ServerProcess = {
    name: options.name,
    url,
    child,
    tail: () => lines.join('\n'),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${options.name} exited with code ${child.exitCode} while starting:\n${server.tail()}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) return server;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`${options.name} did not answer /healthz within ${READY_TIMEOUT_MS / 1000} s:\n${server.tail()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Resident memory of a process in MiB (VmRSS), and its peak (VmHWM), from /proc/<pid>/status. */
export function memoryOf(pid: number): { rssMiB: number; peakMiB: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

/** Pids of the direct children of `pid` (the workers of a cluster primary). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const TICKS_PER_SECOND = 100;

/**
 * CPU seconds (user + system) used so far by `pid` and its direct children (cluster workers), from
 * /proc/<pid>/stat. Per request, it tells what a server costs even on a machine busy with other work.
 */
export function cpuSeconds(pid: number): number {
  let seconds = 0;
  for (const p of [pid, ...childPids(pid)]) seconds += processCpu(readOr(`/proc/${p}/stat`))?.seconds ?? 0;
  return seconds;
}

/** CPU seconds of the local Postgres and Redis processes, and the machine's idle and stolen seconds (all cores). */
export interface MachineCpu {
  postgres: number;
  redis: number;
  idle: number;
  steal: number;
}

/** A snapshot for machineCpuBetween(): the Postgres and Redis processes by pid, and the cores' idle and steal. */
export interface MachineSample {
  processes: Map<string, { kind: 'postgres' | 'redis'; seconds: number }>;
  idle: number;
  steal: number;
}

/**
 * What the machine has spent besides the server, from /proc: the CPU time of every local process named `postgres…`
 * (postmaster and backends) and `redis-server…`, and from /proc/stat the idle (+ iowait) and steal time of all
 * cores. Postgres or Redis on another machine counts 0.
 */
export function sampleMachine(): MachineSample {
  const processes: MachineSample['processes'] = new Map();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry));
  } catch {
    // not Linux
  }
  for (const pid of entries) {
    const stat = processCpu(readOr(`/proc/${pid}/stat`));
    const kind = stat?.name.startsWith('postgres') ? 'postgres' : stat?.name.startsWith('redis-server') ? 'redis' : undefined;
    if (stat && kind) processes.set(pid, { kind, seconds: stat.seconds });
  }
  return { processes, ...coresIdle(readOr('/proc/stat')) };
}

/**
 * The CPU spent between two samples. Per process that is still there at the end: a backend started in between
 * counts whole, one that ended in between is not seen (its time went to its parent's children's time).
 */
export function machineCpuBetween(before: MachineSample, after: MachineSample): MachineCpu {
  const cpu: MachineCpu = { postgres: 0, redis: 0, idle: after.idle - before.idle, steal: after.steal - before.steal };
  for (const [pid, { kind, seconds }] of after.processes) {
    const earlier = before.processes.get(pid);
    // A pid used again by another process counts from its start.
    cpu[kind] += earlier && earlier.kind === kind && earlier.seconds <= seconds ? seconds - earlier.seconds : seconds;
  }
  return cpu;
}

const readOr = (file: string): string => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return ''; // gone, or not Linux
  }
};

/** A /proc/<pid>/stat line's command name and user + system CPU seconds; the name may hold spaces and ')'. */
export function processCpu(stat: string): { name: string; seconds: number } | undefined {
  const open = stat.indexOf(' (');
  const close = stat.lastIndexOf(') ');
  if (open < 0 || close < open) return undefined;
  // After the name: state, ppid, …; utime and stime are the 12th and 13th of these.
  const fields = stat.slice(close + 2).split(' ');
  const seconds = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  return Number.isFinite(seconds) ? { name: stat.slice(open + 2, close), seconds } : undefined;
}

/** Idle (+ iowait) and steal seconds of all cores, from /proc/stat's first line (`cpu  user nice system idle iowait irq softirq steal …`). */
export function coresIdle(procStat: string): { idle: number; steal: number } {
  const ticks = (procStat.split('\n', 1)[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  if (ticks.length < 5 || ticks.some((t) => !Number.isFinite(t))) return { idle: NaN, steal: NaN };
  return { idle: (ticks[3]! + ticks[4]!) / TICKS_PER_SECOND, steal: (ticks[7] ?? 0) / TICKS_PER_SECOND };
}

/** A free TCP port on 127.0.0.1 (not examples/embedded-postgres.ts's: importing that module hooks the process's signals). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.once('error', reject);
  });
}
