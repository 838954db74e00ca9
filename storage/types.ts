/**
 * What the routers need from storage, by use case. `knexStorage()` implements all of it on
 * PostgreSQL; any other implementation passing the same tests can be injected instead.
 * Every method is scoped by tenant (and by user where a user owns the row): a row of another
 * tenant or user is indistinguishable from one that does not exist.
 * A method throws only on infrastructure failure (the router answers 503 / 500); expected
 * outcomes are return values.
 */
import type { Sealed } from '../lib/keyring.js';

/** Which rows of a list to return. */
export interface PageQuery {
  limit: number;
  offset: number;
}

export interface Page<T> {
  items: T[];
  total: number;
}

// ---------------------------------------------------------------- MFA devices

export type MfaMethod = 'totp' | 'sms' | 'email';
export type TotpAlgorithm = 'SHA1' | 'SHA256' | 'SHA512';

export interface TotpParams {
  algorithm: TotpAlgorithm;
  digits: number;
  /** Seconds per time step. */
  period: number;
}

/** One second factor of a user. */
export interface MfaDevice {
  id: string;
  tenantId: string;
  userId: string;
  method: MfaMethod;
  deviceName: string;
  enabled: boolean;
  verified: boolean;
  /** TOTP secret (base32) or sms/email destination, sealed with the key ring. */
  secret: Sealed;
  /** TOTP parameters; `null` for sms and email. */
  totp: TotpParams | null;
  /** Highest TOTP time step accepted so far (replay guard); `null` before the first. */
  lastStep: number | null;
  createdAt: Date;
  lastUsedAt: Date | null;
  verifiedAt: Date | null;
  /** When an unverified device stops being usable for verification; `null` once verified. */
  expiresAt: Date | null;
}

export interface MfaDeviceStore {
  /** A user's devices, newest first (ties by id), optionally of one method. */
  list(tenantId: string, userId: string, filter: { method?: MfaMethod }, page: PageQuery): Promise<Page<MfaDevice>>;
}

// ---------------------------------------------------------------- trusted devices ([2/7])

/** A remembered browser or device of a user (NIST SP 800-63B §5.2.3 "remember this device"). */
export interface TrustedDevice {
  /** uuid. */
  id: string;
  tenantId: string;
  userId: string;
  /** Opaque identifier the caller derives from the browser or device; unique per tenant + user. */
  fingerprint: string;
  deviceName: string | null;
  deviceType: string | null;
  browser: string | null;
  os: string | null;
  /** IPv4 or IPv6 address the device was trusted from. */
  ip: string | null;
  /** When the fingerprint was first trusted (a renew keeps it). */
  createdAt: Date;
  /** The device stops being trusted at this instant. */
  trustedUntil: Date;
}

/** What a trust or renew writes; an absent (`undefined`) detail keeps the stored one on a renew. */
export interface TrustedDeviceWrite {
  fingerprint: string;
  deviceName?: string | undefined;
  deviceType?: string | undefined;
  browser?: string | undefined;
  os?: string | undefined;
  ip?: string | undefined;
  trustedUntil: Date;
}

/**
 * Trusted devices and the two counters the cache relies on: a per-user *generation*, bumped in the
 * same transaction as every change of that user's devices, and a global cache *epoch*.
 * Generations and epochs are positive integers that only grow.
 */
export interface TrustedDeviceStore {
  /** Creates the row or renews the one with that fingerprint (same id); bumps the user's generation. */
  upsert(tenantId: string, userId: string, write: TrustedDeviceWrite, now: Date): Promise<{ device: TrustedDevice; created: boolean; generation: number }>;
  /**
   * The device with that fingerprint if it is trusted at `now` (else `null`), and the user's generation,
   * both from ONE snapshot: the generation is the one the answer is true for (0 when the user never had a change).
   */
  find(tenantId: string, userId: string, fingerprint: string, now: Date): Promise<{ device: TrustedDevice | null; generation: number }>;
  /** A user's devices, newest first (ties by id); expired ones only when asked for. */
  list(tenantId: string, userId: string, filter: { includeExpired: boolean; now: Date }, page: PageQuery): Promise<Page<TrustedDevice>>;
  /** Deletes one device; `generation` is the bumped one, `null` when nothing was deleted (not that tenant's and user's, or no such id). */
  revoke(tenantId: string, userId: string, id: string): Promise<{ revoked: boolean; generation: number | null }>;
  /** Deletes all of a user's devices (expired ones too); `generation` is `null` when there were none. */
  revokeAll(tenantId: string, userId: string): Promise<{ revoked: number; generation: number | null }>;
  /** The current cache epoch. */
  cacheEpoch(): Promise<number>;
  /** Increments the cache epoch and returns the new value. */
  bumpCacheEpoch(): Promise<number>;
}


// ---------------------------------------------------------------- recovery codes, throttling ([3/7])

// ---------------------------------------------------------------- sync records ([4/7])

// ---------------------------------------------------------------- the whole

/** Everything the three routers use; each router checks only the parts it calls. */
export interface MfaStorage {
  mfaDevices: MfaDeviceStore;
  trustedDevices: TrustedDeviceStore;
  /** Resolves when the database answers a trivial query; rejects otherwise (readiness). */
  ping(): Promise<void>;
}
