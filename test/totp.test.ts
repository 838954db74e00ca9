/** lib/totp: RFC 6238 Appendix B vectors, agreement with Debian's oathtool, the step window, replay skipping, URI and QR. */
import { expect } from 'chai';
import { createTotp } from '../lib/totp.js';
import type { TotpAlgorithm, TotpParams } from '../storage/types.js';
import { oathtool, TestClock } from './support/mfa.js';

const ascii = (s: string) => new TextEncoder().encode(s);
const params = (algorithm: TotpAlgorithm, digits = 6, period = 30, skew = 1): TotpParams => ({ algorithm, digits, period, skew });

/** RFC 6238 Appendix B: the key is the ASCII digits, repeated to the hash's size. */
const RFC_KEYS: Record<TotpAlgorithm, Uint8Array> = {
  SHA1: ascii('12345678901234567890'),
  SHA256: ascii('12345678901234567890123456789012'),
  SHA512: ascii('1234567890123456789012345678901234567890123456789012345678901234'),
};
const RFC_VECTORS: Array<[number, Record<TotpAlgorithm, string>]> = [
  [59, { SHA1: '94287082', SHA256: '46119246', SHA512: '90693936' }],
  [1111111109, { SHA1: '07081804', SHA256: '68084774', SHA512: '25091201' }],
  [1111111111, { SHA1: '14050471', SHA256: '67062674', SHA512: '99943326' }],
  [1234567890, { SHA1: '89005924', SHA256: '91819424', SHA512: '93441116' }],
  [2000000000, { SHA1: '69279037', SHA256: '90698825', SHA512: '38618901' }],
  [20000000000, { SHA1: '65353130', SHA256: '77737706', SHA512: '47863826' }],
];

/** RFC 4648 base32 without padding (what oathtool -b reads). */
function base32(bytes: Uint8Array): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

describe('lib/totp', () => {
  describe('RFC 6238 Appendix B', () => {
    for (const [seconds, codes] of RFC_VECTORS) {
      for (const algorithm of ['SHA1', 'SHA256', 'SHA512'] as const) {
        it(`T=${seconds} ${algorithm} → ${codes[algorithm]} (generate and verify)`, async () => {
          const totp = createTotp({ now: () => seconds * 1000 });
          const p = params(algorithm, 8, 30, 0);
          expect(await totp.generate(RFC_KEYS[algorithm], p)).to.equal(codes[algorithm]);
          const check = await totp.verify(RFC_KEYS[algorithm], codes[algorithm], p);
          expect(check).to.deep.equal({ valid: true, step: Math.floor(seconds / 30), delta: 0 });
        });
      }
    }

    it('oathtool agrees with the vectors (so it can judge the rest)', () => {
      for (const [seconds, codes] of RFC_VECTORS.slice(0, 5)) {
        for (const algorithm of ['SHA1', 'SHA256', 'SHA512'] as const) {
          expect(oathtool(base32(RFC_KEYS[algorithm]), seconds * 1000, { algorithm, digits: 8 }), `${algorithm}@${seconds}`).to.equal(codes[algorithm]);
        }
      }
    });
  });

  describe('against oathtool', () => {
    const cases: Array<[TotpAlgorithm, number, number]> = [
      ['SHA1', 6, 30],
      ['SHA1', 8, 30],
      ['SHA256', 6, 30],
      ['SHA256', 8, 60],
      ['SHA512', 6, 30],
      ['SHA512', 7, 45],
    ];
    for (const [algorithm, digits, period] of cases) {
      it(`${algorithm}, ${digits} digits, ${period} s: generated secrets give oathtool's codes and accept them`, async () => {
        const clock = new TestClock(Date.UTC(2026, 3, 3, 12, 0, 7));
        const totp = createTotp({ now: clock.now });
        for (let i = 0; i < 3; i++) {
          const secret = totp.generateSecret();
          for (const offset of [0, 1, 17, 1000]) {
            clock.ms = Date.UTC(2026, 3, 3, 12, 0, 7) + offset * period * 1000 + i * 3333;
            const theirs = oathtool(secret, clock.ms, { algorithm, digits, period });
            expect(await totp.generate(secret, params(algorithm, digits, period)), `${secret}@${clock.ms}`).to.equal(theirs);
            const check = await totp.verify(secret, theirs, params(algorithm, digits, period));
            expect(check.valid).to.equal(true);
          }
        }
      });
    }
  });

  describe('secrets', () => {
    it('are 160-bit base32 (32 characters), different every time', () => {
      const totp = createTotp();
      const seen = new Set<string>();
      for (let i = 0; i < 50; i++) {
        const s = totp.generateSecret();
        expect(s).to.match(/^[A-Z2-7]{32}$/);
        seen.add(s);
      }
      expect(seen.size).to.equal(50);
    });
  });

  describe('window', () => {
    const secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
    const start = Date.UTC(2026, 0, 1, 0, 0, 10);

    it('accepts the codes of the previous, current and next step with skew 1, and says which step', async () => {
      const clock = new TestClock(start);
      const totp = createTotp({ now: clock.now });
      const current = Math.floor(start / 30_000);
      for (const delta of [-1, 0, 1]) {
        const code = oathtool(secret, start + delta * 30_000);
        expect(await totp.verify(secret, code, params('SHA1')), `delta ${delta}`).to.deep.equal({ valid: true, step: current + delta, delta });
      }
    });

    it('refuses codes two steps away with skew 1, accepts them with skew 2, refuses ±1 with skew 0', async () => {
      const totp = createTotp({ now: () => start });
      for (const delta of [-2, 2]) {
        const code = oathtool(secret, start + delta * 30_000);
        expect((await totp.verify(secret, code, params('SHA1'))).valid, `skew 1, delta ${delta}`).to.equal(false);
        expect((await totp.verify(secret, code, params('SHA1', 6, 30, 2))).valid, `skew 2, delta ${delta}`).to.equal(true);
      }
      for (const delta of [-1, 1]) {
        expect((await totp.verify(secret, oathtool(secret, start + delta * 30_000), params('SHA1', 6, 30, 0))).valid).to.equal(false);
      }
    });

    it('holds at the very edges of a step', async () => {
      const edge = Math.floor(start / 30_000) * 30_000; // first millisecond of a step
      for (const at of [edge, edge + 29_999]) {
        const totp = createTotp({ now: () => at });
        expect((await totp.verify(secret, oathtool(secret, at - 30_000), params('SHA1'))).valid).to.equal(true);
        expect((await totp.verify(secret, oathtool(secret, at + 30_000), params('SHA1'))).valid).to.equal(true);
        expect((await totp.verify(secret, oathtool(secret, at - 60_000), params('SHA1'))).valid).to.equal(false);
        expect((await totp.verify(secret, oathtool(secret, at + 60_000), params('SHA1'))).valid).to.equal(false);
      }
    });

    it('skips steps at or below afterStep (replays), even when afterStep is beyond the window', async () => {
      const totp = createTotp({ now: () => start });
      const step = Math.floor(start / 30_000);
      const code = oathtool(secret, start);
      expect((await totp.verify(secret, code, params('SHA1'), { afterStep: step - 1 })).valid).to.equal(true);
      expect(await totp.verify(secret, code, params('SHA1'), { afterStep: step })).to.deep.equal({ valid: false, reason: 'mismatch' });
      expect((await totp.verify(secret, code, params('SHA1'), { afterStep: step + 50 })).valid).to.equal(false);
      expect((await totp.verify(secret, code, params('SHA1'), { afterStep: null })).valid).to.equal(true);
    });

    it('says format (never throws) for codes of the wrong length or with non-digits', async () => {
      const totp = createTotp({ now: () => start });
      for (const code of ['', '12345', '1234567', 'abcdef', '12345a', '１２３４５６']) {
        expect(await totp.verify(secret, code, params('SHA1')), code).to.deep.equal({ valid: false, reason: 'format' });
      }
    });
  });

  describe('otpauth URI and QR code', () => {
    it('carries issuer, account label, secret and the non-default parameters', () => {
      const totp = createTotp();
      const uri = totp.uri({ issuer: 'ACME Co', account: 'alice@example.com', secret: 'JBSWY3DPEHPK3PXP', params: params('SHA256', 8, 60) });
      const url = new URL(uri);
      expect(url.protocol).to.equal('otpauth:');
      expect(url.host).to.equal('totp');
      expect(decodeURIComponent(url.pathname)).to.equal('/ACME Co:alice@example.com');
      expect(url.searchParams.get('secret')).to.equal('JBSWY3DPEHPK3PXP');
      expect(url.searchParams.get('issuer')).to.equal('ACME Co');
      expect(url.searchParams.get('algorithm')).to.equal('SHA256');
      expect(url.searchParams.get('digits')).to.equal('8');
      expect(url.searchParams.get('period')).to.equal('60');
    });

    it('renders the URI as a PNG data URL', async () => {
      const totp = createTotp();
      const qr = await totp.qrCode('otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&issuer=A');
      expect(qr).to.match(/^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
      expect(Buffer.from(qr.split(',')[1]!, 'base64').subarray(1, 4).toString('ascii')).to.equal('PNG');
    });
  });
});
