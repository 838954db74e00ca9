/**
 * "Remember this device" that cannot be written after a right code: the second factor passed and the code is spent,
 * so the login answers 200 without the browser remembered (no trustedDevice), not a 5xx that costs the user another
 * code; the log says why, without the SQL knex puts in its errors.
 */
import { expect } from 'chai';
import request from 'supertest';
import type { Logger, MfaStorage, TrustedDeviceStore } from '../index.js';
import { errorMessage } from '../lib/throttled-log.js';
import { migratedStorage, type TestDb } from './support/fixtures.js';
import { as, mfaApp, oathtool } from './support/mfa.js';

describe('a login whose "remember this device" cannot be written', function () {
  this.timeout(30_000);
  let db: TestDb;
  const lines: string[] = [];
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (obj: object, msg?: string) => void lines.push(JSON.stringify({ ...obj, msg })),
    error: (obj: object, msg?: string) => void lines.push(JSON.stringify({ ...obj, msg })),
  };

  before(async () => {
    db = await migratedStorage();
  });
  after(async () => {
    await db?.drop();
  });

  it('answers 200 without trustedDevice, logs the failure without SQL, and the code stays spent', async () => {
    const trustedDevices = Object.create(db.storage.trustedDevices) as TrustedDeviceStore;
    // As knex words a failed statement: the SQL, then the driver's message.
    trustedDevices.upsert = () => Promise.reject(Object.assign(new Error('insert into trusted_devices (tenant_id, id) values ($1, $2) - Connection terminated unexpectedly'), { name: 'Error' }));
    const storage: MfaStorage = Object.assign(Object.create(db.storage) as MfaStorage, { trustedDevices });
    const { app } = mfaApp(storage, { rateLimit: false, logger });
    const enrol = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), 'rem');
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    expect((await as(request(app).post(`/auth/mfa/devices/${device.id}/verify`).send({ code: oathtool(secret, Date.now()) }), 'rem')).status).to.equal(200);

    const code = oathtool(secret, Date.now() + 30_000);
    const login = await as(request(app).post('/auth/mfa/verify').set('X-Request-ID', 'req_remember1').send({ code, rememberDevice: true, device: { fingerprint: 'fp-laptop' } }), 'rem');
    expect(login.status, login.text).to.equal(200);
    expect(login.body).to.include({ verified: true, method: 'totp', deviceId: device.id });
    expect(login.body).not.to.have.property('trustedDevice');
    const line = lines.find((l) => l.includes('could not be remembered'));
    expect(line, lines.join('\n')).to.be.a('string');
    expect(JSON.parse(line!)).to.deep.include({ request_id: 'req_remember1', tenant_id: 'acme', error: 'Connection terminated unexpectedly' });
    expect(line).not.to.match(/insert into|trusted_devices \(/i);
    expect((await as(request(app).post('/auth/mfa/verify').send({ code }), 'rem')).status).to.equal(400);
  });

  it("errorMessage() leaves out the SQL knex puts before a driver's message", () => {
    expect(errorMessage(new Error('select epoch from trusted_device_cache_epoch for update - canceling statement due to statement timeout'))).to.equal('canceling statement due to statement timeout');
    expect(errorMessage(new Error('Command timed out'))).to.equal('Command timed out');
    expect(errorMessage('plain')).to.equal('plain');
  });
});
