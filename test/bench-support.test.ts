/** `npm run bench`'s own logic (no timing): codes it sends are right and single-use, wrk's report is read right. */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { parseWrk, percentile } from '../scripts/bench/load.js';
import { VerifyCodes, base32, currentStep, hotp, type TotpUser } from '../scripts/bench/seed.js';
import { cycle } from '../scripts/bench/scenarios.js';

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
});
