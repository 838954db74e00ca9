/**
 * `redisCache({ client, keyPrefix })`: the trusted-device cache on Redis (ioredis 5), shared by every
 * instance. `get` is one MGET; `fill` and `invalidate` are one Lua script each (atomic).
 * Every call is bounded by `timeoutMs` even when the client would wait (offline queue, reconnects).
 *
 * Under load the reads of one round of the event loop share one MGET (storage/coalesce.ts): one command, one
 * write and one reply for the checks of concurrent logins instead of one each. ioredis's auto-pipelining puts the
 * commands of one tick in one write, but a tick is one socket's data, so it seldom holds two checks. A Redis
 * Cluster client (or any client that does not say it is a standalone one) keeps one MGET per check: the keys
 * of different users live in different slots.
 */
import { createHash, randomInt } from 'node:crypto';
import type { Redis, RedisOptions } from 'ioredis';
import { bounded as boundedAs } from '../../lib/bounded.js';
import { getDefaultLogger, type Logger } from '../../lib/logger.js';
import { checkInjected, checkInteger, checkOptionsObject } from '../../lib/options.js';
import { errorMessage, throttledWarn } from '../../lib/throttled-log.js';
import { coalesce } from '../coalesce.js';
import { GENERATION_MIN_TTL_MS, cacheKeys, checkFillArgs, newGenerationHoldMs, type CachedTrust, type TrustedDeviceCache } from './types.js';

/**
 * The part of an ioredis client the adapter uses: a `Redis` (standalone or Sentinel) or a `Cluster`.
 * `on`/`off` are typed loosely because ioredis types them as returning `Redis` or `Cluster` itself.
 */
export type RedisCacheClient = Pick<Redis, 'mget' | 'eval' | 'evalsha' | 'ping'> & {
  /** 'error' is listened to always; 'close' and 'ready' when the client is watched (see `incarnation`). */
  on(event: 'error' | 'ready' | 'close', listener: (err?: unknown) => void): unknown;
  off(event: 'error' | 'ready' | 'close', listener: (err?: unknown) => void): unknown;
  /** `INFO server` and `INFO replication`, for the server's `run_id` and `master_replid` (see `incarnation` below); a client without it is not watched. */
  info?(section: 'server' | 'replication'): Promise<string>;
  /** ioredis's connection state: `'ready'` once it takes commands. */
  readonly status?: string;
  /** Checked for `enableOfflineQueue` (a `Cluster`'s own options carry it too) and `commandTimeout`. */
  readonly options?: Pick<RedisOptions, 'enableOfflineQueue' | 'commandTimeout'>;
  /** `false` on an ioredis `Redis` (standalone or Sentinel), `true` on a `Cluster`: only the first has its reads batched. */
  readonly isCluster?: boolean;
};

export interface RedisCacheOptions {
  /** An ioredis client, ideally created with `REDIS_CACHE_CLIENT_OPTIONS`. The host owns it (connects and quits it). */
  client: RedisCacheClient;
  /** Prepended to every key. Must not contain `{` (Redis Cluster hash tags). @default 'mfa:' */
  keyPrefix?: string;
  /** Longest wait for one cache call before it counts as a failure (the check then answers from the database). @default 200 */
  timeoutMs?: number;
  /** Where connection errors are logged (warn, at most one line per 10 s). @default pino on stdout */
  logger?: Logger;
}

/**
 * ioredis options for a cache that must never slow a login: no queueing while disconnected (a command
 * fails at once instead of waiting for the reconnect), no retry of a command, short timeouts; and
 * auto-pipelining, so the checks of concurrent logins leave in one write (one syscall, one Redis read).
 * Reconnecting stays ioredis's job: `new Redis(url, REDIS_CACHE_CLIENT_OPTIONS)`.
 */
export const REDIS_CACHE_CLIENT_OPTIONS = {
  enableOfflineQueue: false,
  enableAutoPipelining: true,
  maxRetriesPerRequest: 0,
  commandTimeout: 150,
  connectTimeout: 1000,
  retryStrategy: (times: number): number => Math.min(50 * times, 1000),
} satisfies RedisOptions;

export const DEFAULT_REDIS_KEY_PREFIX = 'mfa:';
export const DEFAULT_REDIS_TIMEOUT_MS = 200;

/**
 * KEYS[1] generation, KEYS[2] entry (fill only). ARGV[1] generation, ARGV[2] ms to keep the generation, ARGV[3] digits
 * for a new key's nonce (the server's incarnation, 15 digits, then the process's and key's own), and for a fill ARGV[4]
 * the entry's value, ARGV[5] its ms, ARGV[6] the hold's ms.
 *
 * The generation key holds `<generation>.1<hold end, ms, 13 digits><incarnation, 15 digits><digits>`: a number to any
 * reader (0.1.0 reads it as one just above the generation, so its fills at that generation store nothing), whose
 * decimals are drawn when the key is made. A key whose incarnation is not the caller's was made on another server
 * process (before a restart that loaded a snapshot, or by a version that wrote none): it counts as 0.1.0's form
 * below. An entry is stamped with the key's whole text, and `get` believes it only while the key holds the same text:
 * entries outlive neither a raise nor the key itself. Should Redis lose the key alone (an eviction) and a late
 * fill make it again with an older number, the entries stamped before do not match it.
 *
 * A key without decimals, `<generation>` alone, was made by 0.1.0 (an instance not yet upgraded, or before the
 * upgrade): this version believes no entry under it and makes it again as if it were absent, at the same or a higher
 * number (a fill with a hold). 0.1.0 replaces a key of this form with its own whenever it fills or raises at a higher
 * generation, which throws the nonce and the hold away; so it is never trusted. A raise below such a key's number is
 * not the newest one and leaves the key as it is (made again without a hold, it would be trusted at a number no raise
 * of this version vouched for): the next fill makes it again, with a hold. Decimals this version does not write
 * (fewer than 15 digits, or not starting with 1) count as none.
 *
 * Raises the generation (never lowers it; an absent one is made), then writes the entry only when the generation
 * equals ARGV[1]: a fill read before a change cannot land after it. A fill that finds the generation absent makes it
 * with a hold, kept in the key's own text (no key of its own that an eviction could take apart), and no entry is
 * written until the hold ends (`newGenerationHoldMs`: Redis lost the key, and with it maybe the raise of a change,
 * whose older state a late fill could otherwise store). A change's raise (`invalidate`) makes it without a hold.
 *
 * `redis.replicate_commands()`: Redis 3.2–4 refuse a write after `TIME` unless a script's effects are replicated (the
 * default from Redis 5 on, the only mode from 7, where the call does nothing). The hold is formatted as a float
 * (`%013.0f`): Lua's `%d` goes through a C long, 32 bits on some builds, too small for a time in ms.
 */
const RAISE_AND_FILL = `
if redis.replicate_commands then redis.replicate_commands() end
local want = tonumber(ARGV[1])
local raw = redis.call('GET', KEYS[1])
local text, current, nonce
if raw then
  text, nonce = string.match(raw, '^(%d+)%.?(%d*)$')
  current = tonumber(text)
  if nonce ~= nil and (string.len(nonce) < 15 or string.sub(nonce, 1, 1) ~= '1') then nonce = '' end
  if nonce ~= nil and nonce ~= '' and string.sub(nonce, 15, 29) ~= string.sub(ARGV[3], 1, 15) then nonce = '' end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local olderRaise = nonce == '' and KEYS[2] == nil and current > want
if (current == nil or nonce == '') and not olderRaise then
  local hold = 0
  if KEYS[2] ~= nil then hold = now + tonumber(ARGV[6]) end
  nonce = '1' .. string.format('%013.0f', hold) .. ARGV[3]
  if current == nil or current < want then
    text = ARGV[1]
    current = want
  end
  redis.call('SET', KEYS[1], text .. '.' .. nonce)
elseif current < want then
  redis.call('SET', KEYS[1], ARGV[1] .. '.' .. nonce)
  current = want
end
local keep = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
if KEYS[2] == nil or current ~= want then return 0 end
if tonumber(string.sub(nonce, 2, 14)) > now then return 0 end
redis.call('SET', KEYS[2], ARGV[1] .. '.' .. nonce .. '|' .. ARGV[4], 'PX', ARGV[5])
return 1
`;

const SCRIPT_SHA = createHash('sha1').update(RAISE_AND_FILL).digest('hex');

/** An entry's value after its stamp: `<device id>|<trusted until ms>` for a positive entry, `-` for a negative one. */
function encode(value: CachedTrust): string {
  return value.trusted ? `${value.deviceId}|${value.trustedUntil}` : '-';
}

/** The entry `raw` (`<stamp>|<value>`) if its stamp is the generation key's text `generation`. */
function decode(raw: string, generation: string): CachedTrust | undefined {
  if (raw.length <= generation.length || raw.charCodeAt(generation.length) !== 124 /* | */ || !raw.startsWith(generation)) return undefined;
  const [deviceId, until, extra] = raw.slice(generation.length + 1).split('|');
  if (deviceId === undefined || deviceId === '' || extra !== undefined) return undefined;
  if (deviceId === '-') return until === undefined ? { trusted: false } : undefined;
  const trustedUntil = Number(until);
  if (!Number.isSafeInteger(trustedUntil)) return undefined;
  return { trusted: true, deviceId, trustedUntil };
}

/**
 * The incarnation (`incarnationOf`) used when the client cannot tell the server's: a Cluster (one per node), or a client
 * without `INFO` or refused it. Keys then never go stale this way (see `incarnation` in `redisCache`).
 */
const NO_INCARNATION = '000000000000000';

/**
 * The incarnation of the server whose `INFO server` and `INFO replication` are `info`: 15 digits (48 bits, in decimal)
 * of a digest of its `run_id`, new at each start, and its `master_replid` (Redis 4+), new whenever it becomes a master
 * again or takes another master's data; NO_INCARNATION when there is no `run_id`. A reconnection to the same server,
 * in the same role, finds the same one.
 */
export function incarnationOf(info: string): string {
  const runId = /^run_id:([0-9a-f]{40})\r?$/m.exec(info)?.[1];
  if (runId === undefined) return NO_INCARNATION;
  const replId = /^master_replid:([0-9a-f]{40})\r?$/m.exec(info)?.[1] ?? '';
  const digest = createHash('sha256').update(`${runId}:${replId}`).digest('hex');
  return String(parseInt(digest.slice(0, 12), 16)).padStart(15, '0');
}

/** How often, while the cache is used, the server's replication id is read again (a role change without a reconnect). */
export const INCARNATION_RECHECK_MS = 1000;

/** What a deployment whose incarnation cannot be told loses, in its warning. */
const UNDETECTED = 'a Redis that comes back from an older snapshot is not detected (bump the cache epoch after one)';

/** INFO refused for good: an ACL without it (NOPERM), a renamed or disabled command. */
const INFO_REFUSED = /^(NOPERM|ERR unknown command)/;

/** Digits for each generation key this process makes: unique to the process (random part) and to the key (counter). */
const NONCE_DIGITS = String(randomInt(100_000_000, 1_000_000_000));
let nonces = 0;
const nextNonce = (): string => `${NONCE_DIGITS}${++nonces}`;

const bounded = <T>(promise: Promise<T>, ms: number): Promise<T> => boundedAs(promise, ms, 'redis cache');

/** A `TrustedDeviceCache` on Redis, shared by every instance that uses the same server and prefix. */
export function redisCache(options: RedisCacheOptions): TrustedDeviceCache {
  checkOptionsObject('redisCache', options, ['client', 'keyPrefix', 'timeoutMs', 'logger'], '{ client: new Redis(process.env.REDIS_URL, REDIS_CACHE_CLIENT_OPTIONS) }');
  checkInjected('redisCache', 'client', options.client, ['mget', 'eval', 'evalsha', 'ping', 'on', 'off'], 'pass an ioredis client: redisCache({ client: new Redis(url, REDIS_CACHE_CLIENT_OPTIONS) })');
  const { client } = options;
  const prefix = options.keyPrefix ?? DEFAULT_REDIS_KEY_PREFIX;
  if (typeof prefix !== 'string' || prefix.includes('{') || prefix.includes('}')) {
    throw new TypeError("express-mfa-kit: redisCache() option 'keyPrefix' must be a string without '{' or '}', e.g. 'mfa:'");
  }
  const timeoutMs = options.timeoutMs === undefined ? DEFAULT_REDIS_TIMEOUT_MS : checkInteger('redisCache', 'timeoutMs', options.timeoutMs, 1, 60_000);
  const logger = options.logger ?? getDefaultLogger();
  const holdMs = newGenerationHoldMs(timeoutMs);
  if (client.options && client.options.enableOfflineQueue !== false) {
    logger.warn({}, 'redisCache: the ioredis client queues commands while disconnected; create it with REDIS_CACHE_CLIENT_OPTIONS so no request waits for a reconnect');
  }

  // The hot-path read on a client that fails at once while disconnected and times out each command itself
  // within timeoutMs (REDIS_CACHE_CLIENT_OPTIONS) needs no second timer; other calls (a script may take two
  // commands) and other clients get one.
  const { commandTimeout } = client.options ?? {};
  const selfBounded = client.options?.enableOfflineQueue === false && typeof commandTimeout === 'number' && commandTimeout > 0 && commandTimeout <= timeoutMs;
  const bound = <T>(promise: Promise<T>): Promise<T> => (selfBounded ? promise : bounded(promise, timeoutMs));

  // ioredis emits 'error' on every failed (re)connect; without a listener it prints to stderr.
  const warn = throttledWarn(logger);
  const onError = (err: unknown) => warn({ error: errorMessage(err) }, 'redis cache: connection error (checks answer from the database meanwhile)');
  client.on('error', onError);

  // The incarnation of the server this client talks to (`NO_INCARNATION` for a client that cannot tell). Every
  // generation key this adapter makes carries it in its decimals, and a key that carries another one is not believed
  // (as one it never saw): should Redis come back with an older state (a restart that loads an RDB or AOF snapshot, a
  // restored backup, a fail-over to a replica, a switch back), the keys it brings back were made under the incarnation
  // of then, and a raise they missed cannot make a revoked device trusted again. Unknown from a 'close' until the next
  // connection's `INFO` has answered: calls meanwhile wait for it (within their bound).
  // It is read again before a call made INCARNATION_RECHECK_MS after the last read, so a role change on the same
  // connection (`REPLICAOF`, no reconnect) is believed at most that long.
  const watched = client.isCluster === false && typeof client.info === 'function';
  let incarnation: string | undefined = watched ? undefined : NO_INCARNATION;
  /** When `incarnation` is to be read again before its next use (every INCARNATION_RECHECK_MS while in use). */
  let recheckAt = watched ? 0 : Infinity;
  let learning: Promise<string> | undefined;
  const learn = (): Promise<string> => {
    if (learning !== undefined) return learning;
    const startedAt = Date.now();
    const attempt: Promise<string> = Promise.all([client.info!('server'), client.info!('replication')]).then(
      ([server, replication]) => {
        const found = incarnationOf(`${server}\n${replication}`);
        if (found === NO_INCARNATION) logger.warn({}, `redis cache: INFO shows no run_id; ${UNDETECTED}`);
        if (learning === attempt) {
          incarnation = found;
          recheckAt = found === NO_INCARNATION ? Infinity : startedAt + INCARNATION_RECHECK_MS;
        }
        return found;
      },
      (err: unknown) => {
        // INFO refused (an ACL without it, a renamed command): the cache works, but a restore is not detected. Any other
        // error (the connection, a BUSY server) leaves it to be read again by the next call.
        if (!(err instanceof Error && INFO_REFUSED.test(err.message))) throw err;
        logger.warn({ error: errorMessage(err) }, `redis cache: INFO is refused; ${UNDETECTED}`);
        if (learning === attempt) {
          incarnation = NO_INCARNATION;
          recheckAt = Infinity;
        }
        return NO_INCARNATION;
      },
    );
    learning = attempt;
    const done = () => {
      if (learning === attempt) learning = undefined;
    };
    attempt.then(done, done);
    return attempt;
  };
  const onClose = () => {
    incarnation = undefined;
    recheckAt = 0;
    learning = undefined;
  };
  const onReady = () => {
    learn().catch(() => undefined);
  };
  if (watched) {
    client.on('close', onClose);
    client.on('ready', onReady);
    if (client.status === 'ready') onReady();
  }
  /** The incarnation, when it is known and not due to be read again. */
  const known = (): string | undefined => (Date.now() < recheckAt ? incarnation : undefined);
  /** The incarnation to make and believe keys with: known, or read (again). */
  const current = (): Promise<string> => {
    const now = known();
    return now !== undefined ? Promise.resolve(now) : learn();
  };
  /** A write refused by a replica (`READONLY`): the server's role changed under this connection; read it again now. */
  const refused = (err: unknown): never => {
    if (watched && err instanceof Error && err.message.startsWith('READONLY')) recheckAt = 0;
    throw err;
  };

  const runScript = async (keys: string[], args: Array<string | number>): Promise<unknown> => {
    try {
      return await client.evalsha(SCRIPT_SHA, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err;
      return client.eval(RAISE_AND_FILL, keys.length, ...keys, ...args);
    }
  };

  // A check's two keys, [entry, generation], read in one MGET with those of the other checks of the same round:
  // MGET is atomic, so each pair is still read at one moment, after its request asked for it.
  type Pair = readonly [entry: string, generation: string];
  const readPair = (pair: Pair): Promise<Array<string | null>> => client.mget(pair[0], pair[1]);
  const read =
    client.isCluster === false
      ? coalesce<Pair, Array<string | null>>({
          group: () => '',
          one: readPair,
          async many(pairs) {
            const values = await client.mget(pairs.flat());
            return pairs.map((_, i) => [values[2 * i] ?? null, values[2 * i + 1] ?? null]);
          },
        })
      : readPair;

  return {
    async get(scope, fingerprint) {
      const keys = cacheKeys(scope, fingerprint);
      const expected = known() ?? (await bounded(learn(), timeoutMs));
      const [entry, generation] = await bound(read([prefix + keys.entry!, prefix + keys.generation]));
      if (entry == null || generation == null) return undefined;
      // Decimals of this server's incarnation (see RAISE_AND_FILL), still the one known: nothing else is believed, a
      // key of 0.1.0 (no decimals) included.
      const dot = generation.indexOf('.');
      if (dot < 0 || incarnation !== expected || !generation.startsWith(expected, dot + 15)) return undefined;
      return decode(entry, generation);
    },
    // A fill and a raise read the incarnation, when due, within their one bound: a fill lands no later than before
    // (the hold's margin, storage/cache/types.ts).
    async fill(scope, fingerprint, generation, value, ttlMs) {
      checkFillArgs(generation, ttlMs);
      const keys = cacheKeys(scope, fingerprint);
      const ms = Math.ceil(ttlMs);
      const stored = await bounded(
        current().then((made) =>
          runScript([prefix + keys.generation, prefix + keys.entry!], [generation, Math.max(ms, GENERATION_MIN_TTL_MS), made + nextNonce(), encode(value), ms, holdMs]).catch(refused),
        ),
        timeoutMs,
      );
      return stored === 1;
    },
    async invalidate(scope, generation) {
      checkFillArgs(generation, 1);
      const key = prefix + cacheKeys(scope, undefined).generation;
      await bounded(
        current().then((made) => runScript([key], [generation, GENERATION_MIN_TTL_MS, made + nextNonce()]).catch(refused)),
        timeoutMs,
      );
    },
    async ping() {
      try {
        return (await bounded(client.ping(), timeoutMs)) === 'PONG';
      } catch {
        return false;
      }
    },
    close() {
      client.off('error', onError);
      if (watched) {
        client.off('close', onClose);
        client.off('ready', onReady);
      }
    },
  };
}
