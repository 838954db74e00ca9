/**
 * `createTrustedDevices()`: trusted devices ("remember this device") as a service: trust / renew, the
 * cached hot-path check, list, revoke. Routers call it; storage and cache are injected.
 *
 * Why the cache never serves a revoked device (the design; proven in test/internal-trusted-devices.test.ts
 * and test/trusted-devices-faults.test.ts):
 *
 * 1. Generations. Postgres keeps a per-user generation, bumped in the SAME transaction as every trust,
 *    renew and revocation of that user's devices. The database lookup behind a cache miss reads the row
 *    and the generation in ONE statement (one snapshot), so the pair is always consistent.
 * 2. Stamped entries. The cache keeps the user's generation next to the entries; an entry carries the
 *    generation it was read at. `get` reads both in one round trip (MGET) and believes the entry only
 *    when the two are equal; an absent generation is a miss. So a hit costs one round trip, no query.
 * 3. Fills cannot go back in time. A fill raises the cached generation to max(cached, read) and writes
 *    the entry only if the result equals the generation it read, in one atomic step (Lua). A mutation
 *    raises the cached generation in its own transaction, after its bump and before its commit
 *    (`BeforeTrustedCommit`): the generation row is locked and the change not yet visible, so a reader can only
 *    fill from the old state with the old generation, which the raise already refuses, and a crash right after
 *    the commit leaves nothing stale behind. Whatever the interleaving, once a mutation's raise has landed, a
 *    fill carrying an older generation is refused, and older entries are ignored. (A rolled-back mutation leaves
 *    the cached generation ahead of Postgres: that user's checks read Postgres until their next change.)
 *    Should the cache lose the raised generation (a Redis FLUSHALL, a restart without persistence, an eviction,
 *    its TTL), a fill that finds none sets it and stores nothing for `newGenerationHoldMs` (~3 s), and no fill is
 *    made from a read older than `FILL_MAX_AGE_MS` (2 s): every fill stored after the hold read the database after
 *    the loss, and so after the change (storage/cache/types.ts). Entries kept while their generation key was lost
 *    alone (an eviction) are not believed again: they are stamped with the key's whole text, whose decimals are drawn
 *    anew when it is made (storage/cache/redis.ts). A service on a store in a host's transaction
 *    (`inHostTransaction`) neither reads nor fills the cache: that transaction may still roll back.
 * 4. The epoch, for the raise that could not land (Redis unreachable, a timeout: we cannot know whether it
 *    landed). Every cache key starts with a global epoch kept in Postgres. A mutation whose raise fails
 *    bumps the epoch in Postgres, in its own transaction: every key written before becomes unreachable, and
 *    the change never commits without either the raise or the bump. Each instance re-reads the
 *    epoch on a timer (`epochRefreshMs`, unref'd) and refuses to use an epoch read more than
 *    2 × `epochRefreshMs` ago; after any cache error it stops using the cache for `cacheRetryMs` and
 *    re-reads the epoch before the next use.
 *    The bound: after the bump an instance can answer from a stale entry only if Redis missed the raise AND
 *    that instance can still read Redis AND it has not re-read the epoch since the bump, i.e. for at most
 *    2 × `epochRefreshMs` (default 2 s); a revocation whose raise failed therefore answers its caller only
 *    once that time has passed since its bump landed, so when it returns no instance serves the revoked
 *    entry (a revocation during a Redis fault takes that much longer). Without that short window every hit
 *    would need a database query, which is what the cache exists to avoid. When Redis is down for longer than
 *    that, no instance ever sees the old entries again. An idle instance (no call for a minute) stops its
 *    timer and re-reads the epoch on its next call: one query, then hits are query-free again.
 *    Instances do not move to a new epoch at the same moment, so a mutation raises the generation under the
 *    epoch its instance uses AND under the newest one, read in its transaction and held there (`hold()`: no
 *    bump commits before the mutation does): an instance that has read the newer epoch already fills its keys
 *    from the old state, and its entries must end too. For 2 × `epochRefreshMs` after a bump's commit other
 *    instances may still use an epoch older than both: a revocation made within 2 × `epochRefreshMs` + 10 s of
 *    a bump (`bumped_at`, migration 0008, written just before the commit, whose moment is not known) answers its
 *    caller 2 × `epochRefreshMs` after its hold, which came after that commit. Should the cache take the raise under
 *    the instance's epoch but not the one under the newest, the change is rolled back and run once more, the
 *    epoch bumped first: a transaction that holds the epoch cannot bump it (two such would wait for each other).
 *    A bump waits at most 2 s for the holders (`lock_timeout`), then fails: a 503, or the timer's retry.
 *    (A store that does not call `beforeCommit`: the cache is told after the commit, under the instance's epoch
 *    and the newest one, and a revocation always answers 2 × `epochRefreshMs` later, as the store does not date
 *    the bumps; a crash between its commit and that step is not covered. If Postgres refuses the bump then, the
 *    instance keeps away from the cache and retries it on its timer.)
 * 5. Entries never outlive `trusted_until`: a positive entry's TTL is min(trusted_until − now,
 *    `positiveTtlSeconds`), and a hit is re-checked against the clock. A negative entry lives
 *    `negativeTtlSeconds`; a trust bumps the generation, so it ends the negative entry at once.
 * 6. Redis trouble never breaks or slows a login: every cache call is bounded (adapter timeout), a failure
 *    makes the check answer from Postgres, and the cache is skipped for `cacheRetryMs` after a failure
 *    so a paused or black-holed Redis costs at most one timeout per instance per `cacheRetryMs`.
 *
 * 7. Redis back with an older state of its keys (a restart that loads an RDB or AOF snapshot older than a change, a
 *    restored backup, a fail-over to a replica that missed a raise) would bring back a revoked device's entry with the
 *    generation it matched. `redisCache()` makes each generation key with the incarnation of the server it talks to
 *    (a digest of `INFO`'s `run_id`, new at every start, and `master_replid`, new at every promotion or copy of another
 *    master's data; read on every connection and each second while in use) and believes no key of another: a server
 *    that came back from a snapshot, or another server, has lost every key as far as the cache is concerned, which the
 *    hold covers. A switch of roles on a live connection (`REPLICAOF`) is believed for up to a second.
 *
 * Assumptions, stated: Redis does not go back to an older state without a new `run_id` or `master_replid` (`DEBUG
 * RELOAD`, keys restored into a running server), and a Redis Cluster (one `run_id` per node, not followed) or a
 * client refused `INFO` does not restart from a snapshot: after one of those, bump the cache epoch (README), or run
 * the cache's Redis without persistence. Nor does Redis lose a raise in the milliseconds between a change's raise and
 * its commit (a flush then, and a check reading the old state before the commit).
 * `memoryCache()` is per process: with several instances use Redis.
 */
import { isIP } from 'node:net';
import { ProblemError, type FieldViolation } from './errors.js';
import { getDefaultLogger, type Logger } from './logger.js';
import { checkInjected, checkInteger, checkOptionsObject } from './options.js';
import { characterCount, DISPLAYABLE_RULE, isDisplayable, isStorable, STORABLE_RULE } from './validation.js';
import { errorMessage, throttledWarn } from './throttled-log.js';
import { FILL_MAX_AGE_MS, type CachedTrust, type TrustScope, type TrustedDeviceCache } from '../storage/cache/types.js';
import type { BeforeTrustedCommit, MfaStorage, Page, PageQuery, TrustedDevice, TrustedDeviceStore } from '../storage/types.js';

export type { TrustedDevice } from '../storage/types.js';

/** How long a device stays trusted when the caller gives no TTL: 30 days. */
export const DEFAULT_TRUSTED_DEVICE_TTL_SECONDS = 30 * 24 * 3600;
/** The longest TTL a caller may ask for: 30 days. */
export const DEFAULT_MAX_TRUSTED_DEVICE_TTL_SECONDS = 30 * 24 * 3600;
export const DEFAULT_NEGATIVE_TTL_SECONDS = 10;
export const DEFAULT_POSITIVE_TTL_SECONDS = 3600;
export const DEFAULT_EPOCH_REFRESH_MS = 1000;
export const DEFAULT_CACHE_RETRY_MS = 1000;
/** The longest a check waits for the cache epoch before it answers from the database without the cache. */
export const EPOCH_WAIT_MS = 500;
/** Longest fingerprint accepted, in characters. */
export const MAX_FINGERPRINT_LENGTH = 512;
/** Longest device name accepted, in characters. */
export const MAX_DEVICE_NAME_LENGTH = 255;
/** Longest device type, browser and os accepted, in characters. */
export const MAX_DEVICE_DETAIL_LENGTH = 128;
/** Longest `ip` accepted: any IPv6 text form, a zone id included. */
export const MAX_DEVICE_IP_LENGTH = 64;

/**
 * For the revoke-all routes (`DELETE …/trusted-devices`, both routers): Express's default routing (not strict) lets
 * `DELETE …/trusted-devices/` match them too, and that is what a client sends to revoke ONE device whose id came
 * out empty. It names no device: 404, as an unknown id, and nothing is revoked. `path`: the route's `req.path`.
 */
export function refuseEmptyDeviceId(path: string): void {
  if (path.endsWith('/')) throw ProblemError.from('TRUSTED_DEVICE_NOT_FOUND');
}

/** What the caller knows about the device it trusts. Details left out keep their stored value on a renew. */
export interface TrustInput {
  fingerprint: string;
  deviceName?: string | undefined;
  deviceType?: string | undefined;
  browser?: string | undefined;
  os?: string | undefined;
  /** IPv4 or IPv6 address. */
  ip?: string | undefined;
  /** Seconds from now; 1 to `maxTtlSeconds`. @default defaultTtlSeconds */
  ttlSeconds?: number | undefined;
}

/** The answer of the hot-path check. */
export interface TrustCheck {
  trusted: boolean;
  deviceId?: string;
  trustedUntil?: Date;
}

export interface TrustedDevices {
  /** Trusts the fingerprint, or renews it (same id, new details and `trustedUntil`): one row per tenant + user + fingerprint. */
  trust(tenantId: string, userId: string, input: TrustInput): Promise<TrustedDevice>;
  /**
   * "Remember this device" after a login second factor: `trust()`, but only while the user still has a verified
   * MFA device, in the write's transaction; `null` (nothing written) when a removal of their last device or their
   * erasure committed first. A removal that commits after it revokes it with the rest.
   */
  rememberAfterSecondFactor(tenantId: string, userId: string, input: TrustInput): Promise<TrustedDevice | null>;
  /** Whether the fingerprint is trusted now; served from the cache when it can be. */
  check(tenantId: string, userId: string, fingerprint: string): Promise<TrustCheck>;
  /** A user's devices, newest first; expired ones only when asked for. */
  list(tenantId: string, userId: string, opts: { includeExpired: boolean }, page: PageQuery): Promise<Page<TrustedDevice>>;
  /** Revokes one device; `false` when it is not that tenant's and user's (or does not exist). */
  revoke(tenantId: string, userId: string, id: string): Promise<boolean>;
  /** Revokes all of a user's devices (e.g. on a password change); returns how many. */
  revokeAll(tenantId: string, userId: string): Promise<number>;
  /**
   * Tells the cache about a change of the user's devices committed by another writer with this `generation` (the
   * user's erasure, `storage.users.erase`; the removal of their last MFA device, `storage.mfaDevices.remove`): the
   * next check reads the new state. It answers 2 × `epochRefreshMs` after telling it (point 4); `beginChange()` tells
   * the cache in the writer's transaction instead, and seldom waits.
   */
  changed(tenantId: string, userId: string, generation: number): Promise<void>;
  /**
   * For a change of the user's devices that another storage call makes (`storage.mfaDevices.remove`,
   * `storage.users.erase`): make that call through `run()`, which passes it the hook, then `committed(generation)`
   * once it returned having deleted trusted devices. The cache is then told inside the call's transaction, as this
   * service's own changes do (point 3), where `changed()` can only tell it after the commit.
   */
  beginChange(tenantId: string, userId: string): TrustedDeviceChange;
  /** Stops the epoch timer (it is unref'd, so this is only needed for a clean shutdown). */
  close(): void;
}

/** See `TrustedDevices.beginChange`. */
export interface TrustedDeviceChange {
  /**
   * Runs the writer's storage call, passing it the hook for its transaction (`undefined` when there is no cache to
   * tell). Should the cache take only part of what the hook tells it, the call's transaction is rolled back and the
   * call made once more: it must be one that can be (each of the kit's stores rolls back whole).
   */
  run<T>(call: (beforeCommit: BeforeTrustedCommit | undefined) => Promise<T>): Promise<T>;
  /** The storage call returned: the change with this generation is committed. */
  committed(generation: number): Promise<void>;
}

/** Hooks called after a change is committed (audit, notifications). A throw is logged and ignored. */
export interface TrustedDeviceEvents {
  trusted?(event: { device: TrustedDevice; renewed: boolean }): void;
  revoked?(event: { tenantId: string; userId: string; deviceId?: string; count: number }): void;
}

/** Tunables, shared by the routers' `trustedDevices` option. */
export interface TrustedDeviceSettings {
  /** Longest `ttl_seconds` a caller may ask for. @default 2592000 (30 days) */
  maxTtlSeconds?: number;
  /** TTL when the caller gives none; at most `maxTtlSeconds`. @default 2592000 (30 days) */
  defaultTtlSeconds?: number;
  /** How long "not trusted" is cached for a fingerprint (a trust ends it at once). @default 10 */
  negativeTtlSeconds?: number;
  /** Longest a positive answer stays cached (never beyond `trusted_until`). @default 3600 */
  positiveTtlSeconds?: number;
  /** How often each instance re-reads the cache epoch from Postgres; bounds staleness when Redis missed a revocation (see above). @default 1000 */
  epochRefreshMs?: number;
  /** How long the cache is skipped after a cache error. @default 1000 */
  cacheRetryMs?: number;
}

export interface TrustedDevicesOptions extends TrustedDeviceSettings {
  /** Storage with `trustedDevices`, e.g. `knexStorage({ knex })`. */
  storage: Pick<MfaStorage, 'trustedDevices'>;
  /** `redisCache()` (several instances) or `memoryCache()` (one process). @default none: every check reads Postgres */
  cache?: TrustedDeviceCache | undefined;
  /** @default pino on stdout */
  logger?: Logger;
  events?: TrustedDeviceEvents;
}

/** Names of the `TrustedDeviceSettings` members (option checks). */
export const TRUSTED_DEVICE_SETTING_NAMES = ['maxTtlSeconds', 'defaultTtlSeconds', 'negativeTtlSeconds', 'positiveTtlSeconds', 'epochRefreshMs', 'cacheRetryMs'] as const;

/** Fills the settings with defaults and checks them; `factory` names the caller in error messages. */
export function resolveTrustedDeviceSettings(factory: string, settings: TrustedDeviceSettings = {}): Required<TrustedDeviceSettings> {
  const pick = (name: (typeof TRUSTED_DEVICE_SETTING_NAMES)[number], fallback: number, min: number, max: number): number =>
    settings[name] === undefined ? fallback : checkInteger(factory, `trustedDevices.${name}`, settings[name], min, max);
  const maxTtlSeconds = pick('maxTtlSeconds', DEFAULT_MAX_TRUSTED_DEVICE_TTL_SECONDS, 1, 10 * 365 * 24 * 3600);
  const resolved = {
    maxTtlSeconds,
    defaultTtlSeconds: pick('defaultTtlSeconds', Math.min(DEFAULT_TRUSTED_DEVICE_TTL_SECONDS, maxTtlSeconds), 1, maxTtlSeconds),
    negativeTtlSeconds: pick('negativeTtlSeconds', DEFAULT_NEGATIVE_TTL_SECONDS, 1, 3600),
    positiveTtlSeconds: pick('positiveTtlSeconds', DEFAULT_POSITIVE_TTL_SECONDS, 1, 30 * 24 * 3600),
    epochRefreshMs: pick('epochRefreshMs', DEFAULT_EPOCH_REFRESH_MS, 10, 3_600_000),
    cacheRetryMs: pick('cacheRetryMs', DEFAULT_CACHE_RETRY_MS, 1, 3_600_000),
  };
  return resolved;
}

/** Checks a trust input the way the routes do, for callers that are not routes; throws a 400 Problem. */
function validateInput(input: TrustInput, maxTtlSeconds: number): void {
  const errors: FieldViolation[] = [];
  // The rules of the routes' schemas (lib/validation.ts): a fingerprint is storable text, the details people read
  // are displayable text, so a host calling trust() directly cannot store what the routes refuse.
  const text = (field: string, value: unknown, max: number, rule: 'storable' | 'displayable', required = false) => {
    if (value === undefined) {
      if (required) errors.push({ field, code: 'required', description: `${field} is required` });
    } else if (typeof value !== 'string') errors.push({ field, code: 'type', description: `${field}: must be a string` });
    else if (value === '' || characterCount(value) > max) errors.push({ field, code: 'range', description: `${field}: must be 1-${max} characters` });
    else if (rule === 'storable' ? !isStorable(value) : !isDisplayable(value)) {
      errors.push({ field, code: 'format', description: `${field}: ${rule === 'storable' ? STORABLE_RULE : DISPLAYABLE_RULE}` });
    }
  };
  text('device_fingerprint', input.fingerprint, MAX_FINGERPRINT_LENGTH, 'storable', true);
  text('device_name', input.deviceName, MAX_DEVICE_NAME_LENGTH, 'displayable');
  text('device_type', input.deviceType, MAX_DEVICE_DETAIL_LENGTH, 'displayable');
  text('browser', input.browser, MAX_DEVICE_DETAIL_LENGTH, 'displayable');
  text('os', input.os, MAX_DEVICE_DETAIL_LENGTH, 'displayable');
  if (input.ip !== undefined && (typeof input.ip !== 'string' || isIP(input.ip) === 0)) {
    errors.push({ field: 'ip', code: 'format', description: 'ip: must be an IPv4 or IPv6 address' });
  }
  const ttl = input.ttlSeconds;
  if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 1 || ttl > maxTtlSeconds)) {
    errors.push({ field: 'ttl_seconds', code: 'range', description: `ttl_seconds: must be an integer from 1 to ${maxTtlSeconds}` });
  }
  if (errors.length > 0) throw ProblemError.from('VALIDATION_FAILED', { detail: errors[0]!.description, errors });
}

interface EpochMark {
  startedAt: number;
  seq: number;
}

/**
 * The instance's view of the cache epoch (point 4 of the module comment): which epoch to use, whether
 * the cache may be used right now, and the bump when a change could not reach the cache.
 */
class EpochGuard {
  private epoch: number | undefined;
  /** When the read that produced `epoch` started (ms). */
  private readAt = -Infinity;
  /** Counts cache errors; a read clears the suspicion only if it started after the latest one. */
  private errorSeq = 0;
  private readSeq = -1;
  private skipUntil = 0;
  private pendingBump = false;
  /** The timer's retry of a pending bump, while it runs (a bump may wait for a lock): one at a time. */
  private retrying: Promise<boolean> | undefined;
  private inflight: { seq: number; promise: Promise<number> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastUse = 0;
  /** The oldest epoch read any instance still uses (2 × `epochRefreshMs`): a bump is seen everywhere this long after it landed. */
  readonly maxAgeMs: number;
  private readonly idleMs: number;

  constructor(
    private readonly store: TrustedDeviceStore,
    private readonly refreshMs: number,
    private readonly retryMs: number,
    private readonly warn: (obj: object, msg: string) => void,
    private readonly logger: Logger,
  ) {
    this.maxAgeMs = 2 * refreshMs;
    this.idleMs = Math.max(60_000, 10 * refreshMs);
  }

  /**
   * The epoch to use for a cache call now when that is known without a read (the common case: no await on
   * the hot path): a number, `undefined` when the cache must be skipped, or `null` when `current()` must read it.
   */
  peek(): number | undefined | null {
    const now = Date.now();
    this.lastUse = now;
    this.ensureTimer();
    if (this.pendingBump || now < this.skipUntil) return undefined;
    if (this.epoch !== undefined && this.readSeq === this.errorSeq && now - this.readAt <= this.maxAgeMs) return this.epoch;
    return null;
  }

  /**
   * The epoch to use for a cache call now, or `undefined` when the cache must be skipped: also when a read is needed
   * and has not answered within `waitMs` (it goes on, and its epoch is used once it has).
   */
  async current(waitMs?: number): Promise<number | undefined> {
    const known = this.peek();
    if (known !== null) return known;
    const read = this.read().catch((err: unknown) => {
      this.warn({ error: errorMessage(err) }, 'trusted devices: could not read the cache epoch; answering from the database');
      return undefined;
    });
    if (waitMs === undefined) return read;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), waitMs)));
    try {
      return await Promise.race([read, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A cache call failed: skip the cache for a while, and re-read the epoch before using it again. */
  failed(err: unknown): void {
    this.errorSeq++;
    this.skipUntil = Date.now() + this.retryMs;
    this.warn({ error: errorMessage(err) }, 'trusted devices: cache call failed; answering from the database');
  }

  /** A change could not be written to the cache: orphan every key written so far. `true` once the bump landed. */
  async bump(): Promise<boolean> {
    const mark = this.mark();
    try {
      this.bumped(await this.store.bumpCacheEpoch(), mark);
      return true;
    } catch (err) {
      // Until the bump lands this instance keeps away from the cache, and the timer retries it.
      this.pendingBump = true;
      this.logger.error({ error: errorMessage(err) }, 'trusted devices: could not bump the cache epoch after a change the cache missed; retrying');
      return false;
    }
  }

  /** Taken when a bump starts: a cache error after it still makes the instance re-read the epoch. */
  mark(): EpochMark {
    return { startedAt: Date.now(), seq: this.errorSeq };
  }

  /** A bump started at `mark` is committed: use its epoch (it orphans whatever a pending bump was for, too). */
  bumped(epoch: number, mark: EpochMark): void {
    this.accept(epoch, mark.startedAt, mark.seq);
    this.pendingBump = false;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private read(): Promise<number> {
    const seq = this.errorSeq;
    if (this.inflight?.seq === seq) return this.inflight.promise;
    const startedAt = Date.now();
    const promise = this.store.cacheEpoch().then((epoch) => this.accept(epoch, startedAt, seq));
    const entry = { seq, promise };
    this.inflight = entry;
    const clear = () => {
      if (this.inflight === entry) this.inflight = undefined;
    };
    promise.then(clear, clear);
    return promise;
  }

  private accept(epoch: number, startedAt: number, seq: number): number {
    // Epochs only grow: a slow read must not undo a newer value.
    this.epoch = Math.max(this.epoch ?? 0, epoch);
    if (startedAt >= this.readAt) this.readAt = startedAt;
    if (seq > this.readSeq) this.readSeq = seq;
    return this.epoch;
  }

  private ensureTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      // Stop when idle: the first use after that re-reads the epoch itself.
      if (Date.now() - this.lastUse > this.idleMs) return this.close();
      if (this.pendingBump) this.retrying ??= this.bump().finally(() => (this.retrying = undefined));
      else this.read().catch((err: unknown) => this.warn({ error: errorMessage(err) }, 'trusted devices: could not refresh the cache epoch'));
    }, this.refreshMs);
    this.timer.unref();
  }
}

/** A trust to write through to the cache once it is committed. */
interface CacheEntry {
  fingerprint: string;
  value: CachedTrust;
  ttlMs: number;
}

/** `TrustedDeviceChange` as the service's own writers use it: nothing to do without a generation, a trust to write through. */
interface ChangeInProgress extends TrustedDeviceChange {
  committed(generation: number | null, entry?: CacheEntry): Promise<void>;
}

/** The cache took a change's first raise, not the one under the newest epoch: the change is rolled back and run again. */
class RaiseMissedWhileHeld extends Error {
  constructor() {
    super('trusted devices: the cache missed the raise under the newest epoch; running the change again, the epoch bumped');
  }
}

/**
 * Longest a bump's commit may come after its `bumped_at` (stamped just before it): an instance may read the epoch
 * before the bump until that commit, and use it 2 × `epochRefreshMs` longer. Far above a commit's time, and above
 * any statement or lock timeout a deployment sets (the example server's: 5 s).
 */
const BUMP_COMMIT_BOUND_MS = 10_000;

/** Builds the trusted-device service over the injected storage and (optional) cache. */
export function createTrustedDevices(options: TrustedDevicesOptions): TrustedDevices {
  checkOptionsObject('createTrustedDevices', options, ['storage', 'cache', 'logger', 'events', ...TRUSTED_DEVICE_SETTING_NAMES], '{ storage: knexStorage({ knex }), cache: redisCache({ client }) }');
  checkInjected('createTrustedDevices', 'storage', options.storage, ['trustedDevices.upsert', 'trustedDevices.find', 'trustedDevices.list', 'trustedDevices.revoke', 'trustedDevices.revokeAll', 'trustedDevices.cacheEpoch', 'trustedDevices.bumpCacheEpoch'], 'pass storage: knexStorage({ knex })');
  if (options.cache !== undefined) {
    checkInjected('createTrustedDevices', 'cache', options.cache, ['get', 'fill', 'invalidate', 'ping'], 'pass cache: redisCache({ client }) or memoryCache()');
  }
  const settings = resolveTrustedDeviceSettings('createTrustedDevices', options);
  const store = options.storage.trustedDevices;
  /** The store runs in a transaction of the host's (`TrustedDeviceStore.inHostTransaction`): read once, it does not change. */
  const inHostTransaction = store.inHostTransaction === true;
  const cache = options.cache;
  const logger = options.logger ?? getDefaultLogger();
  const warn = throttledWarn(logger);
  const guard = cache ? new EpochGuard(store, settings.epochRefreshMs, settings.cacheRetryMs, warn, logger) : undefined;
  const events = options.events ?? {};

  const emit = <K extends keyof TrustedDeviceEvents>(name: K, event: Parameters<NonNullable<TrustedDeviceEvents[K]>>[0]): void => {
    const hook = events[name] as ((e: typeof event) => void) | undefined;
    if (!hook) return;
    try {
      hook(event);
    } catch (err) {
      logger.error({ error: errorMessage(err), event: name }, 'trusted devices: event hook threw');
    }
  };

  /**
   * After a change committed by a store that does not call `beforeCommit` (`changed()`, a store of the host's own):
   * tell the cache, or, when it cannot be told, orphan it (point 4).
   */
  const propagate = async (tenantId: string, userId: string, generation: number, entry?: CacheEntry): Promise<void> => {
    if (!cache || !guard) return;
    const epoch = await guard.current();
    if (epoch !== undefined) {
      const scope: TrustScope = { epoch, tenantId, userId };
      try {
        if (entry && entry.ttlMs > 0) await cache.fill(scope, entry.fingerprint, generation, entry.value, entry.ttlMs);
        else await cache.invalidate(scope, generation);
        // Another instance may have read a later epoch already, and filled its keys from the state before the change.
        const newest = await store.cacheEpoch();
        if (newest !== epoch) await cache.invalidate({ ...scope, epoch: newest }, generation);
        // Or still use an earlier one, for 2 × epochRefreshMs after a bump, which this store does not date (no
        // `hold()`): a revocation answers once no instance can.
        if (entry === undefined) await orphaned();
        return;
      } catch (err) {
        guard.failed(err);
      }
    }
    // A revocation the cache missed: another instance may still read Redis with the epoch it read before the bump,
    // for up to maxAgeMs. Answering after that long makes "false at once, on every instance" hold for the caller.
    // (A trust the cache missed needs no wait: another instance answers "not trusted" a moment longer.)
    if ((await guard.bump()) && entry === undefined) await orphaned();
  };

  /** A revocation whose cache raise failed waits this long after its epoch bump (point 4). */
  const orphaned = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, guard!.maxAgeMs));

  /**
   * One change of a user's devices (point 3): `beforeCommit` raises the cached generation in the writer's
   * transaction, where the generation row is locked and the change not yet visible, so no crash after the commit
   * can leave the cache believing the old state; when the cache cannot be told, it bumps the epoch in that same
   * transaction instead. `committed` follows the writer's return: it writes a trust through, or waits out a bump
   * for a revocation. A store that never calls the hook has the cache told after its commit (`propagate`).
   */
  const beginChange = (tenantId: string, userId: string): ChangeInProgress => {
    if (!cache || !guard) return { run: (call) => call(undefined), committed: () => Promise.resolve() };
    /** A second attempt after `RaiseMissedWhileHeld`: the epoch bumped at once. */
    let bumpFirst = false;
    /** The newest epoch, held by the transaction, that the generation was raised under. */
    let held: { epoch: number; sinceBumpMs: number | null } | undefined;
    /** The epoch the transaction bumped to, the cache not having taken the raise. */
    let bump: { epoch: number; mark: EpochMark } | undefined;
    // The hook leaves one of the two set (or throws, and the change does not commit): neither means it was not called.
    // What an earlier attempt did is undone with its transaction (run() tries again; a store may run it again too).
    const forget = () => {
      held = undefined;
      bump = undefined;
    };
    const raise = async (epoch: number, generation: number): Promise<boolean> => {
      try {
        await cache.invalidate({ epoch, tenantId, userId }, generation);
        return true;
      } catch (err) {
        guard.failed(err);
        return false;
      }
    };
    const beforeCommit: BeforeTrustedCommit = async (generation, epochInTransaction) => {
      forget();
      // First under the epoch this instance uses (not read lately: read in the transaction, no second pooled
      // connection while it holds one). When the cache does not take it, the bump comes now, before any hold.
      let known = bumpFirst ? undefined : guard.peek();
      if (known === null) known = await epochInTransaction.read();
      if (known === undefined || !(await raise(known, generation))) {
        const mark = guard.mark();
        bump = { epoch: await epochInTransaction.bump(), mark };
        return;
      }
      // Then under the newest epoch, held until the commit: an instance that has read a later epoch than this one
      // fills that epoch's keys, which the raise must reach too; and no bump can slip in before the commit.
      const newest = await epochInTransaction.hold();
      // Missed there, the change must not commit (a crash after it would leave that entry), and a bump after a hold
      // would wait for the other holders while they wait for it: roll back, and run() tries once more, bumping first.
      if (newest.epoch !== known && !(await raise(newest.epoch, generation))) throw new RaiseMissedWhileHeld();
      held = newest;
    };
    return {
      async run(call) {
        try {
          forget();
          return await call(beforeCommit);
        } catch (err) {
          if (!(err instanceof RaiseMissedWhileHeld)) throw err;
          bumpFirst = true;
          forget();
          return call(beforeCommit);
        }
      },
      async committed(generation: number | null, entry?: CacheEntry) {
        if (generation === null) return;
        const revocation = entry === undefined;
        if (bump) {
          guard.bumped(bump.epoch, bump.mark);
          if (revocation) await orphaned();
          return;
        }
        if (!held) return propagate(tenantId, userId, generation, entry);
        const { epoch, sinceBumpMs } = held;
        if (entry) {
          // Write-through: the next check of the trusted fingerprint is a hit. A fill the cache misses is a miss later.
          if (entry.ttlMs <= 0) return;
          try {
            await cache.fill({ epoch, tenantId, userId }, entry.fingerprint, generation, entry.value, entry.ttlMs);
          } catch (err) {
            guard.failed(err);
          }
          return;
        }
        // An epoch bumped moments ago: an instance may still read the keys of an epoch before it, which this raise
        // did not reach, for 2 × epochRefreshMs after the bump's commit. The commit came before this change held the
        // epoch, but when exactly is not known (`bumped_at` is stamped before it): the revocation answers a whole
        // 2 × epochRefreshMs after its hold, when none can (point 4).
        if (sinceBumpMs !== null && sinceBumpMs < guard.maxAgeMs + BUMP_COMMIT_BOUND_MS) await orphaned();
      },
    };
  };

  const answer = (device: TrustedDevice | null): TrustCheck => (device ? { trusted: true, deviceId: device.id, trustedUntil: device.trustedUntil } : { trusted: false });

  /** `trust()` and `rememberAfterSecondFactor()`: the write, then the cache told, then the hook. */
  const write = async (tenantId: string, userId: string, input: TrustInput, requireVerifiedMfaDevice: boolean): Promise<TrustedDevice | null> => {
    validateInput(input, settings.maxTtlSeconds);
    const now = new Date();
    const ttlSeconds = input.ttlSeconds ?? settings.defaultTtlSeconds;
    const change = beginChange(tenantId, userId);
    const written = await change.run((beforeCommit) => store.upsert(
      tenantId,
      userId,
      {
        fingerprint: input.fingerprint,
        deviceName: input.deviceName,
        deviceType: input.deviceType,
        browser: input.browser,
        os: input.os,
        ip: input.ip,
        trustedUntil: new Date(now.getTime() + ttlSeconds * 1000),
        ...(requireVerifiedMfaDevice && { requireVerifiedMfaDevice }),
      },
      now,
      beforeCommit,
    ));
    if (written === null) return null;
    const { device, created, generation } = written;
    // The new generation ends any negative (or older positive) entry; written through, the next check is a hit. Not
    // a write a host's transaction still holds (`inHostTransaction`): should it roll back, the entry would outlive it.
    const ttlMs = inHostTransaction ? 0 : Math.min(device.trustedUntil.getTime() - Date.now(), settings.positiveTtlSeconds * 1000);
    await change.committed(generation, {
      fingerprint: device.fingerprint,
      value: { trusted: true, deviceId: device.id, trustedUntil: device.trustedUntil.getTime() },
      ttlMs,
    });
    emit('trusted', { device, renewed: !created });
    return device;
  };

  return {
    async trust(tenantId, userId, input) {
      const device = await write(tenantId, userId, input, false);
      if (device === null) throw new Error('trustedDevices.upsert answered null for an unconditional write');
      return device;
    },

    rememberAfterSecondFactor: (tenantId, userId, input) => write(tenantId, userId, input, true),

    async check(tenantId, userId, fingerprint) {
      // A store in a host's transaction: its reads may be of that transaction alone, neither checked against nor cached.
      if (inHostTransaction) return answer((await store.find(tenantId, userId, fingerprint, new Date())).device);
      let epoch = guard ? guard.peek() : undefined;
      // Not longer than EPOCH_WAIT_MS: a stalled database then costs this check one timeout (its lookup), not two.
      if (epoch === null) epoch = await guard!.current(EPOCH_WAIT_MS);
      if (cache && guard && epoch !== undefined) {
        try {
          const hit = await cache.get({ epoch, tenantId, userId }, fingerprint);
          if (hit && !hit.trusted) return { trusted: false };
          if (hit?.trusted && hit.trustedUntil > Date.now()) return { trusted: true, deviceId: hit.deviceId, trustedUntil: new Date(hit.trustedUntil) };
        } catch (err) {
          guard.failed(err);
          epoch = undefined;
        }
      }
      const readAt = performance.now();
      const { device, generation } = await store.find(tenantId, userId, fingerprint, new Date());
      // A read slower than FILL_MAX_AGE_MS is answered, not cached: what bounds a cache's hold (storage/cache/types.ts).
      if (cache && guard && epoch !== undefined && performance.now() - readAt <= FILL_MAX_AGE_MS) {
        const value: CachedTrust = device ? { trusted: true, deviceId: device.id, trustedUntil: device.trustedUntil.getTime() } : { trusted: false };
        const ttlMs = device ? Math.min(device.trustedUntil.getTime() - Date.now(), settings.positiveTtlSeconds * 1000) : settings.negativeTtlSeconds * 1000;
        if (ttlMs > 0) {
          try {
            await cache.fill({ epoch, tenantId, userId }, fingerprint, generation, value, ttlMs);
          } catch (err) {
            guard.failed(err);
          }
        }
      }
      return answer(device);
    },

    list(tenantId, userId, opts, page) {
      return store.list(tenantId, userId, { includeExpired: opts.includeExpired, now: new Date() }, page);
    },

    async revoke(tenantId, userId, id) {
      const change = beginChange(tenantId, userId);
      const { revoked, generation } = await change.run((beforeCommit) => store.revoke(tenantId, userId, id, beforeCommit));
      await change.committed(generation);
      if (revoked) emit('revoked', { tenantId, userId, deviceId: id, count: 1 });
      return revoked;
    },

    async revokeAll(tenantId, userId) {
      const change = beginChange(tenantId, userId);
      const { revoked, generation } = await change.run((beforeCommit) => store.revokeAll(tenantId, userId, beforeCommit));
      await change.committed(generation);
      if (revoked > 0) emit('revoked', { tenantId, userId, count: revoked });
      return revoked;
    },

    changed: (tenantId, userId, generation) => propagate(tenantId, userId, generation),

    beginChange,

    close() {
      guard?.close();
    },
  };
}
