/**
 * `memoryCache({ max })`: the trusted-device cache inside one process, a bounded LRU.
 * Only for a single process (development, tests, one instance): a revocation on another process
 * cannot reach it. With several instances use `redisCache()`.
 */
import { checkInteger, checkOptionsObject } from '../../lib/options.js';
import { GENERATION_MIN_TTL_MS, cacheKeys, checkFillArgs, newGenerationHoldMs, type CachedTrust, type TrustedDeviceCache } from './types.js';

export interface MemoryCacheOptions {
  /** Most keys kept (a user's generation counts as one, each fingerprint as one); least recently used go first. @default 10000 */
  max?: number;
}

export const DEFAULT_MEMORY_CACHE_MAX = 10_000;

interface Slot {
  generation: number;
  /** Absent on a generation slot. */
  value?: CachedTrust;
  expiresAt: number;
  /** A generation slot a fill set again after it was gone (evicted, expired): no entry is written until then (ms). */
  holdUntil?: number;
}

/** The in-process cache answers at once: its hold needs no room for a slow call. */
const HOLD_MS = newGenerationHoldMs(0);

/** An in-process `TrustedDeviceCache` (see the module comment for when it is safe). */
export function memoryCache(options: MemoryCacheOptions = {}): TrustedDeviceCache & { readonly size: number } {
  checkOptionsObject('memoryCache', options, ['max'], '{ max: 10000 }');
  const max = options.max === undefined ? DEFAULT_MEMORY_CACHE_MAX : checkInteger('memoryCache', 'max', options.max, 2, 10_000_000);
  // A Map iterates in insertion order: re-inserting on use makes its first key the least recently used.
  const slots = new Map<string, Slot>();

  const read = (key: string, now: number): Slot | undefined => {
    const slot = slots.get(key);
    if (slot === undefined) return undefined;
    slots.delete(key);
    if (slot.expiresAt <= now) return undefined;
    slots.set(key, slot);
    return slot;
  };
  const write = (key: string, slot: Slot): void => {
    slots.delete(key);
    slots.set(key, slot);
    while (slots.size > max) {
      const oldest = slots.keys().next();
      if (oldest.done === true) break;
      slots.delete(oldest.value);
    }
  };
  /**
   * Raises the generation (never lowers it) and keeps it at least `keepMs`; returns the slot now current. A fill
   * (`fromFill`) that finds it gone sets it on hold (types.ts, `newGenerationHoldMs`).
   */
  const raise = (key: string, generation: number, keepMs: number, now: number, fromFill: boolean): Slot => {
    const current = read(key, now);
    const next: Slot = {
      generation: current === undefined || current.generation < generation ? generation : current.generation,
      expiresAt: Math.max(current?.expiresAt ?? 0, now + keepMs),
    };
    const holdUntil = current === undefined ? (fromFill ? now + HOLD_MS : undefined) : current.holdUntil;
    if (holdUntil !== undefined) next.holdUntil = holdUntil;
    write(key, next);
    return next;
  };

  return {
    get size() {
      return slots.size;
    },
    get(scope, fingerprint) {
      const keys = cacheKeys(scope, fingerprint);
      const now = Date.now();
      const entry = read(keys.entry!, now);
      const generation = read(keys.generation, now);
      if (entry?.value === undefined || generation === undefined || entry.generation !== generation.generation) return undefined;
      return entry.value;
    },
    fill(scope, fingerprint, generation, value, ttlMs) {
      checkFillArgs(generation, ttlMs);
      const keys = cacheKeys(scope, fingerprint);
      const now = Date.now();
      const current = raise(keys.generation, generation, Math.max(ttlMs, GENERATION_MIN_TTL_MS), now, true);
      if (current.generation !== generation || (current.holdUntil ?? 0) > now) return false;
      write(keys.entry!, { generation, value, expiresAt: now + ttlMs });
      return true;
    },
    invalidate(scope, generation) {
      checkFillArgs(generation, 1);
      raise(cacheKeys(scope, undefined).generation, generation, GENERATION_MIN_TTL_MS, Date.now(), false);
    },
    ping: () => Promise.resolve(true),
  };
}
