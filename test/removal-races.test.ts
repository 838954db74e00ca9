/**
 * What a login or a new set of recovery codes writes while the user's last device is being removed (or the user
 * erased) on another instance: nothing that outlives the device. Each race is made deterministic: the storage
 * call that writes is wrapped so that the removal runs, through the internal HTTP route, and commits just before
 * the write goes to Postgres (the order two instances produced now and then: a second review, 6 of 60 rounds).
 */
import { expect } from 'chai';
import type express from 'express';
import request from 'supertest';
import type { MfaStorage, RecoveryCodeStore, TrustedDeviceStore } from '../index.js';
import { KEY_A, migratedStorage, type TestDb } from './support/fixtures.js';
import { as, mfaApp, oathtool } from './support/mfa.js';

const internal = { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' };

describe('a removal of the last device that commits while a login or a recovery-code set is being written', function () {
  this.timeout(30_000);
  let db: TestDb;
  let app: express.Express;
  /** Runs once, just before the next trusted-device upsert or recovery-code replacement reaches Postgres. */
  let beforeWrite: (() => Promise<void>) | undefined;
  let seq = 0;

  before(async () => {
    db = await migratedStorage();
    const take = async () => {
      const run = beforeWrite;
      beforeWrite = undefined;
      await run?.();
    };
    // Object.create keeps each store's own state and methods; only the write is wrapped.
    const trustedDevices = Object.create(db.storage.trustedDevices) as TrustedDeviceStore;
    trustedDevices.upsert = async (...args) => {
      await take();
      return db.storage.trustedDevices.upsert(...args);
    };
    const recoveryCodes = Object.create(db.storage.recoveryCodes) as RecoveryCodeStore;
    recoveryCodes.replace = async (...args) => {
      if (args[2].length > 0) await take();
      return db.storage.recoveryCodes.replace(...args);
    };
    const storage: MfaStorage = Object.assign(Object.create(db.storage) as MfaStorage, { trustedDevices, recoveryCodes });
    ({ app } = mfaApp(storage, { rateLimit: false }));
  });
  after(async () => {
    await db?.drop();
  });

  /** A user with one verified TOTP device; the code of the next step is free for a login. */
  async function enrolled(): Promise<{ user: string; id: string; secret: string }> {
    const user = `racer-${++seq}`;
    const enrol = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), user);
    expect(enrol.status, enrol.text).to.equal(201);
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    expect((await as(request(app).post(`/auth/mfa/devices/${device.id}/verify`).send({ code: oathtool(secret, Date.now()) }), user)).status).to.equal(200);
    return { user, id: device.id, secret };
  }

  const removals = {
    'the internal removal of the device': async (user: string, id: string) => {
      expect((await request(app).delete(`/internal/mfa/totp/devices/${id}`).query({ user_id: user }).set(internal)).status).to.equal(204);
    },
    "the user's own removal": async (user: string, id: string) => {
      expect((await as(request(app).delete(`/auth/mfa/devices/${id}`), user)).status).to.equal(204);
    },
    'the erasure of the user': async (user: string) => {
      expect((await request(app).delete('/internal/mfa/user-data').query({ user_id: user }).set(internal)).status).to.equal(200);
    },
  };

  for (const [what, remove] of Object.entries(removals)) {
    it(`"remember this device" after a right code: ${what} commits first → verified, but no trusted device, and the check says false`, async () => {
      const { user, id, secret } = await enrolled();
      beforeWrite = () => remove(user, id);
      const login = await as(request(app).post('/auth/mfa/verify').send({ code: oathtool(secret, Date.now() + 30_000), rememberDevice: true, device: { fingerprint: 'fp-laptop' } }), user);
      expect(beforeWrite, 'the removal ran').to.equal(undefined);
      expect(login.status, login.text).to.equal(200);
      expect(login.body).to.include({ verified: true, method: 'totp' });
      expect(login.body).not.to.have.property('trustedDevice');
      const check = await request(app).get('/internal/session/trusted-devices/check').query({ user_id: user, device_fingerprint: 'fp-laptop' }).set(internal);
      expect(check.body).to.deep.equal({ trusted: false });
      expect(await db.knex('trusted_devices').where({ tenant_id: 'acme', user_id: user }).count({ n: '*' }).first()).to.deep.equal({ n: '0' });
    });

    it(`a new set of recovery codes: ${what} commits first → 400 MFA_NOT_ENROLLED and no codes stored`, async () => {
      const { user, id } = await enrolled();
      beforeWrite = () => remove(user, id);
      const codes = await as(request(app).post('/auth/mfa/recovery-codes'), user);
      expect(beforeWrite, 'the removal ran').to.equal(undefined);
      expect(codes.status, codes.text).to.equal(400);
      expect(codes.body).to.include({ code: 40000013 });
      expect(await db.knex('mfa_recovery_codes').where({ tenant_id: 'acme', user_id: user }).count({ n: '*' }).first()).to.deep.equal({ n: '0' });
    });
  }

  it('with a device left, both are written as before (the check is of the user\'s verified devices, not of the one removed)', async () => {
    const { user, id } = await enrolled();
    const second = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Tablet' }), user);
    const other = second.body as { device: { id: string }; secret: string };
    expect((await as(request(app).post(`/auth/mfa/devices/${other.device.id}/verify`).send({ code: oathtool(other.secret, Date.now()) }), user)).status).to.equal(200);
    beforeWrite = () => removals['the internal removal of the device'](user, id);
    const login = await as(request(app).post('/auth/mfa/verify').send({ code: oathtool(other.secret, Date.now() + 30_000), deviceId: other.device.id, rememberDevice: true, device: { fingerprint: 'fp-laptop' } }), user);
    expect(login.status, login.text).to.equal(200);
    expect(login.body).to.have.property('trustedDevice');
    const check = await request(app).get('/internal/session/trusted-devices/check').query({ user_id: user, device_fingerprint: 'fp-laptop' }).set(internal);
    expect(check.body.trusted).to.equal(true);
    const codes = await as(request(app).post('/auth/mfa/recovery-codes'), user);
    expect(codes.status, codes.text).to.equal(201);
  });
});
