/** One contract for every `TrustedDeviceCache`: the memory and the Redis adapter must pass the same tests. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createTrustedDevices, memoryCache, redisCache, REDIS_CACHE_CLIENT_OPTIONS, silentLogger, type CachedTrust, type TrustScope, type TrustedDeviceCache, type TrustedDeviceStore } from '../index.js';
import { DEFAULT_REDIS_TIMEOUT_MS, INCARNATION_RECHECK_MS, incarnationOf } from '../storage/cache/redis.js';
import { cacheKeys, FILL_MAX_AGE_MS, newGenerationHoldMs } from '../storage/cache/types.js';
import { privateRedis, redisUrl, requireRedis } from './support/redis.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const scope = (over: Partial<TrustScope> = {}): TrustScope => ({ epoch: 1, tenantId: 'acme', userId: `u-${randomBytes(4).toString('hex')}`, ...over });
const yes = (deviceId = 'd1', trustedUntil = Date.now() + 3_600_000): CachedTrust => ({ trusted: true, deviceId, trustedUntil });
const no: CachedTrust = { trusted: false };

/**
 * A fill of a generation the cache knows (raised first, as a change does): what most tests here are about. A fill that
 * finds no generation at all is held instead ('a fill that finds no generation…' below).
 */
async function primedFill(c: TrustedDeviceCache, s: TrustScope, fingerprint: string, generation: number, value: CachedTrust, ttlMs: number): Promise<boolean> {
  await c.invalidate(s, generation);
  return c.fill(s, fingerprint, generation, value, ttlMs);
}

interface Adapter {
  name: string;
  /** Called in `before`; may skip the suite. */
  setUp(ctx: Mocha.Context): Promise<TrustedDeviceCache>;
  tearDown(): Promise<void>;
}

const adapters: Adapter[] = [
  {
    name: 'memoryCache',
    setUp: () => Promise.resolve(memoryCache({ max: 1000 })),
    tearDown: () => Promise.resolve(),
  },
  (() => {
    let client: Redis | undefined;
    return {
      name: 'redisCache',
      async setUp(ctx: Mocha.Context) {
        const url = await redisUrl();
        requireRedis(ctx, url);
        client = new Redis(url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
        await client.connect();
        return redisCache({ client, keyPrefix: `test:${randomBytes(6).toString('hex')}:`, logger: silentLogger });
      },
      async tearDown() {
        await client?.quit();
      },
    };
  })(),
];

for (const adapter of adapters) {
  describe(`TrustedDeviceCache contract: ${adapter.name}`, function () {
    let cache: TrustedDeviceCache;

    before(async function () {
      cache = await adapter.setUp(this);
    });
    after(async () => {
      await cache?.close?.();
      await adapter.tearDown();
    });

    it('misses on an empty cache', async () => {
      expect(await cache.get(scope(), 'fp')).to.equal(undefined);
    });

    it('returns what a fill stored: positive and negative entries', async () => {
      const s = scope();
      const value = yes('dev-1', Date.UTC(2030, 0, 1));
      expect(await primedFill(cache, s, 'fp-yes', 3, value, 60_000)).to.equal(true);
      expect(await primedFill(cache, s, 'fp-no', 3, no, 60_000)).to.equal(true);
      expect(await cache.get(s, 'fp-yes')).to.deep.equal(value);
      expect(await cache.get(s, 'fp-no')).to.deep.equal(no);
      expect(await cache.get(s, 'fp-other')).to.equal(undefined);
    });

    it('accepts generation 0 (a user who never had a change)', async () => {
      const s = scope();
      expect(await primedFill(cache, s, 'fp', 0, no, 60_000)).to.equal(true);
      expect(await cache.get(s, 'fp')).to.deep.equal(no);
    });

    it('refuses a fill carrying an older generation than the current one, and keeps the newer entry', async () => {
      const s = scope();
      expect(await primedFill(cache, s, 'fp', 5, no, 60_000)).to.equal(true);
      expect(await primedFill(cache, s, 'fp', 4, yes(), 60_000)).to.equal(false);
      expect(await cache.get(s, 'fp')).to.deep.equal(no);
    });

    it('invalidate hides every older entry of the user, at once', async () => {
      const s = scope();
      await primedFill(cache, s, 'a', 1, yes('a'), 60_000);
      await primedFill(cache, s, 'b', 1, no, 60_000);
      await cache.invalidate(s, 2);
      expect(await cache.get(s, 'a')).to.equal(undefined);
      expect(await cache.get(s, 'b')).to.equal(undefined);
      // A fill read before the change (generation 1) cannot reinstate it...
      expect(await primedFill(cache, s, 'a', 1, yes('a'), 60_000)).to.equal(false);
      expect(await cache.get(s, 'a')).to.equal(undefined);
      // ...one read after it can.
      expect(await primedFill(cache, s, 'a', 2, no, 60_000)).to.equal(true);
      expect(await cache.get(s, 'a')).to.deep.equal(no);
    });

    it('never lowers the generation', async () => {
      const s = scope();
      await cache.invalidate(s, 7);
      await cache.invalidate(s, 3);
      expect(await primedFill(cache, s, 'fp', 3, yes(), 60_000)).to.equal(false);
      expect(await primedFill(cache, s, 'fp', 7, yes('x'), 60_000)).to.equal(true);
      expect(await cache.get(s, 'fp')).to.deep.include({ trusted: true, deviceId: 'x' });
    });

    it('a fill that finds no generation sets it and stores nothing while it is held (the cache may have lost a raise); then fills store again', async function () {
      this.timeout(10_000);
      const s = scope();
      expect(await cache.fill(s, 'fp', 3, yes(), 60_000)).to.equal(false);
      expect(await cache.get(s, 'fp')).to.equal(undefined);
      // Held: a second fill of the same generation, even one a change raised to, stores nothing yet.
      expect(await cache.fill(s, 'fp', 3, yes(), 60_000)).to.equal(false);
      await cache.invalidate(s, 4);
      expect(await cache.fill(s, 'fp', 4, no, 60_000)).to.equal(false);
      // …and it is still the generation: an older fill stays refused after the hold.
      await sleep(newGenerationHoldMs(DEFAULT_REDIS_TIMEOUT_MS) + 100);
      expect(await cache.fill(s, 'fp', 3, yes(), 60_000)).to.equal(false);
      expect(await cache.fill(s, 'fp', 4, no, 60_000)).to.equal(true);
      expect(await cache.get(s, 'fp')).to.deep.equal(no);
      // A generation a change set (not a fill) holds nothing.
      const raised = scope();
      await cache.invalidate(raised, 1);
      expect(await cache.fill(raised, 'fp', 1, no, 60_000)).to.equal(true);
    });

    it('an invalidate racing fills of the previous generation always wins', async () => {
      for (let round = 0; round < 20; round++) {
        const s = scope();
        await primedFill(cache, s, 'fp', 1, yes(), 60_000);
        await Promise.all([primedFill(cache, s, 'fp', 1, yes(), 60_000), cache.invalidate(s, 2), primedFill(cache, s, 'fp', 1, yes(), 60_000)]);
        expect(await cache.get(s, 'fp'), `round ${round}`).to.equal(undefined);
      }
    });

    it('an entry disappears after its TTL', async () => {
      const s = scope();
      await primedFill(cache, s, 'fp', 1, yes(), 80);
      expect(await cache.get(s, 'fp')).to.not.equal(undefined);
      await sleep(200);
      expect(await cache.get(s, 'fp')).to.equal(undefined);
    });

    it('keeps tenants, users, epochs and fingerprints apart, including ids that would collide when concatenated', async () => {
      const base = scope({ tenantId: 't1', userId: 'a:b' });
      await primedFill(cache, base, 'x', 1, yes('mine'), 60_000);
      for (const other of [
        scope({ tenantId: 't2', userId: 'a:b' }),
        scope({ tenantId: 't1', userId: 'a:b:x' }),
        scope({ tenantId: 't1', userId: 'a' }),
        scope({ tenantId: 't1:a', userId: 'b' }),
        { ...base, epoch: 2 },
      ]) {
        expect(await cache.get(other, 'x'), JSON.stringify(other)).to.equal(undefined);
        expect(await primedFill(cache, other, 'x', 9, no, 60_000), JSON.stringify(other)).to.equal(true);
      }
      expect(await cache.get(base, 'x')).to.deep.include({ trusted: true, deviceId: 'mine' });
      expect(await cache.get(base, 'x:')).to.equal(undefined);
    });

    it('stores any fingerprint and user id text (unicode, separators, long)', async () => {
      const s = scope({ userId: 'üser|1|2 {tag}' });
      const fp = `fp|${'é'.repeat(500)}|{x}`;
      await primedFill(cache, s, fp, 1, yes('d|weird'.replace('|', '-')), 60_000);
      expect(await cache.get(s, fp)).to.deep.include({ trusted: true, deviceId: 'd-weird' });
    });

    it('answers ping', async () => {
      expect(await cache.ping()).to.equal(true);
    });
  });
}

describe('memoryCache: bounds', () => {
  it('keeps at most `max` keys, dropping the least recently used first', async () => {
    const cache = memoryCache({ max: 6 });
    const s = scope();
    // 1 generation key + 5 entries = 6
    for (const fp of ['a', 'b', 'c', 'd', 'e']) await primedFill(cache, s, fp, 1, yes(fp), 60_000);
    expect(cache.size).to.equal(6);
    expect(await cache.get(s, 'a')).to.not.equal(undefined); // 'a' is now recently used
    await primedFill(cache, s, 'f', 1, yes('f'), 60_000);
    expect(cache.size).to.equal(6);
    expect(await cache.get(s, 'b')).to.equal(undefined);
    expect(await cache.get(s, 'a')).to.deep.include({ deviceId: 'a' });
    expect(await cache.get(s, 'f')).to.deep.include({ deviceId: 'f' });
  });

  it('refuses bad options at set-up with the fix in the message', () => {
    expect(() => memoryCache({ max: 0 })).to.throw(TypeError, /max/);
    expect(() => memoryCache({ maxx: 5 } as never)).to.throw(TypeError, /Did you mean 'max'/);
  });
});

describe('redisCache: Redis specifics', function () {
  let url: string;
  let client: Redis;
  const prefix = `test:${randomBytes(6).toString('hex')}:`;

  before(async function () {
    const found = await redisUrl();
    requireRedis(this, found);
    url = found;
    client = new Redis(url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    // Every adapter listens to its client ('error', 'close', 'ready'); the tests here make many on this one.
    client.setMaxListeners(100);
    await client.connect();
  });
  after(async () => {
    await client?.quit();
  });

  it('writes only under its prefix, with TTLs, and without identifiers in clear', async () => {
    const cache = redisCache({ client, keyPrefix: prefix, logger: silentLogger });
    const s = scope({ userId: 'alice@example.com' });
    await primedFill(cache, s, 'secret-fingerprint', 4, yes('dev'), 30_000);
    const keys = await client.keys(`${prefix}*`);
    expect(keys).to.have.length(2);
    for (const key of keys) {
      expect(key).not.to.contain('alice');
      expect(key).not.to.contain('secret-fingerprint');
      expect(await client.pttl(key)).to.be.greaterThan(0);
    }
    const entry = keys.find((k) => k.includes(':f:'))!;
    const pttl = await client.pttl(entry);
    expect(pttl).to.be.at.most(30_000);
    // The generation outlives its entries.
    expect(await client.pttl(keys.find((k) => k.endsWith(':g'))!)).to.be.greaterThan(pttl);
  });

  it('after Redis lost the generation a revocation raised (FLUSHALL, a restart without persistence), a fill read before the revocation is not stored', async function () {
    this.timeout(10_000);
    const own = `${prefix}lost:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    // Trusted at generation 4, then revoked (generation 5, raised in Redis)…
    expect(await primedFill(cache, s, 'fp', 4, yes('dev'), 60_000)).to.equal(true);
    await cache.invalidate(s, 5);
    // …and Redis loses everything (only this test's keys here: the server is shared).
    const keys = await client.keys(`${own}*`);
    await client.del(...keys);
    // Checks that read Postgres before the revocation land now, one after another: none is stored.
    expect(await cache.fill(s, 'fp', 4, yes('dev'), 60_000)).to.equal(false);
    expect(await cache.fill(s, 'fp', 4, yes('dev'), 60_000)).to.equal(false);
    expect(await cache.get(s, 'fp')).to.equal(undefined);
    // After the hold, a check that read after the revocation is.
    await sleep(newGenerationHoldMs(DEFAULT_REDIS_TIMEOUT_MS) + 100);
    expect(await cache.fill(s, 'fp', 5, no, 60_000)).to.equal(true);
    expect(await cache.get(s, 'fp')).to.deep.equal(no);
  });

  it('after Redis evicted the generation key alone, a late fill that makes it again with the old number brings no entry back', async () => {
    const own = `${prefix}evicted:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    // 'phone' trusted at generation 1; a check of 'laptop' reads Postgres (generation 1) and is slow to fill…
    expect(await primedFill(cache, s, 'phone', 1, yes('dev-phone'), 60_000)).to.equal(true);
    // …'phone' is revoked (generation 2), then the generation key alone is evicted; the entry of 'phone' stays.
    await cache.invalidate(s, 2);
    const keys = await client.keys(`${own}*`);
    await client.del(keys.find((k) => k.endsWith(':g'))!);
    expect(await client.keys(`${own}*`)).to.have.length(1);
    // The late fill makes the generation key again, at 1: the entry stamped before is not believed.
    expect(await cache.fill(s, 'laptop', 1, no, 60_000)).to.equal(false);
    expect(await cache.get(s, 'phone')).to.equal(undefined);
  });

  it('the hold lives in the generation key itself: no other key to evict, and a second late fill during it stores nothing', async () => {
    const own = `${prefix}hold:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    expect(await cache.fill(s, 'fp', 5, yes(), 60_000)).to.equal(false);
    const keys = await client.keys(`${own}*`);
    expect(keys).to.have.length(1);
    expect(await client.get(keys[0]!)).to.match(/^5\.1\d{13}\d+$/);
    expect(await cache.fill(s, 'fp', 5, yes(), 60_000)).to.equal(false);
    expect(await cache.get(s, 'fp')).to.equal(undefined);
  });

  /** The fill script of express-mfa-kit 0.1.0, as it runs on an instance not yet upgraded. */
  const OLD_FILL = `
local want = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]))
if current == nil or current < want then
  redis.call('SET', KEYS[1], ARGV[1])
  current = want
end
local keep = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
if KEYS[2] ~= nil and current == want then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0`;

  it("beside an instance of the version before (0.1.0's script, on the same keys), the generation is never lowered and nothing stale is believed", async () => {
    const own = `${prefix}mixed:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    expect(await primedFill(cache, s, 'phone', 6, yes('dev-phone'), 60_000)).to.equal(true);
    await cache.invalidate(s, 7); // the phone revoked
    const [generationKey] = (await client.keys(`${own}*`)).filter((k) => k.endsWith(':g'));
    const entryKey = (await client.keys(`${own}*`)).find((k) => k.includes(':f:'))!;
    // The old instance's late fill of generation 6 (read before the revocation): it neither lowers the generation nor stores.
    expect(await client.eval(OLD_FILL, 2, generationKey!, entryKey, 6, 3_600_000, `6|dev-phone|${Date.now() + 60_000}`, 60_000)).to.equal(0);
    expect(await client.get(generationKey!)).to.match(/^7\./);
    expect(await cache.get(s, 'phone')).to.equal(undefined);
    // Nor at 7: the old instance sees a generation above 7 and stores nothing the new one would believe.
    expect(await client.eval(OLD_FILL, 2, generationKey!, entryKey, 7, 3_600_000, `7|dev-phone|${Date.now() + 60_000}`, 60_000)).to.equal(0);
    expect(await cache.get(s, 'phone')).to.equal(undefined);
  });

  it("beside 0.1.0, after Redis lost the key: a late raise below 0.1.0's late fill does not make its key trusted", async () => {
    const own = `${prefix}mixed-late-raise:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    const until = Date.now() + 60_000;
    const keys = cacheKeys(s, 'phone');
    const [generationKey, phoneKey] = [own + keys.generation, own + keys.entry!];
    // The phone revoked at 6; Redis lost the key; 0.1.0's late fill of the phone at 5 writes `5` and its entry…
    await cache.invalidate(s, 6);
    await client.del(generationKey);
    expect(await client.eval(OLD_FILL, 2, generationKey, phoneKey, 5, 3_600_000, `5|dev-phone|${until}`, 60_000)).to.equal(1);
    // …a raise older than that lands late, then the new instance's late fill at 5: nothing is stored or believed.
    await cache.invalidate(s, 4);
    expect(await cache.fill(s, 'phone', 5, yes('dev-phone', until), 60_000)).to.equal(false);
    expect(await cache.get(s, 'phone')).to.equal(undefined);
  });

  it("a generation key with decimals this version does not write is made again, not an error", async () => {
    const own = `${prefix}odd-decimals:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    const generationKey = own + cacheKeys(s, undefined).generation;
    for (const odd of ['5.5', '5.0', '5.2000000000000000', '5.']) {
      await client.set(generationKey, odd, 'PX', 60_000);
      expect(await cache.fill(s, 'fp', 5, no, 60_000), odd).to.equal(false);
      expect(await client.get(generationKey), odd).to.match(/^5\.1[1-9]\d{12}\d+$/);
      expect(await cache.get(s, 'fp'), odd).to.equal(undefined);
    }
  });

  it("beside 0.1.0, after Redis lost the key: 0.1.0's late fill at a higher generation writes its own form of the key, and the revoked device is still not answered trusted", async () => {
    const own = `${prefix}mixed-higher:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    const until = Date.now() + 60_000;
    const keys = cacheKeys(s, 'phone');
    const [generationKey, phoneKey] = [own + keys.generation, own + keys.entry!];
    // The phone trusted at 5, a laptop at 6, the phone revoked at 7; then Redis lost the key, and with it the raise
    // to 7. Late fills of reads made before the revocation land. The new instance's, at 5, makes the key with a hold.
    expect(await cache.fill(s, 'phone', 5, yes('dev-phone', until), 60_000)).to.equal(false);
    expect(await client.get(generationKey)).to.match(/^5\.1/);
    // 0.1.0's, of the phone at 6, reads 5.1… as below 6: it writes `6`, its own form of the key, and its entry.
    expect(await client.eval(OLD_FILL, 2, generationKey, phoneKey, 6, 3_600_000, `6|dev-phone|${until}`, 60_000)).to.equal(1);
    expect(await client.get(generationKey)).to.equal('6');
    // Nothing under 0.1.0's form of the key is believed…
    expect(await cache.get(s, 'phone')).to.equal(undefined);
    // …and the new instance's late fill at 6 makes the key again, with a hold, and stores nothing.
    expect(await cache.fill(s, 'phone', 6, yes('dev-phone', until), 60_000)).to.equal(false);
    expect(await client.get(generationKey)).to.match(/^6\.1\d{13}\d+$/);
    expect(await cache.get(s, 'phone')).to.equal(undefined);
  });

  it("a key in 0.1.0's form (no decimals) is made again: by a raise at or above its number without a hold, by a fill with one; a raise below it leaves it as it is; nothing lowers it", async () => {
    const own = `${prefix}old-form:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    const keys = cacheKeys(s, 'fp');
    const [generationKey, entryKey] = [own + keys.generation, own + keys.entry!];
    await client.set(generationKey, '9', 'PX', 60_000);
    await client.set(entryKey, `9|dev|${Date.now() + 60_000}`, 'PX', 60_000);
    expect(await cache.get(s, 'fp')).to.equal(undefined);
    // A raise below the key's number is not the newest: the key stays as 0.1.0 wrote it, believed by no one.
    await cache.invalidate(s, 4);
    expect(await client.get(generationKey)).to.equal('9');
    expect(await cache.get(s, 'fp')).to.equal(undefined);
    // A raise at or above it is: the key gets decimals without a hold, and a fill at it stores.
    await cache.invalidate(s, 10);
    expect(await client.get(generationKey)).to.match(/^10\.10{13}\d+$/);
    expect(await cache.fill(s, 'fp', 10, no, 60_000)).to.equal(true);
    expect(await cache.get(s, 'fp')).to.deep.equal(no);
    // A fill that meets 0.1.0's form below its own generation: the key takes the fill's number, with a hold.
    await client.set(generationKey, '3', 'PX', 60_000);
    expect(await cache.fill(s, 'fp', 9, no, 60_000)).to.equal(false);
    expect(await client.get(generationKey)).to.match(/^9\.1[1-9]\d{12}\d+$/);
    // And one above it: the key keeps its number, with a hold.
    await client.set(generationKey, '12', 'PX', 60_000);
    expect(await cache.fill(s, 'fp', 9, no, 60_000)).to.equal(false);
    expect(await client.get(generationKey)).to.match(/^12\.1[1-9]\d{12}\d+$/);
  });

  it("keys made under another incarnation of the server (before a restart that loaded a snapshot, or by the version before this one) are not believed: a fill makes the key again with a hold, a raise without one; neither lowers it", async () => {
    const own = `${prefix}incarnation:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    const keys = cacheKeys(s, 'fp');
    const [generationKey, entryKey] = [own + keys.generation, own + keys.entry!];
    const here = incarnationOf(`${await client.info('server')}\n${await client.info('replication')}`);
    expect(here).to.match(/^\d{15}$/).and.not.equal('000000000000000');
    // This server's keys carry its incarnation after the hold's end.
    expect(await primedFill(cache, s, 'fp', 4, yes('dev'), 60_000)).to.equal(true);
    const made = (await client.get(generationKey))!;
    expect(made.slice(made.indexOf('.') + 15, made.indexOf('.') + 30)).to.equal(here);
    // The same key and entry, but under another incarnation (what a snapshot brings back; or the decimals of the
    // version before, whose digits there are its process's): not believed.
    const elsewhere = String((Number(here) + 1) % 1e15).padStart(15, '0');
    for (const other of [`4.10000000000000${elsewhere}77`, '4.10000000000000123456789177']) {
      await client.set(generationKey, other, 'PX', 60_000);
      await client.set(entryKey, `${other}|dev|${Date.now() + 60_000}`, 'PX', 60_000);
      expect(await cache.get(s, 'fp'), other).to.equal(undefined);
      // A fill makes the key again, at its number, with a hold: nothing stored yet.
      expect(await cache.fill(s, 'fp', 4, yes('dev'), 60_000), other).to.equal(false);
      const again = (await client.get(generationKey))!;
      expect(again, other).to.match(/^4\.1[1-9]\d{12}\d+$/);
      expect(again.slice(again.indexOf('.') + 15, again.indexOf('.') + 30), other).to.equal(here);
      expect(await cache.get(s, 'fp'), other).to.equal(undefined);
    }
    // A raise at or above its number makes it again without a hold; one below leaves it (believed by no one).
    await client.set(generationKey, `7.10000000000000${elsewhere}77`, 'PX', 60_000);
    await cache.invalidate(s, 5);
    expect(await client.get(generationKey)).to.equal(`7.10000000000000${elsewhere}77`);
    await cache.invalidate(s, 8);
    const raised = (await client.get(generationKey))!;
    expect(raised).to.match(/^8\.10{13}\d+$/);
    expect(raised.slice(raised.indexOf('.') + 15, raised.indexOf('.') + 30)).to.equal(here);
    expect(await cache.fill(s, 'fp', 8, no, 60_000)).to.equal(true);
    expect(await cache.get(s, 'fp')).to.deep.equal(no);
  });

  it('a reconnection to the same server keeps the cache (same incarnation); a client refused INFO works without telling incarnations', async () => {
    const own = `${prefix}reconnect:`;
    const own2 = new Redis(url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    await own2.connect();
    const lines: string[] = [];
    try {
      const cache = redisCache({ client: own2, keyPrefix: own, logger: silentLogger });
      const s = scope();
      expect(await primedFill(cache, s, 'fp', 2, yes('dev'), 60_000)).to.equal(true);
      const ready = new Promise((resolve) => own2.once('ready', resolve));
      own2.disconnect(true);
      await ready;
      expect(await cache.get(s, 'fp')).to.deep.include({ trusted: true, deviceId: 'dev' });

      const refused = Object.create(own2) as Redis;
      Object.defineProperty(refused, 'info', { value: () => Promise.reject(Object.assign(new Error('NOPERM this user has no permissions to run the info command'), { name: 'ReplyError' })) });
      const logger = { ...silentLogger, warn: (_o: object, m?: string) => void lines.push(m ?? '') };
      const blind = redisCache({ client: refused, keyPrefix: `${own}blind:`, logger });
      const t = scope();
      expect(await primedFill(blind, t, 'fp', 2, yes('dev'), 60_000)).to.equal(true);
      expect(await blind.get(t, 'fp')).to.deep.include({ trusted: true, deviceId: 'dev' });
      expect(lines.some((l) => l.includes('INFO is refused')), lines.join('; ')).to.equal(true);
      await blind.close?.();
      await cache.close?.();
    } finally {
      own2.disconnect();
    }
  });

  it('a switch of roles without a reconnect (REPLICAOF: the server takes an older copy from a replica promoted meanwhile) is seen within INCARNATION_RECHECK_MS: the entry a raise made stale is not believed again', async function () {
    this.timeout(30_000);
    // Their own directory: a full resynchronisation writes an RDB file.
    const dir = mkdtempSync(path.join(tmpdir(), 'mfa-redis-switch-'));
    const [a, b] = [await privateRedis({ dir }), await privateRedis({ dir: mkdtempSync(path.join(dir, 'b-')) })];
    const client = new Redis(a.url, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    client.on('error', () => undefined);
    const raw = [new Redis(a.url), new Redis(b.url)] as const;
    let closes = 0;
    try {
      await client.connect();
      client.on('close', () => closes++);
      const cache = redisCache({ client, keyPrefix: 'switch:', logger: silentLogger });
      const s = scope();
      const generationKey = `switch:${cacheKeys(s, 'fp').generation}`;
      expect(await primedFill(cache, s, 'fp', 4, yes('dev'), 60_000)).to.equal(true);
      const until = async (what: string, ok: () => Promise<boolean>) => {
        for (let i = 0; i < 200; i++) if (await ok()) return;
        else await sleep(25);
        throw new Error(`not within 5 s: ${what}`);
      };
      // B copies A (the trusted entry, generation 4), then is cut off and promoted.
      await raw[1].replicaof('127.0.0.1', a.port);
      await until('B has the entry', async () => (await raw[1].get(generationKey)) === (await raw[0].get(generationKey)));
      await raw[1].replicaof('NO', 'ONE');
      // The revocation's raise lands on A only.
      await cache.invalidate(s, 5);
      expect(await cache.get(s, 'fp')).to.equal(undefined);
      // A becomes B's replica: it takes B's older copy, on the same connection.
      const older = (await raw[1].get(generationKey))!;
      await raw[0].replicaof('127.0.0.1', b.port);
      await until('A has the older copy', async () => (await raw[0].get(generationKey)) === older);
      await sleep(INCARNATION_RECHECK_MS + 100);
      expect(await cache.get(s, 'fp')).to.equal(undefined);
      expect(closes, 'no reconnect: the role was read again').to.equal(0);
      await cache.close?.();
    } finally {
      client.disconnect();
      for (const r of raw) r.disconnect();
      await a.stop();
      await b.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a malformed entry is a miss, not an error', async () => {
    const own = `${prefix}malformed:`;
    const cache = redisCache({ client, keyPrefix: own, logger: silentLogger });
    const s = scope();
    await primedFill(cache, s, 'fp', 1, yes(), 30_000);
    const entry = (await client.keys(`${own}*`)).find((k) => k.includes(':f:'))!;
    for (const garbage of ['', 'x', '1|', '1|d|notanumber', '1|-|extra']) {
      await client.set(entry, garbage);
      expect(await cache.get(s, 'fp'), garbage).to.equal(undefined);
    }
  });

  it('fails fast (rejects, does not hang) when Redis is unreachable, and ping answers false', async () => {
    // Nothing listens on port 1; the offline queue is off, so commands fail at once.
    const dead = new Redis('redis://127.0.0.1:1', { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    const cache = redisCache({ client: dead, keyPrefix: prefix, logger: silentLogger, timeoutMs: 300 });
    try {
      let error: unknown;
      await Promise.resolve(cache.get(scope(), 'fp')).catch((err: unknown) => (error = err));
      expect(error).to.be.instanceOf(Error);
      error = undefined;
      await Promise.resolve(primedFill(cache, scope(), 'fp', 1, no, 1000)).catch((err: unknown) => (error = err));
      expect(error).to.be.instanceOf(Error);
      expect(await cache.ping()).to.equal(false);
    } finally {
      await cache.close?.();
      dead.disconnect();
    }
  });

  /** The real client, with its MGETs counted (the keys of each call kept). */
  const counting = (isCluster: boolean | undefined) => {
    const calls: string[][] = [];
    const counted = Object.create(client) as Redis & { isCluster: boolean | undefined };
    Object.defineProperty(counted, 'isCluster', { value: isCluster });
    counted.mget = ((...args: Array<string | string[]>) => {
      const keys = args.flat();
      calls.push(keys);
      return client.mget(keys);
    }) as Redis['mget'];
    return { counted, calls };
  };

  it('reads of one round of the event loop share one MGET, and each gets its own answer', async () => {
    const { counted, calls } = counting(false);
    const cache = redisCache({ client: counted, keyPrefix: `${prefix}batch:`, logger: silentLogger });
    const [a, b, c, d] = [scope(), scope(), scope(), scope({ tenantId: 'other' })];
    await primedFill(cache, a, 'fp-a', 3, yes('dev-a'), 30_000);
    await primedFill(cache, b, 'fp-b', 5, no, 30_000);
    await primedFill(cache, c, 'fp-c', 2, yes('dev-c'), 30_000);
    // c's generation raised by a change: its entry (generation 2) is stale.
    await cache.invalidate(c, 3);
    await primedFill(cache, d, 'fp-d', 1, yes('dev-d'), 30_000);
    calls.length = 0;
    const answers = await Promise.all([
      cache.get(a, 'fp-a'),
      cache.get(b, 'fp-b'),
      cache.get(c, 'fp-c'),
      cache.get(a, 'fp-unknown'),
      cache.get(scope(), 'fp-a'),
      cache.get(d, 'fp-d'),
      cache.get(scope({ ...d, tenantId: 'acme' }), 'fp-d'),
    ]);
    expect(answers).to.deep.equal([yes('dev-a', answers[0]!.trusted ? answers[0]!.trustedUntil : 0), no, undefined, undefined, undefined, yes('dev-d', answers[5]!.trusted ? answers[5]!.trustedUntil : 0), undefined]);
    expect(calls.map((keys) => keys.length)).to.deep.equal([14]);
    // Alone, a read is the two keys of its check, sent at once.
    calls.length = 0;
    expect(await cache.get(b, 'fp-b')).to.deep.equal(no);
    expect(calls.map((keys) => keys.length)).to.deep.equal([2]);
  });

  it('a Cluster client, or one that does not say it is standalone, sends one MGET per read: other users, other slots', async () => {
    for (const isCluster of [true, undefined]) {
      const { counted, calls } = counting(isCluster);
      const cache = redisCache({ client: counted, keyPrefix: `${prefix}cluster:`, logger: silentLogger });
      // Filled through the client itself (ioredis routes its own commands by `isCluster` too), unwatched as the reader
      // is: a Cluster client cannot tell a server's incarnation, and a key made with one is not the reader's.
      const unwatched = Object.create(client) as Redis;
      Object.defineProperty(unwatched, 'info', { value: undefined });
      const filler = redisCache({ client: unwatched, keyPrefix: `${prefix}cluster:`, logger: silentLogger });
      const users = [scope(), scope(), scope()];
      await Promise.all(users.map((u) => Promise.resolve(primedFill(filler, u, 'fp', 1, yes(), 30_000))));
      const answers = await Promise.all(users.map((u) => Promise.resolve(cache.get(u, 'fp'))));
      expect(answers.every((v) => v?.trusted === true), String(isCluster)).to.equal(true);
      expect(calls.map((keys) => keys.length), String(isCluster)).to.deep.equal([2, 2, 2]);
    }
  });

  it('when the shared MGET fails, every read of it fails (each check then answers from the database)', async () => {
    const dead = new Redis('redis://127.0.0.1:1', { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
    const cache = redisCache({ client: dead, keyPrefix: prefix, logger: silentLogger, timeoutMs: 300 });
    try {
      expect(dead.isCluster).to.equal(false);
      const outcomes = await Promise.allSettled([cache.get(scope(), 'a'), cache.get(scope(), 'b'), cache.get(scope(), 'c')]);
      expect(outcomes.map((o) => o.status)).to.deep.equal(['rejected', 'rejected', 'rejected']);
    } finally {
      await cache.close?.();
      dead.disconnect();
    }
  });

  it('refuses bad options at set-up with the fix in the message', () => {
    expect(() => redisCache({} as never)).to.throw(TypeError, /client/);
    expect(() => redisCache({ client, keyPrefix: 'a{b}' })).to.throw(TypeError, /keyPrefix/);
    expect(() => redisCache({ client, prefix: 'x' } as never)).to.throw(TypeError, /unknown option 'prefix'/);
  });
});

/** A fake trusted-device store for the service tests below: only the logic above the storage interface is under test. */
function fakeStore(parts: Pick<TrustedDeviceStore, 'find' | 'cacheEpoch'>): TrustedDeviceStore {
  const unused = () => Promise.reject(new Error('not used here'));
  return { upsert: unused, list: unused, revoke: unused, revokeAll: unused, bumpCacheEpoch: unused, ...parts };
}

describe('createTrustedDevices: a slow database read is answered, not cached (what bounds the hold above)', () => {
  it(`fills from a read of at most FILL_MAX_AGE_MS (${FILL_MAX_AGE_MS} ms), never from a slower one`, async function () {
    this.timeout(15_000);
    let delayMs = 0;
    let reads = 0;
    const trustedDevices = fakeStore({
      cacheEpoch: () => Promise.resolve(0),
      async find() {
        reads++;
        await sleep(delayMs);
        return { device: null, generation: 7 };
      },
    });
    const cache = memoryCache();
    const service = createTrustedDevices({ storage: { trustedDevices }, cache, logger: silentLogger });
    try {
      // The cache knows the user's generation (as after a change): a fill of it is stored at once.
      await cache.invalidate({ epoch: 0, tenantId: 'acme', userId: 'slow' }, 7);
      delayMs = FILL_MAX_AGE_MS + 200;
      await service.check('acme', 'slow', 'fp');
      delayMs = 0;
      expect(reads).to.equal(1);
      await service.check('acme', 'slow', 'fp');
      expect(reads, 'the slow read was not cached: the database is read again').to.equal(2);
      await service.check('acme', 'slow', 'fp');
      expect(reads, 'the fast one was').to.equal(2);
    } finally {
      service.close();
    }
  });
});

describe('createTrustedDevices: an epoch read that does not answer (a stalled database)', () => {
  it('does not hold the check: it answers from the database without the cache, one lookup', async function () {
    this.timeout(5_000);
    let reads = 0;
    // The epoch read never answers, the lookup does.
    const trustedDevices = fakeStore({
      cacheEpoch: () => new Promise<number>(() => undefined),
      find() {
        reads++;
        return Promise.resolve({ device: null, generation: 1 });
      },
    });
    const service = createTrustedDevices({ storage: { trustedDevices }, cache: memoryCache(), logger: silentLogger });
    try {
      expect(await service.check('acme', 'u', 'fp')).to.deep.equal({ trusted: false });
      expect(await service.check('acme', 'u', 'fp')).to.deep.equal({ trusted: false });
      expect(reads).to.equal(2);
    } finally {
      service.close();
    }
  });
});
