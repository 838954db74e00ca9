/** `createTrustedDevices()` called directly (as the user-facing router does), on real Postgres with the memory cache. */
import { expect } from 'chai';
import { createTrustedDevices, internalRouter, isProblemError, memoryCache, silentLogger, type TrustedDevices } from '../index.js';
import { KEY_A, migratedStorage, type TestDb } from './support/fixtures.js';

describe('createTrustedDevices()', () => {
  let db: TestDb;
  let service: TrustedDevices;
  const events: string[] = [];

  before(async () => {
    db = await migratedStorage();
    service = createTrustedDevices({
      storage: db.storage,
      cache: memoryCache({ max: 100 }),
      logger: silentLogger,
      maxTtlSeconds: 3600,
      defaultTtlSeconds: 600,
      events: {
        trusted: ({ device, renewed }) => events.push(`trusted ${device.fingerprint} ${renewed}`),
        revoked: ({ count, deviceId }) => {
          events.push(`revoked ${count} ${deviceId ?? 'all'}`);
          throw new Error('a failing hook must not fail the revocation');
        },
      },
    });
  });
  after(async () => {
    service?.close();
    await db.drop();
  });

  it('trusts, renews, checks, lists and revokes', async () => {
    const d = await service.trust('acme', 'svc', { fingerprint: 'f1', deviceName: 'Laptop' });
    expect(d.trustedUntil.getTime() - d.createdAt.getTime()).to.be.within(599_000, 601_000);
    const again = await service.trust('acme', 'svc', { fingerprint: 'f1', ttlSeconds: 3600 });
    expect(again.id).to.equal(d.id);
    expect(again.deviceName).to.equal('Laptop');
    expect(await service.check('acme', 'svc', 'f1')).to.deep.equal({ trusted: true, deviceId: d.id, trustedUntil: again.trustedUntil });
    expect((await service.list('acme', 'svc', { includeExpired: false }, { limit: 10, offset: 0 })).total).to.equal(1);
    expect(await service.revoke('acme', 'other', d.id)).to.equal(false);
    expect(await service.revoke('acme', 'svc', 'not-a-uuid')).to.equal(false);
    expect(await service.revoke('acme', 'svc', d.id)).to.equal(true);
    expect(await service.check('acme', 'svc', 'f1')).to.deep.equal({ trusted: false });
    await service.trust('acme', 'svc', { fingerprint: 'f2' });
    expect(await service.revokeAll('acme', 'svc')).to.equal(1);
    expect(events).to.deep.equal(['trusted f1 false', 'trusted f1 true', `revoked 1 ${d.id}`, 'trusted f2 false', 'revoked 1 all']);
  });

  it("a cached \"trusted\" past its trustedUntil is not believed (an entry filled by an instance whose clock is behind): the check reads Postgres", async () => {
    const inner = memoryCache({ max: 100 });
    let stale: number | undefined;
    // Logic above the cache interface: the entry another instance left, whose time to live its slow clock made too long.
    const cache: typeof inner = Object.assign(Object.create(inner) as typeof inner, {
      get: async (...args: Parameters<typeof inner.get>) => {
        const hit = await inner.get(...args);
        return hit?.trusted && stale !== undefined ? { ...hit, trustedUntil: stale } : hit;
      },
    });
    const skewed = createTrustedDevices({ storage: db.storage, cache, logger: silentLogger });
    try {
      const d = await skewed.trust('acme', 'skew', { fingerprint: 'f' });
      expect((await skewed.check('acme', 'skew', 'f')).trusted).to.equal(true);
      await db.knex('trusted_devices').where({ id: d.id }).update({ trusted_until: new Date(Date.now() - 1000) });
      stale = Date.now() - 1000;
      expect(await skewed.check('acme', 'skew', 'f')).to.deep.equal({ trusted: false });
    } finally {
      skewed.close();
    }
  });

  it('rejects bad input with a 400 Problem naming the fields', async () => {
    for (const [input, field] of [
      [{ fingerprint: '' }, 'device_fingerprint'],
      [{ fingerprint: 'f', ttlSeconds: 3601 }, 'ttl_seconds'],
      [{ fingerprint: 'f', ttlSeconds: 0.5 }, 'ttl_seconds'],
      [{ fingerprint: 'f', ip: '1.2.3' }, 'ip'],
      [{ fingerprint: 'f', deviceName: 'x'.repeat(256) }, 'device_name'],
      [{ fingerprint: 'f\u0000' }, 'device_fingerprint'],
      [{ fingerprint: 'f\ud800' }, 'device_fingerprint'],
      // What the routes refuse in text people read (lib/validation.ts displayText), trust() refuses as well.
      [{ fingerprint: 'f', deviceName: 'Phone\nAdmin: yes' }, 'device_name'],
      [{ fingerprint: 'f', deviceType: 'mobile\u001b[2J' }, 'device_type'],
      [{ fingerprint: 'f', browser: 'Firefox\u202Exodnif' }, 'browser'],
      [{ fingerprint: 'f', os: 'Linux\u2028' }, 'os'],
    ] as const) {
      const err = await service.trust('acme', 'svc', input).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isProblemError(err), field).to.equal(true);
      if (!isProblemError(err)) continue;
      expect(err.status).to.equal(400);
      expect(err.errors?.[0]?.field).to.equal(field);
    }
    // A fingerprint is opaque: only storable, so a tab or a line break in it is kept as given.
    const opaque = await service.trust('acme', 'svc-opaque', { fingerprint: 'f\tg\nh', deviceName: 'Pixel 8 \u{1F4F1} \u200D' });
    expect(opaque.fingerprint).to.equal('f\tg\nh');
    expect((await service.check('acme', 'svc-opaque', 'f\tg\nh')).trusted).to.equal(true);
  });

  it('fails at set-up with the fix in the message', () => {
    expect(() => createTrustedDevices({} as never)).to.throw(TypeError, /storage/);
    expect(() => createTrustedDevices({ storage: db.storage, maxTtlSeconds: 0 })).to.throw(TypeError, /maxTtlSeconds/);
    expect(() => createTrustedDevices({ storage: db.storage, maxTtlSeconds: 60, defaultTtlSeconds: 61 })).to.throw(TypeError, /defaultTtlSeconds/);
    expect(() => createTrustedDevices({ storage: db.storage, cache: {} as never })).to.throw(TypeError, /cache/);
    expect(() => createTrustedDevices({ storage: db.storage, negativeTTL: 5 } as never)).to.throw(TypeError, /unknown option/);
    expect(() => internalRouter({ storage: db.storage, internalKeys: [KEY_A], trustedDevices: { maxTtl: 5 } as never })).to.throw(TypeError, /unknown option 'maxTtl'. Known options: maxTtlSeconds/);
    expect(() => internalRouter({ storage: db.storage, internalKeys: [KEY_A], cache: { get() {} } as never })).to.throw(TypeError, /cache/);
  });
});
