/**
 * Throttling of code verification, shared by every instance: a request-rate limit (express-rate-limit,
 * on Redis when a client is given) in front of each verify route, and the consecutive-failure
 * lockout per tenant + user kept in storage (Postgres), which decides even when Redis is down.
 */
import type { RequestHandler } from 'express';
import { MemoryStore, rateLimit, type IncrementResponse, type Options, type Store } from 'express-rate-limit';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import { bounded } from './bounded.js';
import { emitSafely, eventBase, type MfaEvents } from './events.js';
import { ProblemError } from './errors.js';
import type { Logger } from './logger.js';
import { throttledWarn } from './throttled-log.js';
import { checkInteger, checkNestedOptions } from './options.js';
import type { LockoutPolicy, VerificationThrottleStore } from '../storage/types.js';

/** Failures that lock verification. */
export const DEFAULT_MAX_FAILURES = 5;
/** The highest `maxFailures` accepted: more would make the lockout meaningless. */
export const MAX_MAX_FAILURES = 100;
/** 15 minutes. */
export const DEFAULT_COOLDOWN_SECONDS = 900;
/** The longest `cooldownSeconds` accepted (7 days): a counter untouched for longer decides nothing, whatever the configuration. */
export const MAX_COOLDOWN_SECONDS = 7 * 24 * 3600;
export const DEFAULT_RATE_LIMIT_WINDOW_MS = 60_000;
/** Verify requests per user (and tenant) per window. */
export const DEFAULT_RATE_LIMIT = 10;
export const DEFAULT_RATE_LIMIT_PREFIX = 'mfa-kit:rl:';

/** The consecutive-failure lockout. */
export interface LockoutOptions {
  /** Consecutive failed verifications (per tenant + user) after which every verify answers 429. @default 5 (at most 100) */
  maxFailures?: number;
  /** How long the lock lasts, in seconds; a failure older than this is forgotten. @default 900 */
  cooldownSeconds?: number;
}

/** The request-rate limit in front of verify routes. */
export interface RateLimitOptions {
  /** Window length in milliseconds. @default 60000 */
  windowMs?: number;
  /** Verify requests allowed per user per window. @default 10 */
  limit?: number;
  /** Redis key prefix (when a Redis client is given). @default 'mfa-kit:rl:' */
  prefix?: string;
}

/** The one Redis command the shared rate-limit store sends (ioredis' `call`). */
export interface RateLimitRedisClient {
  call(command: string, ...args: string[]): Promise<unknown>;
  /** ioredis `Cluster`: its masters (the limiter's scripts are loaded on each of them). */
  nodes?(role: 'master'): ReadonlyArray<{ call(command: string, ...args: string[]): Promise<unknown> }>;
}

/**
 * The limiter's `sendCommand`. `SCRIPT LOAD` names no key, so a Redis Cluster client sends it to one node,
 * and the `EVALSHA` of a key that lives on another master fails (NOSCRIPT) — a limiter that lets every
 * request through for those users. On a cluster the scripts are loaded on every master instead.
 */
export function rateLimitCommand(redis: RateLimitRedisClient): (command: string, ...args: string[]) => Promise<RedisReply> {
  return async (command, ...args) => {
    const masters = command.toUpperCase() === 'SCRIPT' ? (redis.nodes?.('master') ?? []) : [];
    if (masters.length === 0) return (await redis.call(command, ...args)) as RedisReply;
    const [first] = await Promise.all(masters.map((node) => node.call(command, ...args)));
    return first as RedisReply;
  };
}

/** Checks lockout options at set-up. */
export function resolveLockout(factory: string, options: LockoutOptions | undefined): LockoutPolicy {
  // A misspelt member (`maxAttempts`) would leave the lockout at its default without a word: refused at set-up.
  checkNestedOptions(factory, 'lockout', options, ['maxFailures', 'cooldownSeconds'], '{ maxFailures: 5, cooldownSeconds: 900 }');
  return {
    maxFailures: options?.maxFailures === undefined ? DEFAULT_MAX_FAILURES : checkInteger(factory, 'lockout.maxFailures', options.maxFailures, 1, MAX_MAX_FAILURES),
    cooldownSeconds:
      options?.cooldownSeconds === undefined ? DEFAULT_COOLDOWN_SECONDS : checkInteger(factory, 'lockout.cooldownSeconds', options.cooldownSeconds, 1, MAX_COOLDOWN_SECONDS),
  };
}

export interface ResolvedRateLimit {
  windowMs: number;
  limit: number;
  prefix: string;
}

/** Checks rate-limit options at set-up; `false` turns the limit off (the lockout still applies). */
export function resolveRateLimit(factory: string, options: RateLimitOptions | false | undefined): ResolvedRateLimit | false {
  if (options === false) return false;
  checkNestedOptions(factory, 'rateLimit', options, ['windowMs', 'limit', 'prefix'], '{ windowMs: 60000, limit: 10 } or false');
  if (options?.prefix !== undefined && typeof options.prefix !== 'string') {
    throw new TypeError(`express-mfa-kit: ${factory}() option 'rateLimit.prefix' must be a string, e.g. 'mfa-kit:rl:'`);
  }
  return {
    windowMs: options?.windowMs === undefined ? DEFAULT_RATE_LIMIT_WINDOW_MS : checkInteger(factory, 'rateLimit.windowMs', options.windowMs, 1000, 24 * 3600 * 1000),
    limit: options?.limit === undefined ? DEFAULT_RATE_LIMIT : checkInteger(factory, 'rateLimit.limit', options.limit, 1, 100_000),
    prefix: options?.prefix ?? DEFAULT_RATE_LIMIT_PREFIX,
  };
}

/**
 * The rate-limit middleware for a router's verify routes (one instance per router: a store is
 * never shared between limiters). Keyed by what `key` returns (tenant + user), not by IP: an
 * identity service calls from one address for everyone. Over the limit → 429 Problem with
 * `Retry-After`. A count Redis cannot take (not connected yet at start-up, gone later) is made in this instance's
 * memory instead (`InsuredStore`): the limit holds per instance until Redis answers again, and the lockout in storage
 * holds throughout.
 */
export function verifyRateLimiter(args: {
  config: ResolvedRateLimit | false;
  redis: RateLimitRedisClient | undefined;
  /** Distinguishes this router's counters from another's in a shared Redis. */
  scope: string;
  key: (req: Parameters<RequestHandler>[0]) => string;
  /**
   * The lockout's store and whose lock a refused request is about (`undefined`: not known, e.g. no user id yet): a
   * locked user over the limit gets the lockout's 429 and wait, the longer one, as they would past the limiter.
   */
  lockout?: { store: VerificationThrottleStore; who: (req: Parameters<RequestHandler>[0]) => { tenantId: string; userId: string } | undefined };
  logger: Logger;
}): RequestHandler {
  const { config, redis, logger } = args;
  if (config === false) return (_req, _res, next) => next();
  /** The lock ends read for refused requests (now or earlier: none ran), each kept until `until`. */
  const lockEnds = new Map<string, { lockEnd: Promise<number>; until: number }>();
  // Once Redis is gone every request fails its count: one line per 10 s (with how many it stood for), as the cache's.
  const storeProblem = throttledWarn(logger);
  let store: Store | undefined;
  if (redis) {
    const shared = new RecoveringRedisStore({
      prefix: `${config.prefix}${args.scope}:`,
      sendCommand: rateLimitCommand(redis),
    });
    const madeAt = Date.now();
    store = new InsuredStore(shared, (err, beforeFirstCount) => {
      const detail = err instanceof Error ? err.message : String(err);
      // Not connected yet at start-up: no problem worth a warning at every boot (the counts are this instance's meanwhile).
      // Still not, STARTUP_GRACE_MS later: Redis is down, and that is worth one.
      if (beforeFirstCount && Date.now() - madeAt < STARTUP_GRACE_MS && NOT_CONNECTED.test(detail)) logger.debug({ source: 'express-rate-limit', detail }, 'rate limiter: Redis not connected yet; counting in this instance');
      else storeProblem({ source: 'express-rate-limit', detail }, 'rate limiter problem: Redis did not take a count; counting in this instance meanwhile');
    });
  }
  return rateLimit({
    windowMs: config.windowMs,
    limit: config.limit,
    keyGenerator: (req) => args.key(req),
    ...(store && { store }),
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    passOnStoreError: true,
    // Keys are not IPs, so the IP-related checks do not apply.
    validate: { trustProxy: false, xForwardedForHeader: false, ip: false, keyGeneratorIpFallback: false },
    logger: {
      error: (...parts: unknown[]) => {
        const detail = String(parts[0] instanceof Error ? parts[0].message : parts[0]);
        const context = typeof parts[1] === 'string' ? parts[1] : '';
        // The store's set-up on a client not connected yet (`enableOfflineQueue: false` at start-up): it loads its
        // scripts again before its first count (RecoveringRedisStore), so this is no problem worth a warning at
        // every boot. A count Redis refuses is InsuredStore's to report.
        if (context.includes('store initialization') && NOT_CONNECTED.test(detail)) {
          logger.debug({ source: 'express-rate-limit', detail }, 'rate limiter: Redis not connected yet; its scripts load at the first count');
        } else storeProblem({ source: 'express-rate-limit', detail, ...(context && { context }) }, 'rate limiter problem');
      },
      warn: (...parts: unknown[]) => logger.warn({ source: 'express-rate-limit', detail: String(parts[0] instanceof Error ? parts[0].message : parts[0]) }, 'rate limiter warning'),
    },
    handler: (req, _res, next) => {
      const info = (req as { rateLimit?: { resetTime?: Date } }).rateLimit;
      const seconds = info?.resetTime ? Math.max(1, Math.ceil((info.resetTime.getTime() - Date.now()) / 1000)) : Math.ceil(config.windowMs / 1000);
      const limited = () => ProblemError.from('TOO_MANY_REQUESTS', { detail: 'Too many verification attempts or code requests: retry later.', retryAfter: seconds });
      const who = args.lockout?.who(req);
      const store = args.lockout?.store;
      if (who === undefined || store?.lockedFor === undefined) {
        next(limited());
        return;
      }
      // A flood of refused requests must stay cheap to refuse: one read per user and LOCK_READ_MS, shared by the
      // requests that arrive meanwhile, and never a wait longer than LOCK_READ_TIMEOUT_MS (then the limiter's answer).
      const key = JSON.stringify([who.tenantId, who.userId]);
      let known = lockEnds.get(key);
      if (known === undefined || Date.now() >= known.until) {
        const read = bounded(store.lockedFor(who.tenantId, who.userId), LOCK_READ_TIMEOUT_MS, 'lockout read').then((locked) => Date.now() + locked * 1000);
        const entry = { lockEnd: read, until: Date.now() + LOCK_READ_MS };
        // A read that fails is not kept: the next refusal reads again.
        read.catch(() => {
          if (lockEnds.get(key) === entry) lockEnds.delete(key);
        });
        if (lockEnds.size >= LOCK_READS_MAX) lockEnds.clear();
        lockEnds.set(key, entry);
        known = entry;
      }
      known.lockEnd.then(
        (lockEnd) => {
          const locked = Math.ceil((lockEnd - Date.now()) / 1000);
          next(locked > 0 ? lockedProblem(Math.max(locked, seconds)) : limited());
        },
        // The database unreachable or slow: the limiter's own answer.
        () => next(limited()),
      );
    },
  });
}

/** How long a lock end read for a refused request is reused. */
const LOCK_READ_MS = 1000;
/** Longest a refused request waits for that read. */
const LOCK_READ_TIMEOUT_MS = 500;
const LOCK_READS_MAX = 4096;

/** How long after the limiter is made a count refused for want of a connection is start-up, not an outage. */
const STARTUP_GRACE_MS = 10_000;

/** ioredis's refusals of a command sent before its connection is up. */
const NOT_CONNECTED = /enableOfflineQueue|Stream isn't writeable|Connection is closed/;

/**
 * A shared (Redis) store with an insurance, as rate-limiter-flexible's `insuranceLimiter`: a count or read the shared
 * store fails is made in this instance's memory instead, so a Redis outage leaves each instance its own limit rather
 * than none. The shared store is tried first on every request: its counts resume as soon as it answers again.
 */
class InsuredStore implements Store {
  readonly localKeys = false;
  readonly prefix?: string;
  private readonly memory = new MemoryStore();
  private counted = false;

  constructor(
    private readonly shared: Store,
    /** Told of each fall-back, and whether the shared store has taken no count yet (start-up). */
    private readonly fellBack: (err: unknown, beforeFirstCount: boolean) => void,
  ) {
    if (shared.prefix !== undefined) this.prefix = shared.prefix;
  }

  async init(options: Options): Promise<void> {
    this.memory.init(options);
    await this.shared.init?.(options);
  }

  async get(key: string): Promise<Awaited<ReturnType<NonNullable<Store['get']>>>> {
    try {
      return await this.shared.get?.(key);
    } catch (err) {
      this.fellBack(err, !this.counted);
      return this.memory.get(key);
    }
  }

  async increment(key: string): Promise<IncrementResponse> {
    try {
      const counted = await this.shared.increment(key);
      this.counted = true;
      return counted;
    } catch (err) {
      this.fellBack(err, !this.counted);
      return this.memory.increment(key);
    }
  }

  async decrement(key: string): Promise<void> {
    try {
      await this.shared.decrement(key);
    } catch {
      await this.memory.decrement(key);
    }
  }

  async resetKey(key: string): Promise<void> {
    await this.memory.resetKey(key);
    await this.shared.resetKey(key);
  }

  async shutdown(): Promise<void> {
    this.memory.shutdown();
    await this.shared.shutdown?.();
  }
}

/**
 * rate-limit-redis loads its Lua scripts once, when the limiter is made: on a client that refuses commands
 * until it is connected (`enableOfflineQueue: false`, as the example server's), that load fails at start-up,
 * and so it does while Redis is unreachable. A failed load would stick and the limiter stay open. This store
 * remembers that a load (or a count) failed and loads the scripts again before the next count, once, so the
 * first request after start-up (or after Redis came back) is counted, not waved through. A load that fails
 * after a newer one succeeded only costs one more reload.
 */
class RecoveringRedisStore extends RedisStore {
  private scriptsLost = false;

  override loadIncrementScript(key?: string): Promise<string> {
    return this.watched(super.loadIncrementScript(key));
  }

  override loadGetScript(key?: string): Promise<string> {
    return this.watched(super.loadGetScript(key));
  }

  override async increment(key: string): ReturnType<RedisStore['increment']> {
    if (this.scriptsLost) this.reloadScripts();
    try {
      return await super.increment(key);
    } catch (err) {
      this.scriptsLost = true;
      throw err;
    }
  }

  override async get(key: string): ReturnType<RedisStore['get']> {
    if (this.scriptsLost) this.reloadScripts();
    try {
      return await super.get(key);
    } catch (err) {
      this.scriptsLost = true;
      throw err;
    }
  }

  /** Marks the scripts lost when `load` fails; the rejection itself is awaited (and reported) by the call that uses it. */
  private watched(load: Promise<string>): Promise<string> {
    load.catch(() => {
      this.scriptsLost = true;
    });
    return load;
  }

  private reloadScripts(): void {
    this.scriptsLost = false;
    this.incrementScriptSha = this.loadIncrementScript();
    this.getScriptSha = this.loadGetScript();
  }
}

/** Who is verifying, for the lockout and its events. */
export interface VerifierContext {
  tenantId: string;
  userId: string;
  requestId: string;
}

export type Via = 'login' | 'enrollment' | 'internal';

/** The consecutive-failure lockout around one verification attempt. */
export class Lockout {
  constructor(
    private readonly store: VerificationThrottleStore,
    readonly policy: LockoutPolicy,
    private readonly events: MfaEvents,
    private readonly logger: Logger,
  ) {}

  /** Counts an attempt before a code is looked at; `LOCKED` means answer 429 whatever the code. */
  async charge(ctx: VerifierContext, via: Via, deviceId?: string): Promise<{ status: 'OK' } | { status: 'LOCKED'; retryAfterSeconds: number }> {
    const result = await this.store.charge(ctx.tenantId, ctx.userId, this.policy);
    if (result.status === 'OK') return result;
    if (result.newlyLocked) this.emitLockout(ctx, result.retryAfterSeconds);
    emitSafely(this.events, this.logger, 'mfa.failed', { ...eventBase(ctx), via, reason: 'locked', ...(deviceId !== undefined && { deviceId }) });
    return { status: 'LOCKED', retryAfterSeconds: result.retryAfterSeconds };
  }

  /** The attempt failed (wrong or replayed code). */
  async failed(ctx: VerifierContext, via: Via, reason: 'invalid_code' | 'replay', deviceId?: string): Promise<void> {
    const record = await this.store.recordFailure(ctx.tenantId, ctx.userId, this.policy);
    emitSafely(this.events, this.logger, 'mfa.failed', { ...eventBase(ctx), via, reason, ...(deviceId !== undefined && { deviceId }) });
    if (record.newlyLocked) this.emitLockout(ctx, record.retryAfterSeconds);
  }

  /** The attempt succeeded: the counter starts over. */
  async succeeded(ctx: VerifierContext): Promise<void> {
    await this.store.reset(ctx.tenantId, ctx.userId);
  }

  /**
   * The attempt compared the code with nothing: each secret it could match failed to decrypt (a key missing from the
   * ring, a damaged row). It answers 500 and is not counted, so that such a fault does not lock the user out on top. An
   * attempt that compared the code with any other device is counted as usual: a broken device must not lift the
   * limit on guessing the others.
   */
  async notCompared(ctx: VerifierContext): Promise<void> {
    await this.store.refund?.(ctx.tenantId, ctx.userId);
  }

  private emitLockout(ctx: VerifierContext, retryAfterSeconds: number): void {
    this.logger.warn({ request_id: ctx.requestId, tenant_id: ctx.tenantId, retry_after: retryAfterSeconds }, 'mfa verification locked after repeated failures');
    emitSafely(this.events, this.logger, 'lockout', { ...eventBase(ctx), retryAfterSeconds });
  }
}

/** The 429 answered while verification is locked. */
export const lockedProblem = (retryAfterSeconds: number): ProblemError =>
  ProblemError.from('MFA_LOCKED', { retryAfter: retryAfterSeconds });
