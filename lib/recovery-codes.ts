/** Recovery codes: one-time, human-friendly fallback codes, stored only as hashes. */
import { createHash, randomBytes, scrypt } from 'node:crypto';
import { checkInjected, checkInteger } from './options.js';
import type { MfaStorage } from '../storage/types.js';

/** A user's recovery codes. */
export interface RecoveryCodes {
  /** Makes `count` new codes, replacing the user's earlier set (used or not) atomically; returns them formatted for display. The only time they are seen. */
  regenerate(tenantId: string, userId: string): Promise<string[]>;
  /**
   * `regenerate()`, but only while the user has a verified MFA device (checked in the replacement's transaction,
   * under the lock a removal's revocation takes too); `null` (nothing written) when they have none: codes made
   * while the user's last device is being removed do not outlive it.
   */
  regenerateWhileEnrolled(tenantId: string, userId: string): Promise<string[] | null>;
  /** Uses a code once: `true` for the one call that consumed an unused code of this user; `false` otherwise. Tolerates case, spaces and dashes. */
  consume(tenantId: string, userId: string, code: string): Promise<boolean>;
  /** How many unused codes the user has. */
  remaining(tenantId: string, userId: string): Promise<number>;
  /** Removes the user's whole set; returns how many of its codes were unused. */
  revokeAll(tenantId: string, userId: string): Promise<number>;
}

/** Options of `createRecoveryCodes()`. */
export interface RecoveryCodesOptions {
  /** Storage with `recoveryCodes` (e.g. `knexStorage({ knex })`). */
  storage: MfaStorage;
  /**
   * Codes per set.
   * @default 10
   */
  count?: number;
}

/** Default number of codes per set. */
export const DEFAULT_RECOVERY_CODE_COUNT = 10;

/** Crockford base32: no I, L, O, U, so nothing is mistaken for 1, 0 or a rude word. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** 12 symbols × 5 bits = 60 bits per code. */
const SYMBOLS = 12;
const GROUP = 4;
/** Longest input worth normalising: a code with generous separators. */
const MAX_INPUT = 64;

/** A fresh code, `xxxx-xxxx-xxxx` (lower case). */
function generateCode(): string {
  // 256 is a multiple of 32, so the low 5 bits of a random byte are uniform.
  const symbols = Array.from(randomBytes(SYMBOLS), (b) => ALPHABET[b & 31]!).join('');
  const groups: string[] = [];
  for (let i = 0; i < SYMBOLS; i += GROUP) groups.push(symbols.slice(i, i + GROUP));
  return groups.join('-').toLowerCase();
}

/**
 * What a user typed, as the 12 canonical symbols, or `null` if it cannot be a code: case, spaces and
 * dashes of any kind are ignored, and Crockford's look-alikes are read as what they look like (I, L → 1; O → 0).
 */
export function normalizeRecoveryCode(input: string): string | null {
  if (typeof input !== 'string' || input.length > MAX_INPUT) return null;
  const s = input
    .toUpperCase()
    .replace(/[\s\-\u2010-\u2015\u2212]/g, '')
    .replace(/[IL]/g, '1')
    .replace(/O/g, '0');
  if (s.length !== SYMBOLS) return null;
  for (const ch of s) if (!ALPHABET.includes(ch)) return null;
  return s;
}

/**
 * scrypt's cost: N = 2^12, r = 8 (4 MiB, ~10 ms a code here). A code carries 60 random bits: trying them against a
 * stolen hash is ~2^59 derivations, memory-hard ones, where one SHA-256 each was within reach of GPUs.
 */
const SCRYPT = { N: 2 ** 12, r: 8, p: 1 } as const;
/**
 * Derivations run at once in the process, at most: each takes a thread of libuv's pool (4 by default) for its
 * ~10 ms, and the pool also writes the log and resolves host names. Beyond this they queue here.
 */
const SCRYPT_CONCURRENCY = 2;
let scryptRunning = 0;
const scryptWaiting: Array<() => void> = [];

/** Runs `work` when fewer than SCRYPT_CONCURRENCY derivations are running. */
async function limited<T>(work: () => Promise<T>): Promise<T> {
  if (scryptRunning >= SCRYPT_CONCURRENCY) await new Promise<void>((resolve) => scryptWaiting.push(resolve));
  scryptRunning++;
  try {
    return await work();
  } finally {
    scryptRunning--;
    scryptWaiting.shift()?.();
  }
}

/**
 * The stored form of a code: scrypt (`SCRYPT`) salted with tenant and user, domain-separated. A code carries 60 random
 * bits, under the 112 below which NIST SP 800-63B (look-up secrets) asks for a salted, costly key derivation rather
 * than one fast hash. The salt is the user (not random per code), so a typed code is derived once and found by its
 * hash; no two users share one.
 */
function hashCode(tenantId: string, userId: string, normalized: string): Promise<Buffer> {
  return limited(
    () =>
      new Promise<Buffer>((resolve, reject) => {
        scrypt(normalized, JSON.stringify(['express-mfa-kit/recovery-code/v2', tenantId, userId]), 32, SCRYPT, (err, key) => (err ? reject(err) : resolve(key)));
      }),
  );
}

/** The form codes made before the scrypt one were stored in (one SHA-256): still taken, so earlier sets keep working. */
function legacyHashCode(tenantId: string, userId: string, normalized: string): Buffer {
  return createHash('sha256').update(JSON.stringify(['express-mfa-kit/recovery-code/v1', tenantId, userId, normalized])).digest();
}

/** Recovery codes on the given storage. Throws a TypeError at set-up for a missing store or a bad `count`. */
export function createRecoveryCodes(options: RecoveryCodesOptions): RecoveryCodes {
  checkInjected('createRecoveryCodes', 'storage', options?.storage, ['recoveryCodes.replace', 'recoveryCodes.consume', 'recoveryCodes.countRemaining'], 'pass knexStorage({ knex }) or a storage implementing RecoveryCodeStore as storage.recoveryCodes');
  const count = checkInteger('createRecoveryCodes', 'count', options.count ?? DEFAULT_RECOVERY_CODE_COUNT, 1, 100);
  const store = options.storage.recoveryCodes;

  /** A new set replacing the old one; `null` when `requireVerifiedMfaDevice` and the store wrote nothing. */
  const replaceSet = async (tenantId: string, userId: string, requireVerifiedMfaDevice: boolean): Promise<string[] | null> => {
    // Distinct within the set by construction (a 60-bit collision is all but impossible, but cheap to rule out).
    const codes = new Set<string>();
    while (codes.size < count) codes.add(generateCode());
    const list = [...codes];
    const hashes = await Promise.all(list.map((c) => hashCode(tenantId, userId, normalizeRecoveryCode(c)!)));
    const written = await store.replace(tenantId, userId, hashes, requireVerifiedMfaDevice ? { requireVerifiedMfaDevice } : undefined);
    return written === false ? null : list;
  };

  return {
    regenerate: async (tenantId, userId) => (await replaceSet(tenantId, userId, false))!,
    regenerateWhileEnrolled: (tenantId, userId) => replaceSet(tenantId, userId, true),
    async consume(tenantId, userId, code) {
      const normalized = normalizeRecoveryCode(code);
      if (normalized === null) return false;
      if (await store.consume(tenantId, userId, await hashCode(tenantId, userId, normalized))) return true;
      return store.consume(tenantId, userId, legacyHashCode(tenantId, userId, normalized));
    },
    remaining: (tenantId, userId) => store.countRemaining(tenantId, userId),
    async revokeAll(tenantId, userId) {
      const unused = await store.countRemaining(tenantId, userId);
      await store.replace(tenantId, userId, []);
      return unused;
    },
  };
}
