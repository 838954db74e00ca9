/** A suite on a fresh migrated database and the shared Redis, with the hooks that set them up and tear them down. */
import { Redis } from 'ioredis';
import { redisCache, REDIS_CACHE_CLIENT_OPTIONS, silentLogger, type TrustedDeviceCache } from '../../index.js';
import { migratedStorage, type TestDb } from './fixtures.js';
import { redisUrl, requireRedis } from './redis.js';

export interface DatabaseAndRedis {
  /** The suite's database (set once its `before` hook ran). */
  readonly db: TestDb;
  /** A Redis-backed trusted-device cache on its own client; caches with the same prefix share entries (instances). */
  cacheOn(keyPrefix: string): TrustedDeviceCache;
}

/** Call inside a `describe`: registers `before` (Redis required, database migrated) and `after` (clients and database gone). */
export function databaseAndRedis(): DatabaseAndRedis {
  let db: TestDb | undefined;
  let url = '';
  const clients: Redis[] = [];
  before(async function () {
    const found = await redisUrl();
    requireRedis(this, found);
    url = found;
    db = await migratedStorage();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await db?.drop();
  });
  return {
    get db() {
      if (!db) throw new Error('databaseAndRedis(): the database is set up in the suite\'s before hook');
      return db;
    },
    cacheOn(keyPrefix) {
      const client = new Redis(url, REDIS_CACHE_CLIENT_OPTIONS);
      client.on('error', () => undefined);
      clients.push(client);
      return redisCache({ client, keyPrefix, logger: silentLogger });
    },
  };
}
