/**
 * `TrustedDeviceCache`: what the trusted-device check needs from a cache. Adapters: `redisCache()`
 * (shared by every instance) and `memoryCache()` (one process only). Any other implementation that
 * passes test/cache-contract.test.ts can be injected.
 *
 * The protocol is generation-stamped cache-aside (reasoning in lib/trusted-devices.ts): every entry
 * carries the user's generation at the time it was read from the database, and the cache keeps the
 * user's current generation next to the entries. An entry is only returned while both agree, and the
 * generation only ever goes up, so an entry read before a change can never be served after it.
 */
import { createHash } from 'node:crypto';

/** Whose entries: the tenant and user, inside one cache epoch (a new epoch starts from an empty cache). */
export interface TrustScope {
  epoch: number;
  tenantId: string;
  userId: string;
}

/** What the cache remembers about one fingerprint of a user. */
export type CachedTrust =
  /** Trusted until `trustedUntil` (ms since the Unix epoch). */
  | { trusted: true; deviceId: string; trustedUntil: number }
  /** Not trusted (unknown, expired or revoked): the negative entry. */
  | { trusted: false };

/**
 * A cache for trusted-device checks. Methods may answer synchronously or with a promise.
 * A throw (or rejection) means "the cache is unreachable or failed right now": the caller answers from
 * the database and treats the cache as suspect. A method must never hang: an adapter bounds its own latency.
 */
export interface TrustedDeviceCache {
  /**
   * The entry for `fingerprint`, only if it is stamped with the scope's current generation; `undefined`
   * when absent, stale, or the generation itself is unknown. One round trip for a remote cache.
   */
  get(scope: TrustScope, fingerprint: string): Promise<CachedTrust | undefined> | CachedTrust | undefined;
  /**
   * Atomically: raises the scope's generation to at least `generation`, then stores `value` for
   * `ttlMs` (> 0) only if the generation now equals `generation`. Returns whether it stored the value.
   * A fill read from the database before a change (a lower generation) is thereby never stored after it.
   * When the generation was absent, it is set and nothing is stored for `newGenerationHoldMs` (the cache may have
   * lost a raise); the caller never fills from a read older than `FILL_MAX_AGE_MS`.
   */
  fill(scope: TrustScope, fingerprint: string, generation: number, value: CachedTrust, ttlMs: number): Promise<boolean> | boolean;
  /** Raises the scope's generation to at least `generation`, so no older entry is returned any more. */
  invalidate(scope: TrustScope, generation: number): Promise<void> | void;
  /** Whether the cache answers right now (readiness, `/readyz`); never rejects, never hangs. */
  ping(): Promise<boolean>;
  /** Releases what the adapter attached (listeners, timers); never closes an injected client. */
  close?(): Promise<void> | void;
}

/** The smallest time a generation is kept, so it outlives any fill still in flight when it was raised. */
export const GENERATION_MIN_TTL_MS = 3_600_000;

/**
 * The oldest a fill may be: the caller does not fill from a database read that started longer ago than this (a slow
 * read is answered, not cached).
 */
export const FILL_MAX_AGE_MS = 2000;

/**
 * How long a generation that a FILL found absent (the cache lost it: a Redis flush, a restart without persistence, an
 * eviction, its TTL) takes fills without storing their entries. The generation raised by a change before the loss is gone, so a fill
 * read before that change (the older generation) could be stored, and served until its TTL. Once this has passed,
 * every fill that lands started its read after the generation was set again (`FILL_MAX_AGE_MS`, plus the adapter's
 * own bound on a call), after the loss: it reads the change. A writer's raise (`invalidate`) that finds it absent
 * sets it without this: it carries the newest generation.
 */
export const newGenerationHoldMs = (adapterTimeoutMs: number): number => FILL_MAX_AGE_MS + adapterTimeoutMs + 1000;

/**
 * Digests computed once per value: logins ask about the same users and devices again and again, and these two
 * hashes were the hot path's only crypto (~7 µs a check, against ~0.3 µs for the lookup). Bounded: emptied when full.
 */
const recentDigests = new Map<string, string>();
const RECENT_DIGESTS_MAX = 4096;

const digest = (value: string): string => {
  let d = recentDigests.get(value);
  if (d === undefined) {
    d = createHash('sha256').update(value, 'utf8').digest('base64url').slice(0, 22);
    if (recentDigests.size >= RECENT_DIGESTS_MAX) recentDigests.clear();
    recentDigests.set(value, d);
  }
  return d;
};

/**
 * Key parts shared by the adapters. Tenant + user and the fingerprint are hashed (128 bits): keys have a
 * bounded length, cannot collide through separators in user ids, and hold no identifier in clear.
 * The user part is a Redis Cluster hash tag, so a user's generation and entries share a slot (one MGET, one script).
 */
export function cacheKeys(scope: TrustScope, fingerprint: string | undefined): { generation: string; entry: string | undefined } {
  const base = `td:${scope.epoch}:{${digest(`${scope.tenantId}\u0000${scope.userId}`)}}`;
  return { generation: `${base}:g`, entry: fingerprint === undefined ? undefined : `${base}:f:${digest(fingerprint)}` };
}

/** Checks the arguments every adapter receives from the caller (a bug, not an outage, when wrong). */
export function checkFillArgs(generation: number, ttlMs: number): void {
  if (!Number.isSafeInteger(generation) || generation < 0) throw new RangeError(`cache fill: generation must be a non-negative integer, got ${generation}`);
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new RangeError(`cache fill: ttlMs must be > 0, got ${ttlMs}`);
}
