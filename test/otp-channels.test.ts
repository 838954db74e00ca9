/** sms/email one-time codes on real Postgres: delivery, single use (also under a race), expiry, attempts, destinations, nothing in plaintext. */
import { expect } from 'chai';
import { createHash, createHmac } from 'node:crypto';
import { createOtpChannels, demoSender, generateKey, isProblemError, keyRing, maskDestination, normalizeDestination, silentLogger, type Logger, type MfaCodeMessage, type OtpChannels } from '../index.js';
import { dumpTables } from './support/dump.js';
import { insertDevice, migratedStorage, type TestDb } from './support/fixtures.js';

/** A sender that keeps what it was asked to send. */
function recordingSender() {
  const sent: MfaCodeMessage[] = [];
  return {
    sent,
    last: () => sent[sent.length - 1]!,
    send(message: MfaCodeMessage) {
      sent.push({ ...message });
    },
  };
}

/** A logger that keeps every line as JSON text. */
function capturingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (obj: object, msg?: string) => lines.push(JSON.stringify({ level, ...obj, msg }));
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function problemOf(fn: () => unknown): { status: number; key: string; errors: unknown } {
  try {
    fn();
  } catch (err) {
    if (isProblemError(err)) return { status: err.status, key: err.key, errors: err.errors };
    throw err;
  }
  throw new Error('expected a Problem');
}

describe('sms and email one-time codes', () => {
  let db: TestDb;
  let clock: number;
  let sender: ReturnType<typeof recordingSender>;
  let otp: OtpChannels;

  const PHONE = '+447700900789';
  const EMAIL = 'alice.smith@example.com';

  const device = (userId: string, method: 'sms' | 'email' = 'sms', tenantId = 'acme') =>
    insertDevice(db.knex, { tenantId, userId, method, secret: method === 'sms' ? PHONE : EMAIL, verified: false });

  before(async () => {
    db = await migratedStorage();
  });
  beforeEach(() => {
    clock = Date.UTC(2026, 4, 12, 12, 0, 0);
    sender = recordingSender();
    otp = createOtpChannels({ storage: db.storage, sender, logger: silentLogger, now: () => clock });
  });
  after(async () => {
    await db.drop();
  });

  describe('issue and verify', () => {
    it('sends a 6-digit code to the destination; the code verifies once, then never again', async () => {
      const deviceId = await device('u-once');
      await otp.issue({ tenantId: 'acme', userId: 'u-once', deviceId, method: 'sms', destination: PHONE, purpose: 'enrollment' });
      expect(sender.sent).to.have.length(1);
      const msg = sender.last();
      expect(msg).to.include({ tenantId: 'acme', userId: 'u-once', method: 'sms', destination: PHONE, purpose: 'enrollment' });
      expect(msg.code).to.match(/^[0-9]{6}$/);
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-once', deviceId, code: msg.code, purpose: 'enrollment' })).to.equal(true);
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-once', deviceId, code: msg.code, purpose: 'enrollment' })).to.equal(false);
    });

    it('accepts the code typed with a space or dash', async () => {
      const deviceId = await device('u-typed', 'email');
      await otp.issue({ tenantId: 'acme', userId: 'u-typed', deviceId, method: 'email', destination: EMAIL, purpose: 'login' });
      const { code } = sender.last();
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-typed', deviceId, code: ` ${code.slice(0, 3)}-${code.slice(3)} `, purpose: 'login' })).to.equal(true);
    });

    it('refuses a wrong code, and a code of another purpose, device, user or tenant, without consuming the right one', async () => {
      const deviceId = await device('u-wrong');
      const otherDevice = await device('u-wrong');
      await otp.issue({ tenantId: 'acme', userId: 'u-wrong', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const { code } = sender.last();
      const wrong = code === '000000' ? '000001' : '000000';
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-wrong', deviceId, code: wrong, purpose: 'login' })).to.equal(false);
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-wrong', deviceId, code, purpose: 'enrollment' })).to.equal(false);
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-wrong', deviceId: otherDevice, code, purpose: 'login' })).to.equal(false);
      expect(await otp.verify({ tenantId: 'acme', userId: 'mallory', deviceId, code, purpose: 'login' })).to.equal(false);
      expect(await otp.verify({ tenantId: 'other', userId: 'u-wrong', deviceId, code, purpose: 'login' })).to.equal(false);
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-wrong', deviceId, code, purpose: 'login' })).to.equal(true);
    });

    it('refuses when no code was issued', async () => {
      const deviceId = await device('u-none');
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-none', deviceId, code: '123456', purpose: 'login' })).to.equal(false);
    });

    it('a new code replaces the pending one (and its attempt count)', async () => {
      const deviceId = await device('u-reissue');
      await otp.issue({ tenantId: 'acme', userId: 'u-reissue', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const first = sender.last().code;
      for (let i = 0; i < 4; i++) await otp.verify({ tenantId: 'acme', userId: 'u-reissue', deviceId, code: first === '999999' ? '999998' : '999999', purpose: 'login' });
      await otp.issue({ tenantId: 'acme', userId: 'u-reissue', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const second = sender.last().code;
      if (first !== second) expect(await otp.verify({ tenantId: 'acme', userId: 'u-reissue', deviceId, code: first, purpose: 'login' })).to.equal(false);
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-reissue', deviceId, code: second, purpose: 'login' })).to.equal(true);
    });

    it('keeps enrolment and login codes of one device apart', async () => {
      const deviceId = await device('u-purpose');
      await otp.issue({ tenantId: 'acme', userId: 'u-purpose', deviceId, method: 'sms', destination: PHONE, purpose: 'enrollment' });
      const enrol = sender.last().code;
      await otp.issue({ tenantId: 'acme', userId: 'u-purpose', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const login = sender.last().code;
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-purpose', deviceId, code: enrol, purpose: 'enrollment' })).to.equal(true);
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-purpose', deviceId, code: login, purpose: 'login' })).to.equal(true);
    });

    it('makes codes from the whole 6-digit range (leading zeros kept)', async () => {
      const deviceId = await device('u-range');
      const codes = new Set<string>();
      for (let i = 0; i < 40; i++) {
        await otp.issue({ tenantId: 'acme', userId: 'u-range', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
        codes.add(sender.last().code);
      }
      for (const c of codes) expect(c).to.match(/^[0-9]{6}$/);
      // 40 draws from 10^6: a repeat has probability < 0.1 %; all equal would mean a broken generator.
      expect(codes.size).to.be.at.least(38);
      // From all of 10^6, not a smaller range padded to six digits: 40 codes all under 100000 has probability 10^-40.
      expect([...codes].some((c) => c[0] !== '0')).to.equal(true);
    });

    it('answers DEVICE_NOT_FOUND when the device does not exist, and sends nothing', async () => {
      let caught: unknown;
      try {
        await otp.issue({ tenantId: 'acme', userId: 'u-ghost', deviceId: '00000000-0000-4000-8000-000000000000', method: 'sms', destination: PHONE, purpose: 'login' });
      } catch (err) {
        caught = err;
      }
      expect(isProblemError(caught) && caught.key === 'DEVICE_NOT_FOUND').to.equal(true);
      expect(sender.sent).to.have.length(0);
    });

    it('a removed device takes its pending code with it', async () => {
      const deviceId = await device('u-removed');
      await otp.issue({ tenantId: 'acme', userId: 'u-removed', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      await db.knex('mfa_devices').where({ tenant_id: 'acme', id: deviceId }).delete();
      expect(await db.knex('mfa_otp_codes').where({ tenant_id: 'acme', device_id: deviceId })).to.have.length(0);
    });
  });

  describe('expiry (injected clock)', () => {
    it('accepts a code until 10 minutes have passed, refuses it after', async () => {
      const deviceId = await device('u-expiry');
      await otp.issue({ tenantId: 'acme', userId: 'u-expiry', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      clock += 600_000;
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-expiry', deviceId, code: sender.last().code, purpose: 'login' })).to.equal(false);

      await otp.issue({ tenantId: 'acme', userId: 'u-expiry', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      clock += 599_000;
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-expiry', deviceId, code: sender.last().code, purpose: 'login' })).to.equal(true);
    });

    it('honours codeTtlSeconds', async () => {
      const short = createOtpChannels({ storage: db.storage, sender, logger: silentLogger, now: () => clock, codeTtlSeconds: 60 });
      const deviceId = await device('u-ttl');
      await short.issue({ tenantId: 'acme', userId: 'u-ttl', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      clock += 61_000;
      expect(await short.verify({ tenantId: 'acme', userId: 'u-ttl', deviceId, code: sender.last().code, purpose: 'login' })).to.equal(false);
    });
  });

  describe('attempt limit', () => {
    it('after 5 wrong guesses even the right code is refused', async () => {
      const deviceId = await device('u-limit');
      await otp.issue({ tenantId: 'acme', userId: 'u-limit', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const { code } = sender.last();
      const wrong = code === '111111' ? '222222' : '111111';
      for (let i = 0; i < 5; i++) expect(await otp.verify({ tenantId: 'acme', userId: 'u-limit', deviceId, code: wrong, purpose: 'login' })).to.equal(false);
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-limit', deviceId, code, purpose: 'login' })).to.equal(false);
    });

    it('after 4 wrong guesses the right code still works', async () => {
      const deviceId = await device('u-limit4');
      await otp.issue({ tenantId: 'acme', userId: 'u-limit4', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const { code } = sender.last();
      const wrong = code === '111111' ? '222222' : '111111';
      for (let i = 0; i < 4; i++) await otp.verify({ tenantId: 'acme', userId: 'u-limit4', deviceId, code: wrong, purpose: 'login' });
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-limit4', deviceId, code, purpose: 'login' })).to.equal(true);
    });

    it('never compares more than maxAttempts guesses, even all at once', async () => {
      const deviceId = await device('u-burst');
      await otp.issue({ tenantId: 'acme', userId: 'u-burst', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const { code } = sender.last();
      const guesses = Array.from({ length: 30 }, (_, i) => String((Number(code) + 1 + i) % 1_000_000).padStart(6, '0'));
      await Promise.all(guesses.map((g) => otp.verify({ tenantId: 'acme', userId: 'u-burst', deviceId, code: g, purpose: 'login' })));
      const [row] = await db.knex('mfa_otp_codes').where({ tenant_id: 'acme', device_id: deviceId, purpose: 'login' });
      expect(row.attempts).to.equal(5);
      expect(await otp.verify({ tenantId: 'acme', userId: 'u-burst', deviceId, code, purpose: 'login' })).to.equal(false);
    });

    it('does not spend an attempt on input that cannot be a code', async () => {
      const deviceId = await device('u-malformed');
      await otp.issue({ tenantId: 'acme', userId: 'u-malformed', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      for (const bad of ['', '12345', '1234567', 'abcdef', '１２３４５６', '12345\u0000', 'x'.repeat(1000)]) {
        expect(await otp.verify({ tenantId: 'acme', userId: 'u-malformed', deviceId, code: bad, purpose: 'login' }), bad).to.equal(false);
      }
      const [row] = await db.knex('mfa_otp_codes').where({ tenant_id: 'acme', device_id: deviceId, purpose: 'login' });
      expect(row.attempts).to.equal(0);
    });

    it('honours maxAttempts', async () => {
      const strict = createOtpChannels({ storage: db.storage, sender, logger: silentLogger, now: () => clock, maxAttempts: 1 });
      const deviceId = await device('u-max1');
      await strict.issue({ tenantId: 'acme', userId: 'u-max1', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const { code } = sender.last();
      await strict.verify({ tenantId: 'acme', userId: 'u-max1', deviceId, code: code === '123123' ? '321321' : '123123', purpose: 'login' });
      expect(await strict.verify({ tenantId: 'acme', userId: 'u-max1', deviceId, code, purpose: 'login' })).to.equal(false);
    });
  });

  it('lets exactly one of many concurrent verifications of the right code through', async () => {
    const generous = createOtpChannels({ storage: db.storage, sender, logger: silentLogger, now: () => clock, maxAttempts: 20 });
    for (let round = 0; round < 5; round++) {
      const deviceId = await device(`u-race-${round}`);
      await generous.issue({ tenantId: 'acme', userId: `u-race-${round}`, deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const { code } = sender.last();
      const results = await Promise.all(Array.from({ length: 8 }, () => generous.verify({ tenantId: 'acme', userId: `u-race-${round}`, deviceId, code, purpose: 'login' })));
      expect(results.filter(Boolean), `round ${round}`).to.have.length(1);
    }
  });

  describe('destinations', () => {
    it('normalises phone numbers to E.164', () => {
      expect(normalizeDestination('sms', '+44 7700 900789')).to.equal('+447700900789');
      expect(normalizeDestination('sms', '+1 (415) 555-0100')).to.equal('+14155550100');
      expect(normalizeDestination('sms', '+1234567')).to.equal('+1234567');
      expect(normalizeDestination('sms', '+123456789012345')).to.equal('+123456789012345');
      expect(otp.normalizeDestination('sms', '+49-30-1234567')).to.equal('+49301234567');
    });

    it('refuses what is not an E.164 number with a phoneNumber violation', () => {
      for (const bad of ['07700900789', '+0447700900789', '+123456', '+1234567890123456', '+44 7700 ABC', '', '   ', '0044 7700 900789', '+44\u00007700900789', 'x'.repeat(200)]) {
        const p = problemOf(() => normalizeDestination('sms', bad));
        expect(p.status, bad).to.equal(400);
        expect(p.key).to.equal('VALIDATION_FAILED');
        expect((p.errors as Array<{ field: string }>)[0]?.field).to.equal('phoneNumber');
        expect(JSON.stringify(p.errors)).not.to.contain(bad.trim() || '\u0001');
      }
      expect(problemOf(() => normalizeDestination('sms', 42 as unknown as string)).errors).to.deep.include({ field: 'phoneNumber', code: 'type', description: 'phoneNumber must be a string' });
    });

    it('accepts pragmatic email addresses, lower-casing the domain only', () => {
      expect(normalizeDestination('email', 'Alice.Smith+mfa@Example.COM')).to.equal('Alice.Smith+mfa@example.com');
      expect(normalizeDestination('email', '  bob@sub.example.co.uk ')).to.equal('bob@sub.example.co.uk');
      expect(normalizeDestination('email', "o'neil_{x}@example.org")).to.equal("o'neil_{x}@example.org");
      expect(normalizeDestination('email', 'jörg@bücher.de')).to.equal('jörg@bücher.de');
      expect(normalizeDestination('email', 'a@xn--bcher-kva.de')).to.equal('a@xn--bcher-kva.de');
    });

    it('refuses malformed email addresses with an email violation', () => {
      const long = `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.com`;
      for (const bad of ['plain', 'a@b', '@example.com', 'a@', 'a b@example.com', 'a@exa mple.com', '.a@example.com', 'a.@example.com', 'a..b@example.com', 'a@-example.com', 'a@example-.com', 'a@example..com', 'a@example.c', 'a@example.123', 'a\u0000b@example.com', 'a\tb@example.com', 'a@b@example.com', '"quoted"@example.com', 'a@[127.0.0.1]', `${'a'.repeat(65)}@example.com`, long, 'a\ud800@example.com']) {
        const p = problemOf(() => normalizeDestination('email', bad));
        expect(p.status, bad).to.equal(400);
        expect((p.errors as Array<{ field: string; code: string }>)[0], bad).to.include({ field: 'email', code: 'format' });
      }
      expect((problemOf(() => normalizeDestination('email', '')).errors as Array<{ code: string }>)[0]?.code).to.equal('required');
    });

    it('masks destinations', () => {
      expect(maskDestination('sms', '+447700900789')).to.equal('+44••••••789');
      expect(maskDestination('sms', '+1234567')).to.equal('+1••••••67');
      expect(maskDestination('email', 'alice@example.com')).to.equal('a•••@example.com');
      expect(maskDestination('email', 'a@example.com')).to.equal('•••@example.com');
      expect(otp.mask('email', 'jörg@bücher.de')).to.equal('j•••@bücher.de');
      expect(maskDestination('sms', 'nonsense')).to.equal('••••••');
      expect(maskDestination('email', 'nonsense')).to.equal('••••••');
    });
  });

  describe('secrecy', () => {
    it('the database holds neither the code nor the destination in plaintext', async () => {
      const smsDevice = await device('u-dump');
      const emailDevice = await device('u-dump', 'email');
      await otp.issue({ tenantId: 'acme', userId: 'u-dump', deviceId: smsDevice, method: 'sms', destination: PHONE, purpose: 'login' });
      const smsCode = sender.last().code;
      await otp.issue({ tenantId: 'acme', userId: 'u-dump', deviceId: emailDevice, method: 'email', destination: EMAIL, purpose: 'enrollment' });
      const emailCode = sender.last().code;
      const dump = await dumpTables(db.knex);
      expect(dump.tables).to.include.members(['mfa_devices', 'mfa_otp_codes']);
      for (const secret of [smsCode, emailCode, PHONE, PHONE.slice(1), EMAIL, 'alice.smith']) expect(dump.contains(secret), secret).to.equal(false);
    });

    describe('with a key ring: the stored hash is keyed with a key derived from it (a pepper)', () => {
      const kA = generateKey('kA');
      const withRing = (...keys: string[]) => createOtpChannels({ storage: db.storage, sender, keyRing: keyRing(keys), logger: silentLogger, now: () => clock });
      const issue = async (channels: OtpChannels, userId: string) => {
        const deviceId = await device(userId);
        await channels.issue({ tenantId: 'acme', userId, deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
        return { deviceId, code: sender.last().code };
      };
      const verify = (channels: OtpChannels, userId: string, deviceId: string, code: string) => channels.verify({ tenantId: 'acme', userId, deviceId, purpose: 'login', code });

      it('a database read alone does not give the code: no keyless form of the row matches it; under the key it does', async () => {
        const { deviceId, code } = await issue(withRing(kA), 'u-pepper');
        const [row] = await db.knex('mfa_otp_codes').where({ tenant_id: 'acme', device_id: deviceId });
        const salt = row.salt as Buffer;
        expect(salt.toString('latin1', 0, 6)).to.equal('v2:kA:');
        // What an attacker with the row can compute for each of the 10^6 codes: the v1 form (the salt as the HMAC key),
        // the v2 message keyed with the salt, or either unkeyed. For the real code none of these is the stored hash.
        const text = (version: string, withSalt: boolean) =>
          JSON.stringify([`express-mfa-kit/otp/${version}`, ...(withSalt ? [salt.toString('base64')] : []), 'acme', 'u-pepper', deviceId, 'login', code]);
        const stored = (row.code_hash as Buffer).toString('hex');
        for (const t of [text('v2', true), text('v1', false)]) {
          expect(createHmac('sha256', salt).update(t).digest('hex')).not.to.equal(stored);
          expect(createHash('sha256').update(t).digest('hex')).not.to.equal(stored);
        }
        expect(keyRing([kA]).mac!('otp-code', text('v2', true))!.mac.toString('hex')).to.equal(stored);
        expect(await verify(withRing(kA), 'u-pepper', deviceId, code)).to.equal(true);
      });

      it('the same key id with other key material does not verify it; a rotated ring (new key first) does', async () => {
        const kB = generateKey('kB');
        const first = await issue(withRing(kA), 'u-pepper-rot');
        expect(await verify(withRing(generateKey('kA')), 'u-pepper-rot', first.deviceId, first.code)).to.equal(false);
        expect(await verify(withRing(kB, kA), 'u-pepper-rot', first.deviceId, first.code)).to.equal(true);
        // New codes go under the new key; once kA is dropped, its codes fail (as expired ones do) and kB's pass.
        const second = await issue(withRing(kB, kA), 'u-pepper-rot2');
        const [row] = await db.knex('mfa_otp_codes').where({ tenant_id: 'acme', device_id: second.deviceId });
        expect((row.salt as Buffer).toString('latin1', 0, 6)).to.equal('v2:kB:');
        const third = await issue(withRing(kA), 'u-pepper-rot3');
        expect(await verify(withRing(kB), 'u-pepper-rot3', third.deviceId, third.code)).to.equal(false);
        expect(await verify(withRing(kB), 'u-pepper-rot2', second.deviceId, second.code)).to.equal(true);
      });

      it('a code stored before the upgrade (keyless, v1) still passes once with a ring', async () => {
        const { deviceId, code } = await issue(otp, 'u-pepper-v1');
        const [row] = await db.knex('mfa_otp_codes').where({ tenant_id: 'acme', device_id: deviceId });
        expect((row.salt as Buffer).length).to.equal(16);
        const ringed = withRing(kA);
        expect(await verify(ringed, 'u-pepper-v1', deviceId, code)).to.equal(true);
        expect(await verify(ringed, 'u-pepper-v1', deviceId, code)).to.equal(false);
      });
    });

    it('logs the masked destination when sending, never the code or the destination', async () => {
      const logger = capturingLogger();
      const logged = createOtpChannels({ storage: db.storage, sender, logger, now: () => clock });
      const deviceId = await device('u-log');
      await logged.issue({ tenantId: 'acme', userId: 'u-log', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      const all = logger.lines.join('\n');
      expect(all).to.contain('+44••••••789');
      expect(all).not.to.contain(sender.last().code);
      expect(all).not.to.contain('7700900');
    });

    it('a failing sender becomes a 503 CODE_DELIVERY_FAILED; the log keeps the error name but not its message', async () => {
      const logger = capturingLogger();
      const failing = createOtpChannels({
        storage: db.storage,
        logger,
        now: () => clock,
        sender: {
          send(m) {
            throw Object.assign(new Error(`gateway refused ${m.destination} with ${m.code}`), { name: 'GatewayError', code: 'E_GATEWAY' });
          },
        },
      });
      const deviceId = await device('u-fail');
      let caught: unknown;
      try {
        await failing.issue({ tenantId: 'acme', userId: 'u-fail', deviceId, method: 'sms', destination: PHONE, purpose: 'login' });
      } catch (err) {
        caught = err;
      }
      expect(isProblemError(caught) && caught.status === 503 && caught.key === 'CODE_DELIVERY_FAILED').to.equal(true);
      const all = logger.lines.join('\n');
      expect(all).to.contain('GatewayError').and.contain('E_GATEWAY');
      expect(all).not.to.contain('gateway refused').and.not.to.contain('7700900');
    });
  });

  describe('demoSender', () => {
    const capture = async (fn: () => unknown): Promise<string> => {
      const original = process.stdout.write.bind(process.stdout);
      let out = '';
      process.stdout.write = (chunk: string | Uint8Array) => {
        out += String(chunk);
        return true;
      };
      try {
        await fn();
      } finally {
        process.stdout.write = original;
      }
      return out;
    };
    const message: MfaCodeMessage = { tenantId: 'acme', userId: 'alice', method: 'sms', destination: PHONE, code: '424242', purpose: 'login' };

    it('prints the code on stdout with the [demo sender] prefix and logs only the masked destination', async () => {
      const logger = capturingLogger();
      const previous = process.env.NODE_ENV;
      delete process.env.NODE_ENV;
      try {
        const out = await capture(() => demoSender(logger).send(message));
        expect(out).to.match(/^\[demo sender\] /).and.contain('424242').and.contain('+44••••••789');
        expect(out).not.to.contain(PHONE);
      } finally {
        if (previous !== undefined) process.env.NODE_ENV = previous;
      }
      const all = logger.lines.join('\n');
      expect(all).to.contain('+44••••••789').and.contain('stdout');
      expect(all).not.to.contain('424242').and.not.to.contain(PHONE);
    });

    it('withholds the code outside development: NODE_ENV=production, and staging or prod alike; prints it under test', async () => {
      const previous = process.env.NODE_ENV;
      try {
        for (const value of ['production', 'staging', 'prod']) {
          const logger = capturingLogger();
          process.env.NODE_ENV = value;
          const out = await capture(() => demoSender(logger).send(message));
          expect(out, value).not.to.contain('424242');
          expect(logger.lines.join('\n'), value).to.contain('NOT delivered').and.not.to.contain('424242');
        }
        process.env.NODE_ENV = 'test';
        expect(await capture(() => demoSender(capturingLogger()).send(message))).to.contain('424242');
      } finally {
        if (previous === undefined) delete process.env.NODE_ENV;
        else process.env.NODE_ENV = previous;
      }
    });
  });

  it('checks its options at set-up', () => {
    expect(() => createOtpChannels({ storage: db.storage, sender: undefined as never })).to.throw(TypeError, /needs 'sender'/);
    expect(() => createOtpChannels({ storage: { mfaDevices: db.storage.mfaDevices } as never, sender })).to.throw(TypeError, /otpCodes/);
    expect(() => createOtpChannels({ storage: db.storage, sender, maxAttempts: 0 })).to.throw(TypeError, /maxAttempts/);
    expect(() => createOtpChannels({ storage: db.storage, sender, codeTtlSeconds: 1.5 })).to.throw(TypeError, /codeTtlSeconds/);
  });
});
