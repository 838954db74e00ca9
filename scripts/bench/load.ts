/**
 * The load generator behind `npm run bench`: autocannon (from node_modules, run in this process), or
 * `wrk` when it is on PATH (lower client overhead; never installed by the bench). Both report the
 * same figures: req/s, p50, p99 and failures (socket errors, timeouts, non-2xx answers).
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';

/** What one scenario sends: fixed method and headers, and a path (and body) per request. */
export interface LoadSpec {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  /** The next request; called once per request sent, so it can hand out single-use values. */
  next(): NextRequest;
  /** Requests that must not repeat within a run: wrk gets a larger pool of them, prepared up front. */
  unique?: boolean;
  /**
   * Requests that must be made at the moment they are sent (a TOTP code of the current time step, used
   * once): driven by autocannon, which asks `next()` per request, even when wrk is the tool.
   */
  madeWhenSent?: boolean;
}

/** One request's own parts; `headers` add to the spec's. */
export interface NextRequest {
  path: string;
  body?: string;
  headers?: Record<string, string>;
}

export interface LoadOptions {
  connections: number;
  durationSec: number;
}

export interface LoadResult {
  /** The load generator that produced it. */
  tool: LoadTool;
  rps: number;
  /** Milliseconds. */
  p50: number;
  p99: number;
  total: number;
  /** Socket errors and timeouts. */
  errors: number;
  non2xx: number;
  /** Status → count, to explain failures. */
  statuses: Record<string, number>;
}

export type LoadTool = 'autocannon' | 'wrk';

/** `wrk` when it is on PATH and BENCH_TOOL does not ask for autocannon. */
export function pickTool(): LoadTool {
  if (process.env.BENCH_TOOL === 'autocannon') return 'autocannon';
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return 'wrk';
  } catch (err) {
    // wrk --version exits 1 after printing its version: it is there.
    if ((err as { status?: number }).status === 1) return 'wrk';
    if (process.env.BENCH_TOOL === 'wrk') throw new Error('BENCH_TOOL=wrk but wrk is not on PATH (Debian: apt-get install wrk)', { cause: err });
    return 'autocannon';
  }
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Runs `spec` against `baseUrl` for the given time and connections. */
export function drive(tool: LoadTool, baseUrl: string, spec: LoadSpec, options: LoadOptions): Promise<LoadResult> {
  return tool === 'wrk' && !spec.madeWhenSent ? driveWrk(baseUrl, spec, options) : driveAutocannon(baseUrl, spec, options);
}

async function driveAutocannon(baseUrl: string, spec: LoadSpec, options: LoadOptions): Promise<LoadResult> {
  const first = spec.next();
  const instance = autocannon({
    url: baseUrl,
    connections: options.connections,
    duration: options.durationSec,
    timeout: 10,
    requests: [
      {
        method: spec.method,
        headers: spec.headers,
        path: first.path,
        ...(first.body !== undefined && { body: first.body }),
        ...(first.headers && { headers: { ...spec.headers, ...first.headers } }),
        setupRequest: (request) => {
          const n = spec.next();
          request.path = n.path;
          if (n.body !== undefined) request.body = n.body;
          if (n.headers) request.headers = { ...spec.headers, ...n.headers };
          return request;
        },
      },
    ],
  });
  // autocannon's own percentiles are whole milliseconds; keep every response time for finer ones.
  const times: number[] = [];
  const statuses: Record<string, number> = {};
  instance.on('response', (_client, status, _bytes, ms) => {
    times.push(ms);
    statuses[status] = (statuses[status] ?? 0) + 1;
  });
  const result = await instance;
  const sorted = Float64Array.from(times).sort();
  return {
    tool: 'autocannon',
    rps: times.length / result.duration,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    total: times.length,
    errors: result.errors,
    non2xx: result.non2xx,
    statuses,
  };
}

/** wrk threads: 2 leaves the rest of a small machine to the servers. */
const WRK_THREADS = 2;
/** Requests prepared for a wrk run of a unique (single-use) scenario: more than a run sends (≈ 7k req/s × 8 s). */
const WRK_UNIQUE_POOL = 60_000;
/** Requests prepared for other scenarios (they cycle). */
const WRK_POOL = 2_000;

async function driveWrk(baseUrl: string, spec: LoadSpec, options: LoadOptions): Promise<LoadResult> {
  // wrk cannot call back into this process: the requests are prepared up front, one a line (path, body and
  // headers, tab-separated), and each thread walks its own share (thread i takes lines i, i+T, i+2T, …), so
  // single-use values are never sent twice.
  const pool = Array.from({ length: spec.unique ? WRK_UNIQUE_POOL : WRK_POOL }, () => spec.next());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mfa-bench-wrk-'));
  try {
    const requests = path.join(dir, 'requests.tsv');
    const line = (r: NextRequest) => {
      const headers = Object.entries({ ...spec.headers, ...r.headers }).map(([k, v]) => `${k}: ${v}`);
      const fields = [r.path, r.body ?? '', ...headers];
      if (fields.some((f) => /[\t\n]/.test(f))) throw new Error('a benchmark request contains a tab or a newline');
      return fields.join('\t');
    };
    writeFileSync(requests, pool.map(line).join('\n') + '\n');
    const script = path.join(dir, 'requests.lua');
    writeFileSync(
      script,
      `
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
local reqs = {}
local counter = 1
function init(args)
  local i = 0
  for l in io.lines(${JSON.stringify(requests)}) do
    if i % ${WRK_THREADS} == tid then
      local fields = {}
      for f in (l .. "\t"):gmatch("([^\t]*)\t") do table.insert(fields, f) end
      local headers = {}
      for k = 3, #fields do
        local name, value = fields[k]:match("^([^:]+): (.*)$")
        headers[name] = value
      end
      local body = fields[2]
      if body == "" then body = nil end
      table.insert(reqs, wrk.format(${JSON.stringify(spec.method)}, fields[1], headers, body))
    end
    i = i + 1
  end
end
function request()
  local r = reqs[counter]
  counter = counter + 1
  if counter > #reqs then counter = 1 end
  return r
end
`,
    );
    const args = ['-t', String(WRK_THREADS), '-c', String(options.connections), '-d', `${options.durationSec}s`, '--latency', '--timeout', '10s', '-s', script, baseUrl];
    const { stdout } = await promisify(execFile)('wrk', args, { maxBuffer: 1 << 20 });
    return parseWrk(stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const toMs = (value: string, unit: string): number => Number(value) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? NaN);

/** Reads wrk's `--latency` report. */
export function parseWrk(out: string): LoadResult {
  const latency = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const total = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return {
    tool: 'wrk',
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    p50: latency('50'),
    p99: latency('99'),
    total,
    errors,
    non2xx,
    statuses: non2xx ? { 'non-2xx': non2xx } : {},
  };
}
