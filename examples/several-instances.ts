/**
 * What several instances of an app share: one Postgres (through knex) and one Redis — standalone,
 * Sentinel or Cluster, all through ioredis — for the trusted-device cache and the rate-limit counters.
 * test/examples.test.ts builds these parts on real Postgres and Redis and runs two instances on them.
 */
import { Cluster, Redis } from 'ioredis';
import knexFactory from 'knex';
import { knexStorage, memoryCache, redisCache, REDIS_CACHE_CLIENT_OPTIONS, type KnexStorage, type Logger, type RateLimitRedisClient, type TrustedDeviceCache } from 'express-mfa-kit';

/** Where the shared services are (env names of your deployment). */
export interface SharedEnv {
  DATABASE_URL: string;
  /** `redis://host:6379` */
  REDIS_URL?: string | undefined;
  /** `host:26379,host:26379` with `REDIS_SENTINEL_NAME` (default `mymaster`) */
  REDIS_SENTINELS?: string | undefined;
  REDIS_SENTINEL_NAME?: string | undefined;
  /** `host:7000,host:7001,…` (any of the cluster's nodes) */
  REDIS_CLUSTER_NODES?: string | undefined;
}

const hosts = (list: string) =>
  list.split(',').map((hostPort) => {
    const [host = '127.0.0.1', port = '6379'] = hostPort.trim().split(':');
    return { host, port: Number(port) };
  });

// #region readme-redis
/** One ioredis client for the whole process; `undefined` without Redis (one instance only). */
export function connectRedis(env: SharedEnv): Redis | Cluster | undefined {
  if (env.REDIS_CLUSTER_NODES) {
    // The kit's cache keys carry a per-user hash tag: each MGET and script stays in one slot.
    return new Cluster(hosts(env.REDIS_CLUSTER_NODES), { redisOptions: REDIS_CACHE_CLIENT_OPTIONS, enableOfflineQueue: false });
  }
  if (env.REDIS_SENTINELS) {
    return new Redis({ sentinels: hosts(env.REDIS_SENTINELS), name: env.REDIS_SENTINEL_NAME ?? 'mymaster', ...REDIS_CACHE_CLIENT_OPTIONS });
  }
  return env.REDIS_URL ? new Redis(env.REDIS_URL, REDIS_CACHE_CLIENT_OPTIONS) : undefined;
}
// #endregion

/** The parts every instance passes to `mfaDevicesRouter` and `internalRouter`. */
export interface SharedParts {
  storage: KnexStorage;
  cache: TrustedDeviceCache;
  redis: RateLimitRedisClient | undefined;
  close(): Promise<void>;
}

// #region readme-shared
export function sharedParts(env: SharedEnv, logger: Logger): SharedParts {
  const knex = knexFactory({ client: 'pg', connection: env.DATABASE_URL, pool: { min: 0, max: 10 } });
  const storage = knexStorage({ knex }); // migrate(knex) runs once per deploy, before new instances start
  const redis = connectRedis(env);
  // Revocations reach every instance through Redis; memoryCache() is for a single process only.
  const cache = redis ? redisCache({ client: redis, logger }) : memoryCache();
  const close = async () => {
    await cache.close?.();
    await redis?.quit();
    await knex.destroy();
  };
  return { storage, cache, redis, close }; // mfaDevicesRouter({ storage, cache, redis, … }), internalRouter({ … })
}
// #endregion
