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

// ---------------------------------------------------------------- recovery codes, throttling ([3/7])

// ---------------------------------------------------------------- sync records ([4/7])

// ---------------------------------------------------------------- the whole

/** Everything the three routers use; each router checks only the parts it calls. */
export interface MfaStorage {
  mfaDevices: MfaDeviceStore;
  /** Resolves when the database answers a trivial query; rejects otherwise (readiness). */
  ping(): Promise<void>;
}
