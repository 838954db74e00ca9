/**
 * `stepUp` (RFC 9470) on mfaDevicesRouter: once a user has a usable second factor, changing their factors needs a
 * token that shows one (`amr` / `acr`, recent `auth_time`); a password-only token gets 401 with the
 * `insufficient_user_authentication` challenge and changes nothing. Real Postgres; codes from oathtool.
 */
import { expect } from 'chai';
import type express from 'express';
import request from 'supertest';
import { pino } from 'pino';
import { createExampleApp } from '../examples/app.js';
import { resolveStepUp, showsSecondFactor } from '../lib/step-up.js';
import { migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { JWT_SECRET, mfaApp, oathtool, token } from './support/mfa.js';
import { racingDevices } from './support/racing.js';

const POLICY = { amr: ['mfa', 'hwk'], acr: ['urn:example:mfa'], maxAgeSeconds: 600 } as const;
const CHALLENGE =
  'Bearer error="insufficient_user_authentication", error_description="A recent second factor is required for this change", acr_values="urn:example:mfa", max_age=600';
const nowSeconds = () => Math.floor(Date.now() / 1000);
/** The texts mfaDevicesRouter's refusals carry. */
const TEXTS = { description: 'A recent second factor is required for this change' };

describe('stepUp: a second factor to change second factors (RFC 9470)', function () {
  this.timeout(30_000);

  describe('the policy', () => {
    it('is checked at set-up, with the fix in the message', () => {
      expect(() => resolveStepUp('f', {}, TEXTS)).to.throw(TypeError, /needs the 'amr' or 'acr' values.*amr: \['mfa'\]/);
      expect(() => resolveStepUp('f', { amr: [] }, TEXTS)).to.throw(TypeError, /needs the 'amr' or 'acr'/);
      expect(() => resolveStepUp('f', { amr: ['m fa'] }, TEXTS)).to.throw(TypeError, /stepUp.amr' must be a list of claim values without spaces or quotes/);
      expect(() => resolveStepUp('f', { acr: ['a"b'] }, TEXTS)).to.throw(TypeError, /stepUp.acr'/);
      expect(() => resolveStepUp('f', { amr: 'mfa' } as never, TEXTS)).to.throw(TypeError, /stepUp.amr'/);
      expect(() => resolveStepUp('f', { amr: ['mfa'], maxAgeSeconds: 0 }, TEXTS)).to.throw(TypeError, /stepUp.maxAgeSeconds' must be an integer from 1/);
      expect(() => resolveStepUp('f', { amr: ['mfa'], maxAge: 60 } as never, TEXTS)).to.throw(TypeError, /unknown option 'maxAge'.*Known options: amr, acr, maxAgeSeconds/);
      expect(resolveStepUp('f', undefined, TEXTS)).to.equal(undefined);
      expect(resolveStepUp('f', POLICY, TEXTS)!.challenge).to.equal(CHALLENGE);
      expect(resolveStepUp('f', { amr: ['mfa'] }, TEXTS)!.challenge).to.equal('Bearer error="insufficient_user_authentication", error_description="A recent second factor is required for this change"');
    });

    it('takes an amr value or the acr, recent enough when maxAgeSeconds is set', () => {
      const policy = resolveStepUp('f', POLICY, TEXTS)!;
      const now = Date.UTC(2026, 11, 6, 12);
      const at = now / 1000;
      const cases: Array<[Record<string, unknown>, boolean]> = [
        [{ amr: ['pwd', 'mfa'], auth_time: at }, true],
        [{ amr: ['hwk'], auth_time: at - 600 }, true],
        [{ acr: 'urn:example:mfa', auth_time: at - 10 }, true],
        [{ amr: ['pwd'], auth_time: at }, false],
        [{ amr: 'mfa', auth_time: at }, false], // amr is a list (RFC 8176)
        [{ acr: ['urn:example:mfa'], auth_time: at }, false],
        [{ acr: 'pwd', auth_time: at }, false], // an acr the policy does not list
        [{ acr: 'urn:example:MFA', auth_time: at }, false],
        [{ amr: ['MFA'], auth_time: at }, false],
        [{ amr: ['mfa'], auth_time: at - 601 }, false],
        [{ amr: ['mfa'] }, false],
        [{ amr: ['mfa'], auth_time: String(at) }, false],
        [{ amr: ['mfa'], auth_time: Number.NaN }, false],
        [{ amr: ['mfa'], auth_time: at + 60 }, true], // a minute of the issuer's clock running ahead
        [{ amr: ['mfa'], auth_time: at + 61 }, false], // "recent" for the token's whole life: no
        [{}, false],
      ];
      for (const [claims, expected] of cases) expect(showsSecondFactor(claims, policy, now), JSON.stringify(claims)).to.equal(expected);
      expect(showsSecondFactor({ amr: ['mfa'] }, resolveStepUp('f', { amr: ['mfa'] }, TEXTS)!, now), 'no maxAgeSeconds: no auth_time needed').to.equal(true);
    });
  });

  describe('over HTTP, on Postgres', () => {
    let db: TestDb;
    let app: express.Express;
    before(async () => {
      db = await migratedStorage();
      ({ app } = mfaApp(db.storage, { stepUp: POLICY, rateLimit: false, sender: { send() {} } }));
    });
    after(async () => {
      await db?.drop();
    });

    const password = (user: string) => `Bearer ${token(user, 'acme', { amr: ['pwd'], auth_time: nowSeconds() })}`;
    const stepped = (user: string) => `Bearer ${token(user, 'acme', { amr: ['pwd', 'mfa'], auth_time: nowSeconds() })}`;

    /** Enrols and confirms a TOTP device with a password-only token (the first one needs no step-up). */
    async function firstDevice(user: string): Promise<{ id: string; secret: string }> {
      const enrol = await request(app).post('/auth/mfa/devices/totp').set('Authorization', password(user)).send({ deviceName: 'Phone' });
      expect(enrol.status, enrol.text).to.equal(201);
      const { device, secret } = enrol.body as { device: { id: string }; secret: string };
      const confirm = await request(app).post(`/auth/mfa/devices/${device.id}/verify`).set('Authorization', password(user)).send({ code: oathtool(secret, Date.now()) });
      expect(confirm.status, confirm.text).to.equal(200);
      return { id: device.id, secret };
    }

    const expectStepUp = (res: request.Response, what: string) => {
      expect(res.status, `${what}: ${res.text}`).to.equal(401);
      expect(res.headers['www-authenticate'], what).to.equal(CHALLENGE);
      expect(res.headers['content-type'], what).to.match(/^application\/problem\+json/);
      expect(res.body, what).to.include({ status: 401, code: 40100003, title: 'Second Factor Required' });
    };

    it('a password-only token changes no factor once the user has one: 401 with the challenge, nothing written', async () => {
      const { id } = await firstDevice('alice');
      const auth = password('alice');
      const changes: Array<[string, () => request.Test]> = [
        ['enrol TOTP', () => request(app).post('/auth/mfa/devices/totp').set('Authorization', auth).send({ deviceName: 'Attacker' })],
        ['enrol sms', () => request(app).post('/auth/mfa/devices/sms').set('Authorization', auth).send({ deviceName: 'Attacker', phoneNumber: '+15555550100' })],
        ['enrol email, a body that would be a 400', () => request(app).post('/auth/mfa/devices/email').set('Authorization', auth).send({ email: 42 })],
        ['remove', () => request(app).delete(`/auth/mfa/devices/${id}`).set('Authorization', auth)],
        ['turn off', () => request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', auth).send({ enabled: false })],
        ['turn off and rename', () => request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', auth).send({ deviceName: 'x', enabled: false })],
        ['new recovery codes', () => request(app).post('/auth/mfa/recovery-codes').set('Authorization', auth)],
      ];
      for (const [what, call] of changes) expectStepUp(await call(), what);
      // An old second factor counts no more than none; an unknown amr value neither.
      const stale = `Bearer ${token('alice', 'acme', { amr: ['mfa'], auth_time: nowSeconds() - 601 })}`;
      expectStepUp(await request(app).delete(`/auth/mfa/devices/${id}`).set('Authorization', stale), 'stale');
      const noTime = `Bearer ${token('alice', 'acme', { amr: ['mfa'] })}`;
      expectStepUp(await request(app).post('/auth/mfa/recovery-codes').set('Authorization', noTime), 'no auth_time');

      const devices = await request(app).get('/auth/mfa/devices').set('Authorization', stepped('alice'));
      expect(devices.body).to.deep.equal([{ ...devices.body[0], id, deviceName: 'Phone', method: 'totp', verified: true }]);
      expect(devices.body).to.have.length(1);
      const row = (await db.knex('mfa_devices').where({ id }).first()) as { enabled: boolean };
      expect(row.enabled).to.equal(true);
      expect((await request(app).get('/auth/mfa/recovery-codes').set('Authorization', auth)).body).to.deep.equal({ remaining: 0 });
    });

    it('a user whose only verified device is turned off still has a factor to protect: a password-only token cannot remove it (401, not a 404)', async () => {
      const { id } = await firstDevice('dora');
      const off = await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', stepped('dora')).send({ enabled: false });
      expect(off.status, off.text).to.equal(200);
      const auth = password('dora');
      expectStepUp(await request(app).delete(`/auth/mfa/devices/${id}`).set('Authorization', auth), 'remove the device that is off');
      expect(await db.knex('mfa_devices').where({ id }).first()).to.include({ enabled: false });
    });

    it('what changes no factor still works with the password-only token: list, rename, counts, trusted devices, the login second factor', async () => {
      const { id, secret } = await firstDevice('bob');
      const auth = password('bob');
      expect((await request(app).get('/auth/mfa/devices').set('Authorization', auth)).status).to.equal(200);
      const rename = await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', auth).send({ deviceName: 'Work phone' });
      expect(rename.status, rename.text).to.equal(200);
      expect(rename.body).to.include({ deviceName: 'Work phone' });
      expect((await request(app).get('/auth/mfa/recovery-codes').set('Authorization', auth)).status).to.equal(200);
      expect((await request(app).get('/auth/mfa/trusted-devices').set('Authorization', auth)).status).to.equal(200);
      expect((await request(app).delete('/auth/mfa/trusted-devices').set('Authorization', auth)).body).to.deep.equal({ revoked: 0 });
      // The step up itself: the enrolment used this step's code, the next step's is in the window.
      const login = await request(app).post('/auth/mfa/verify').set('Authorization', auth).send({ code: oathtool(secret, Date.now() + 30_000) });
      expect(login.status, login.text).to.equal(200);
    });

    it('a token that shows a second factor (amr or acr, recent) makes every change', async () => {
      const { id } = await firstDevice('carol');
      const acr = `Bearer ${token('carol', 'acme', { acr: 'urn:example:mfa', auth_time: nowSeconds() - 590 })}`;
      const codes = await request(app).post('/auth/mfa/recovery-codes').set('Authorization', acr);
      expect(codes.status, codes.text).to.equal(201);
      expect(codes.body.codes).to.have.length(10);
      const second = await request(app).post('/auth/mfa/devices/totp').set('Authorization', stepped('carol')).send({ deviceName: 'Tablet' });
      expect(second.status, second.text).to.equal(201);
      const off = await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', stepped('carol')).send({ enabled: false });
      expect(off.status, off.text).to.equal(200);
      expect(off.body).to.include({ id });
      const removed = await request(app).delete(`/auth/mfa/devices/${id}`).set('Authorization', stepped('carol'));
      expect(removed.status, removed.text).to.equal(204);
    });

    it('an enrolment begun on the password before the user had a factor is not finished on the password after: 401, still pending; a stepped-up token finishes it', async () => {
      const auth = password('sam');
      const early = await request(app).post('/auth/mfa/devices/totp').set('Authorization', auth).send({ deviceName: 'Attacker' });
      expect(early.status, early.text).to.equal(201);
      const { device, secret } = early.body as { device: { id: string }; secret: string };
      await firstDevice('sam');
      const finish = () => request(app).post(`/auth/mfa/devices/${device.id}/verify`).send({ code: oathtool(secret, Date.now()) });
      expectStepUp(await finish().set('Authorization', auth), 'verify a pending enrolment');
      const devices = await request(app).get('/auth/mfa/devices').set('Authorization', auth);
      expect((devices.body as Array<{ id: string }>).find((d) => d.id === device.id)).to.include({ verified: false });
      const done = await finish().set('Authorization', stepped('sam'));
      expect(done.status, done.text).to.equal(200);
      expect(done.body).to.include({ id: device.id, verified: true });
    });

    it("nor are codes sent for such an enrolment on the password after (401); a verified sms device's login code still is", async () => {
      const sent: Array<{ destination: string; purpose: string; code: string }> = [];
      const { app: smsApp } = mfaApp(db.storage, { stepUp: POLICY, rateLimit: false, sender: { send: (m) => void sent.push({ destination: m.destination, purpose: m.purpose, code: m.code }) } });
      const auth = password('tom');
      const enrolSms = async (deviceName: string, phoneNumber: string) => {
        const res = await request(smsApp).post('/auth/mfa/devices/sms').set('Authorization', auth).send({ deviceName, phoneNumber });
        expect(res.status, res.text).to.equal(201);
        return (res.body as { device: { id: string } }).device.id;
      };
      const [attacker, me] = ['+15555550123', '+15555550124'];
      const pendingId = await enrolSms('Attacker', attacker);
      const mineId = await enrolSms('Mine', me);
      const code = sent.find((m) => m.destination === me)!.code;
      const confirm = await request(smsApp).post(`/auth/mfa/devices/${mineId}/verify`).set('Authorization', auth).send({ code });
      expect(confirm.status, confirm.text).to.equal(200);
      sent.length = 0;
      expectStepUp(await request(smsApp).post(`/auth/mfa/devices/${pendingId}/challenge`).set('Authorization', auth), 'a code for a pending enrolment');
      expect(sent, 'nothing sent').to.deep.equal([]);
      const login = await request(smsApp).post(`/auth/mfa/devices/${mineId}/challenge`).set('Authorization', auth);
      expect(login.status, login.text).to.equal(202);
      const done = await request(smsApp).post(`/auth/mfa/devices/${pendingId}/challenge`).set('Authorization', stepped('tom'));
      expect(done.status, done.text).to.equal(202);
      expect(sent.map(({ destination, purpose }) => ({ destination, purpose }))).to.deep.equal([
        { destination: me, purpose: 'login' },
        { destination: attacker, purpose: 'enrollment' },
      ]);
      // An id that names no pending device gets the route's own answer, whatever the token: 404, already verified.
      for (const path of ['not-a-uuid/challenge', 'not-a-uuid/verify', '00000000-0000-4000-8000-000000000000/verify']) {
        expect((await request(smsApp).post(`/auth/mfa/devices/${path}`).set('Authorization', auth).send({ code: '123456' })).status, path).to.equal(404);
      }
      const again = await request(smsApp).post(`/auth/mfa/devices/${mineId}/verify`).set('Authorization', auth).send({ code: '123456' });
      expect(again.status, again.text).to.equal(400);
      expect(again.body).to.include({ title: 'Device Already Verified' });
    });

    it('nothing to step up with passes on the password: no device yet, an unconfirmed one', async () => {
      const first = await request(app).post('/auth/mfa/devices/totp').set('Authorization', password('dave')).send({ deviceName: 'A' });
      expect(first.status, first.text).to.equal(201);
      const again = await request(app).post('/auth/mfa/devices/totp').set('Authorization', password('dave')).send({ deviceName: 'B' });
      expect(again.status, again.text).to.equal(201);
    });

    it('every device turned off still asks for a step-up (the recovery codes are a second factor), to turn one back on too', async () => {
      const { id } = await firstDevice('erin');
      const codes = await request(app).post('/auth/mfa/recovery-codes').set('Authorization', stepped('erin'));
      expect(codes.status, codes.text).to.equal(201);
      expect((await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', stepped('erin')).send({ enabled: false })).status).to.equal(200);
      // A second review's take-over: with every device off, a password-only token made new codes and logged in with them.
      expectStepUp(await request(app).post('/auth/mfa/recovery-codes').set('Authorization', password('erin')), 'new codes, devices off');
      expectStepUp(await request(app).post('/auth/mfa/devices/totp').set('Authorization', password('erin')).send({ deviceName: 'Attacker' }), 'enrol, devices off');
      // The user steps up with a recovery code, as the login takes one while a verified device exists.
      const login = await request(app).post('/auth/mfa/verify').set('Authorization', password('erin')).send({ recoveryCode: (codes.body.codes as string[])[0] });
      expect(login.status, login.text).to.equal(200);
      // With codes left, turning a device back on is a change of factors like any other.
      expectStepUp(await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', password('erin')).send({ enabled: true }), 'on, codes left');
      const on = await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', stepped('erin')).send({ enabled: true });
      expect(on.status, on.text).to.equal(200);
      expectStepUp(await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', password('erin')).send({ enabled: false }), 'off again');
    });

    it("a device turned off stays off for a password-only token while another factor is on (a lost phone's thief)", async () => {
      const { id: phone } = await firstDevice('gina');
      const second = await request(app).post('/auth/mfa/devices/totp').set('Authorization', stepped('gina')).send({ deviceName: 'Tablet' });
      expect(second.status, second.text).to.equal(201);
      const { device, secret } = second.body as { device: { id: string }; secret: string };
      expect((await request(app).post(`/auth/mfa/devices/${device.id}/verify`).set('Authorization', stepped('gina')).send({ code: oathtool(secret, Date.now()) })).status).to.equal(200);
      expect((await request(app).patch(`/auth/mfa/devices/${phone}`).set('Authorization', stepped('gina')).send({ enabled: false })).status).to.equal(200);
      expectStepUp(await request(app).patch(`/auth/mfa/devices/${phone}`).set('Authorization', password('gina')).send({ enabled: true }), 'on, the thief');
      const list = await request(app).get('/auth/mfa/devices').set('Authorization', password('gina'));
      expect((list.body as Array<{ id: string; enabled: boolean }>).find((d) => d.id === phone)?.enabled).to.equal(false);
      // A rename is no change of factors.
      expect((await request(app).patch(`/auth/mfa/devices/${phone}`).set('Authorization', password('gina')).send({ deviceName: 'Old phone' })).status).to.equal(200);
    });

    it('with every device off and no recovery code left, a password-only token turns a device back on: the way back', async () => {
      const { id } = await firstDevice('hugo');
      expect((await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', stepped('hugo')).send({ enabled: false })).status).to.equal(200);
      expectStepUp(await request(app).post('/auth/mfa/recovery-codes').set('Authorization', password('hugo')), 'new codes, devices off');
      const on = await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', password('hugo')).send({ enabled: true });
      expect(on.status, on.text).to.equal(200);
      expect(on.body).to.include({ enabled: true });
    });

    describe('a change let on without a step-up is judged again in its write (a request racing the first verification)', () => {
      // The router's check reads the user's devices, then the write runs: `meanwhile` runs once, right after that read,
      // what a concurrent request (on another instance) commits in between: here, a device verified or turned on.
      let racing: { app: express.Express; meanwhile: (change: () => Promise<unknown>) => void };
      const sentCodes: string[] = [];
      before(() => {
        const raced = racingDevices(db.storage, 'list', 'after');
        racing = { app: mfaApp(raced.storage, { stepUp: POLICY, rateLimit: false, sender: { send: (m) => void sentCodes.push(m.code) } }).app, meanwhile: (fn) => raced.meanwhile(fn) };
      });
      const verifiedMeanwhile = (id: string) => () => db.knex('mfa_devices').where({ id }).update({ verified: true, expires_at: null, verified_at: db.knex.fn.now() });
      const pending = async (user: string) => {
        const res = await request(racing.app).post('/auth/mfa/devices/totp').set('Authorization', password(user)).send({ deviceName: 'Pending' });
        expect(res.status, res.text).to.equal(201);
        return (res.body as { device: { id: string }; secret: string }).device.id;
      };
      const rows = (user: string) => db.knex('mfa_devices').where({ tenant_id: 'acme', user_id: user }).orderBy('device_name') as Promise<Array<{ id: string; verified: boolean; enabled: boolean; device_name: string }>>;

      /** A user with two verified devices (Phone, Tablet), both turned off with a stepped-up token, and no recovery code. */
      const twoDevicesOff = async (user: string): Promise<{ a: string; b: { id: string } }> => {
        const { id: a } = await firstDevice(user);
        const enrol = await request(app).post('/auth/mfa/devices/totp').set('Authorization', stepped(user)).send({ deviceName: 'Tablet' });
        const { device, secret } = enrol.body as { device: { id: string }; secret: string };
        expect((await request(app).post(`/auth/mfa/devices/${device.id}/verify`).set('Authorization', stepped(user)).send({ code: oathtool(secret, Date.now()) })).status).to.equal(200);
        for (const id of [a, device.id]) expect((await request(app).patch(`/auth/mfa/devices/${id}`).set('Authorization', stepped(user)).send({ enabled: false })).status).to.equal(200);
        return { a, b: device };
      };

      it('new recovery codes: 401, none made (they passed a second factor on the password alone)', async () => {
        const id = await pending('race-rc');
        racing.meanwhile(verifiedMeanwhile(id));
        expectStepUp(await request(racing.app).post('/auth/mfa/recovery-codes').set('Authorization', password('race-rc')), 'new codes');
        expect(await db.knex('mfa_recovery_codes').where({ tenant_id: 'acme', user_id: 'race-rc' })).to.have.length(0);
      });

      it('removing the device just verified: 401, it stays', async () => {
        const id = await pending('race-rm');
        racing.meanwhile(verifiedMeanwhile(id));
        expectStepUp(await request(racing.app).delete(`/auth/mfa/devices/${id}`).set('Authorization', password('race-rm')), 'remove');
        expect(await rows('race-rm')).to.have.length(1).and.to.have.nested.property('[0].verified', true);
      });

      it('verifying a second pending enrolment: 401, it stays pending, no failure counted', async () => {
        const first = await pending('race-two');
        const second = await request(racing.app).post('/auth/mfa/devices/totp').set('Authorization', password('race-two')).send({ deviceName: 'Second' });
        const { device, secret } = second.body as { device: { id: string }; secret: string };
        racing.meanwhile(verifiedMeanwhile(first));
        const res = await request(racing.app).post(`/auth/mfa/devices/${device.id}/verify`).set('Authorization', password('race-two')).send({ code: oathtool(secret, Date.now()) });
        expectStepUp(res, 'verify the second');
        expect((await rows('race-two')).map((r) => [r.device_name, r.verified])).to.deep.equal([['Pending', true], ['Second', false]]);
        const counted = (await db.knex('mfa_verification_failures').where({ tenant_id: 'acme', user_id: 'race-two' })) as Array<{ failures: number }>;
        expect(counted.reduce((sum, r) => sum + r.failures, 0)).to.equal(0);
        // The code was right and is not used up: a stepped-up request verifies the device with it.
        const done = await request(racing.app).post(`/auth/mfa/devices/${device.id}/verify`).set('Authorization', stepped('race-two')).send({ code: oathtool(secret, Date.now()) });
        expect(done.status, done.text).to.equal(200);
      });

      it('verifying a pending sms enrolment: 401, and its code is not used up: a stepped-up request verifies with it', async () => {
        const first = await pending('race-sms');
        const sms = await request(racing.app).post('/auth/mfa/devices/sms').set('Authorization', password('race-sms')).send({ deviceName: 'Sms', phoneNumber: '+447700900123' });
        expect(sms.status, sms.text).to.equal(201);
        const code = sentCodes.at(-1)!;
        const id = (sms.body as { device: { id: string } }).device.id;
        racing.meanwhile(verifiedMeanwhile(first));
        expectStepUp(await request(racing.app).post(`/auth/mfa/devices/${id}/verify`).set('Authorization', password('race-sms')).send({ code }), 'verify the sms device');
        const done = await request(racing.app).post(`/auth/mfa/devices/${id}/verify`).set('Authorization', stepped('race-sms')).send({ code });
        expect(done.status, done.text).to.equal(200);
      });

      it('a new enrolment: 401, no device added', async () => {
        const id = await pending('race-enrol');
        racing.meanwhile(verifiedMeanwhile(id));
        expectStepUp(await request(racing.app).post('/auth/mfa/devices/totp').set('Authorization', password('race-enrol')).send({ deviceName: 'Attacker' }), 'enrol');
        expect(await rows('race-enrol')).to.have.length(1);
      });

      it('the way back racing a stepped-up turn-on of another device: it waits for it (the user lock every turn-on takes) and gets 401', async () => {
        const { a, b: device } = await twoDevicesOff('race-lock');
        // The stepped-up turn-on of the first device holds its write open for a moment (a trigger sleeps in it).
        await db.knex.raw(`create function test_slow_enable() returns trigger language plpgsql as $$ begin if new.id = '${a}' and new.enabled then perform pg_sleep(1); end if; return new; end $$`);
        await db.knex.raw('create trigger test_slow_enable before update on mfa_devices for each row execute function test_slow_enable()');
        try {
          const slow = request(app).patch(`/auth/mfa/devices/${a}`).set('Authorization', stepped('race-lock')).send({ enabled: true }).then((r) => r);
          await new Promise((resolve) => setTimeout(resolve, 300));
          const back = await request(app).patch(`/auth/mfa/devices/${device.id}`).set('Authorization', password('race-lock')).send({ enabled: true });
          expect((await slow).status).to.equal(200);
          expectStepUp(back, 'the way back, while the other is being turned on');
        } finally {
          await db.knex.raw('drop trigger if exists test_slow_enable on mfa_devices');
          await db.knex.raw('drop function if exists test_slow_enable()');
        }
        expect((await rows('race-lock')).map((r) => [r.device_name, r.enabled])).to.deep.equal([['Phone', true], ['Tablet', false]]);
      });

      it('the way back, twice at once: the second device is not turned on once the first is', async () => {
        const { a, b: device } = await twoDevicesOff('race-back');
        racing.meanwhile(() => db.knex('mfa_devices').where({ id: a }).update({ enabled: true }));
        expectStepUp(await request(racing.app).patch(`/auth/mfa/devices/${device.id}`).set('Authorization', password('race-back')).send({ enabled: true }), 'on, the second');
        expect((await rows('race-back')).map((r) => [r.device_name, r.enabled])).to.deep.equal([['Phone', true], ['Tablet', false]]);
      });
    });

    it("another user's usable device does not count: the gate reads the caller's own devices, in the caller's tenant", async () => {
      await firstDevice('frank');
      const other = `Bearer ${token('frank', 'globex', { amr: ['pwd'], auth_time: nowSeconds() })}`;
      const res = await request(app).post('/auth/mfa/devices/totp').set('Authorization', other).send({ deviceName: 'Phone' });
      expect(res.status, res.text).to.equal(201);
    });
  });
});

describe('the example app with stepUp (STEP_UP_AMR)', function () {
  this.timeout(30_000);
  let db: TestDb;
  let app: express.Express;
  before(async () => {
    db = await migratedStorage();
    app = createExampleApp({ storage: db.storage, internalKeys: ['internal-key-0123456789abcdef'], keyRing: ring, jwtSecret: JWT_SECRET, logger: pino({ level: 'silent' }), codeSender: { send() {} }, stepUp: { amr: ['mfa'] } });
  });
  after(async () => {
    await db?.drop();
  });

  it('asks both user routers for it: a factor change once the user has one, and every vault request', async () => {
    const plain = `Bearer ${token('erin')}`;
    const mfa = `Bearer ${token('erin', 'acme', { amr: ['pwd', 'mfa'] })}`;
    const enrol = await request(app).post('/auth/mfa/devices/totp').set('Authorization', plain).send({ deviceName: 'Phone' });
    expect(enrol.status, enrol.text).to.equal(201);
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    expect((await request(app).post(`/auth/mfa/devices/${device.id}/verify`).set('Authorization', plain).send({ code: oathtool(secret, Date.now()) })).status).to.equal(200);
    for (const [what, res] of [
      ['recovery codes', await request(app).post('/auth/mfa/recovery-codes').set('Authorization', plain)],
      ['another device', await request(app).post('/auth/mfa/devices/totp').set('Authorization', plain).send({ deviceName: 'Tablet' })],
      ['the vault', await request(app).get('/mfa/devices/sync').set('Authorization', plain)],
    ] as const) {
      expect(res.status, `${what}: ${res.text}`).to.equal(401);
      expect(res.body, what).to.include({ code: 40100003 });
      expect(res.headers['www-authenticate'], what).to.match(/^Bearer error="insufficient_user_authentication"/);
    }
    expect((await request(app).post('/auth/mfa/recovery-codes').set('Authorization', mfa)).status).to.equal(201);
    expect((await request(app).get('/mfa/devices/sync').set('Authorization', mfa)).status).to.equal(200);
  });
});
