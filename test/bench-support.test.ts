/** `npm run bench`'s own logic (no timing): codes it sends are right and single-use, wrk's report is read right. */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { parseWrk, percentile } from '../scripts/bench/load.js';
import { VerifyCodes, base32, currentStep, hotp, type TotpUser } from '../scripts/bench/seed.js';
import { cycle } from '../scripts/bench/scenarios.js';
import { coresIdle, cpuSeconds, machineCpuBetween, processCpu, type MachineSample } from '../scripts/bench/processes.js';

describe('bench support', () => {
  it('base32 encodes as RFC 4648 (unpadded)', () => {
    expect(base32(Buffer.from('foobar'))).to.equal('MZXW6YTBOI');
    expect(base32(Buffer.from('f'))).to.equal('MY');
  });

  it('hotp() gives the RFC 4226 Appendix D values and agrees with oathtool', () => {
    const rfc = Buffer.from('12345678901234567890');
    expect([0, 1, 2, 9].map((c) => hotp(rfc, c))).to.deep.equal(['755224', '287082', '359152', '520489']);
    const key = randomBytes(20);
    const counter = currentStep();
    const theirs = execFileSync('oathtool', ['--hotp', '-c', String(counter), key.toString('hex')], { encoding: 'utf8' }).trim();
    expect(hotp(key, counter)).to.equal(theirs);
  });

  it('VerifyCodes never hands out one user step twice, and only steps the server accepts now', () => {
    const users: TotpUser[] = Array.from({ length: 5 }, (_, i) => ({ userId: `u${i}`, key: randomBytes(20) }));
    const codes = new VerifyCodes(users);
    const step = currentStep();
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const { userId, code } = codes.take();
      const user = users.find((u) => u.userId === userId)!;
      const used = [step, step + 1, step + 2].find((s) => hotp(user.key, s) === code);
      expect(used, 'a code of step, step + 1 (or the next window)').to.not.equal(undefined);
      expect(seen.has(`${userId}:${used}`), `${userId} at ${used} twice`).to.equal(false);
      seen.add(`${userId}:${used}`);
    }
    expect(codes.exhausted).to.equal(0);
    // Two uses per user per window: the 11th request in the same window has nobody left.
    if (currentStep() === step) {
      codes.take();
      expect(codes.exhausted).to.equal(1);
    }
  });

  it('reads a wrk --latency report', () => {
    const out = `Running 8s test @ http://127.0.0.1:1234
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.12ms    3.01ms  80.00ms   90.00%
  Latency Distribution
     50%    9.50ms
     75%   11.00ms
     90%   13.00ms
     99%    1.20s
  28000 requests in 8.00s, 9.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   3500.25
Transfer/sec:      1.12MB
`;
    expect(parseWrk(out)).to.deep.equal({ tool: 'wrk', rps: 3500.25, p50: 9.5, p99: 1200, total: 28000, errors: 5, non2xx: 7, statuses: { 'non-2xx': 7 } });
    expect(parseWrk(out.replace('9.50ms', '950.00us')).p50).to.be.closeTo(0.95, 1e-9);
  });

  it('percentile() and cycle()', () => {
    const sorted = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(percentile(sorted, 50)).to.equal(6);
    expect(percentile(sorted, 99)).to.equal(10);
    const next = cycle(['a', 'b']);
    expect([next(), next(), next()]).to.deep.equal(['a', 'b', 'a']);
    expect(() => cycle([])).to.throw(/seed produced no data/);
  });

  it('processCpu() reads the name and user + system seconds of a /proc/<pid>/stat line, spaces and ")" in the name included', () => {
    // pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime …
    const line = '4242 (postgres: bench (x) idle) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 566 7 8 20 0 1 0 100 0 0';
    expect(processCpu(line)).to.deep.equal({ name: 'postgres: bench (x) idle', seconds: 18 });
    expect(processCpu('')).to.equal(undefined);
    expect(processCpu('12 (x) S 1')).to.equal(undefined);
  });

  it('coresIdle() takes idle + iowait and steal from /proc/stat', () => {
    expect(coresIdle('cpu  1024038 0 249457 7847371 4911 0 70350 50408 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n')).to.deep.equal({ idle: 78522.82, steal: 504.08 });
    const unreadable = coresIdle('');
    expect(unreadable.idle).to.be.NaN;
  });

  it('cpuSeconds() of this process grows by the CPU time it spends', function () {
    if (process.platform !== 'linux') this.skip();
    const before = cpuSeconds(process.pid);
    const start = process.cpuUsage();
    let spent = 0;
    while (spent < 150_000) {
      for (let i = 0; i < 1e5; i++) Math.sqrt(i);
      const used = process.cpuUsage(start);
      spent = used.user + used.system;
    }
    const grown = cpuSeconds(process.pid) - before;
    expect(grown).to.be.at.least(0.1).and.below(5);
  });

  it('machineCpuBetween() adds what each Postgres / Redis process spent, never less than zero', () => {
    const sample = (idle: number, processes: Array<[string, 'postgres' | 'redis', number]>): MachineSample => ({
      processes: new Map(processes.map(([pid, kind, seconds]) => [pid, { kind, seconds }])),
      idle,
      steal: 1,
    });
    const before = sample(100, [['10', 'postgres', 5], ['11', 'postgres', 2], ['12', 'redis', 1], ['13', 'postgres', 9]]);
    // 10 spent 1.5; 11 ended (not seen); 12 spent 0.25; 13 is a new process with the pid of an old one; 14 started.
    const after = sample(103, [['10', 'postgres', 6.5], ['12', 'redis', 1.25], ['13', 'postgres', 0.5], ['14', 'postgres', 0.25]]);
    expect(machineCpuBetween(before, after)).to.deep.equal({ postgres: 2.25, redis: 0.25, idle: 3, steal: 0 });
  });
});
