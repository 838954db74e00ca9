/**
 * Guards the Knex storage keeps on its own, below the service's checks, on a real Postgres: what a racing request
 * (another instance, a moment later) would get past the service. Each is a condition inside one statement.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type { LockoutPolicy } from '../storage/types.js';
import { insertDevice, migratedStorage, type TestDb } from './support/fixtures.js';

describe('Knex storage guards', () => {
  let db: TestDb;
  before(async () => {
    db = await migratedStorage();
  });
  after(async () => {
    await db?.drop();
  });

  const record = (tenantId: string, userId: string, deviceId: string) => ({
    tenantId,
    userId,
    deviceId,
    purpose: 'login' as const,
    salt: randomBytes(16),
    codeHash: randomBytes(32),
    expiresAt: new Date(Date.now() + 600_000),
  });
  const codes = async (deviceId: string) => Number(((await db.knex('mfa_otp_codes').where({ device_id: deviceId }).count({ n: '*' }).first()) as { n: string }).n);

  it('otpCodes.put: no code for a verified device that is off (a disable that committed first); a pending enrolment gets one', async () => {
    const off = await insertDevice(db.knex, { tenantId: 'acme', userId: 'guard-off', method: 'sms', verified: true, enabled: false });
    expect(await db.storage.otpCodes.put(record('acme', 'guard-off', off))).to.equal(false);
    expect(await codes(off)).to.equal(0);
    const on = await insertDevice(db.knex, { tenantId: 'acme', userId: 'guard-off', method: 'sms', verified: true, enabled: true });
    expect(await db.storage.otpCodes.put(record('acme', 'guard-off', on))).to.equal(true);
    const pending = await insertDevice(db.knex, { tenantId: 'acme', userId: 'guard-off', method: 'email', verified: false, enabled: false });
    expect(await db.storage.otpCodes.put({ ...record('acme', 'guard-off', pending), purpose: 'enrollment' })).to.equal(true);
    // Another user's device: nothing.
    expect(await db.storage.otpCodes.put(record('acme', 'someone-else', on))).to.equal(false);
  });

  it('otpCodes.consume: only the code whose hash was compared (a code re-issued in between stays)', async () => {
    const id = await insertDevice(db.knex, { tenantId: 'acme', userId: 'guard-consume', method: 'sms' });
    const issued = record('acme', 'guard-consume', id);
    expect(await db.storage.otpCodes.put(issued)).to.equal(true);
    const key = { tenantId: 'acme', userId: 'guard-consume', deviceId: id, purpose: 'login' as const };
    expect(await db.storage.otpCodes.consume(key, randomBytes(32))).to.equal(false);
    expect(await codes(id)).to.equal(1);
    expect(await db.storage.otpCodes.consume(key, issued.codeHash)).to.equal(true);
    expect(await codes(id)).to.equal(0);
  });

  it('verificationThrottle.refund never takes the counter below zero: a refund racing a reset cannot buy extra guesses', async () => {
    const throttle = db.storage.verificationThrottle;
    const policy: LockoutPolicy = { maxFailures: 3, cooldownSeconds: 900 };
    expect((await throttle.charge('acme', 'guard-refund', policy)).status).to.not.equal('LOCKED');
    await throttle.refund!('acme', 'guard-refund');
    await throttle.refund!('acme', 'guard-refund');
    const row = (await db.knex('mfa_verification_failures').where({ tenant_id: 'acme', user_id: 'guard-refund' }).first()) as { failures: number };
    expect(row.failures).to.equal(0);
    // So still exactly maxFailures charges before the lock.
    for (let i = 0; i < 3; i++) expect((await throttle.charge('acme', 'guard-refund', policy)).status, `charge ${i + 1}`).to.not.equal('LOCKED');
    expect((await throttle.charge('acme', 'guard-refund', policy)).status).to.equal('LOCKED');
  });
});
