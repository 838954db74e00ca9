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
  /** Time steps accepted either side of the current one (clock drift). */
  skew: number;
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

/** What enrolment stores for a new (unverified) device. */
export interface NewMfaDevice {
  id: string;
  tenantId: string;
  userId: string;
  method: MfaMethod;
  deviceName: string;
  secret: Sealed;
  totp: TotpParams | null;
  /** When the device, if still unverified, stops being usable. */
  expiresAt: Date;
}

export type CreateDeviceResult = { status: 'OK'; device: MfaDevice } | { status: 'DEVICE_LIMIT_REACHED' } | { status: 'STEP_UP_REQUIRED' };

/**
 * A change to a user's factors asked without step-up (`mfaDevicesRouter`'s `stepUp`, RFC 9470), which may go on only
 * while the user has nothing to step up with. The router checks it before; a store that takes it judges it again in
 * the write's own transaction, under the user's device lock, and writes nothing when it no longer holds: a request
 * that passed the router's check a moment before the user's first device was verified (by another request, on
 * another instance) must not be written after it.
 * - `'no-verified-device'`: the user has no verified device, on or off (an enrolment, verifying a pending device,
 *   turning off or removing one);
 * - `'no-factor-on'`: no verified device that is on and no unused recovery code (turning a device back on: the way
 *   back of a user who turned them all off).
 */
export type WithoutStepUp = 'no-verified-device' | 'no-factor-on';

export interface MfaDeviceStore {
  /**
   * A user's devices, newest first (ties by id), optionally of one method; abandoned enrolments (never verified, past
   * `expiresAt`) left out unless `includeAbandoned` (a reset that must delete every row).
   */
  list(tenantId: string, userId: string, filter: { method?: MfaMethod; includeAbandoned?: boolean }, page: PageQuery): Promise<Page<MfaDevice>>;
  /** One device of the user (expired unverified ones included: the caller decides), or `null`. */
  get(tenantId: string, userId: string, id: string): Promise<MfaDevice | null>;
  /**
   * Inserts a device unless the user already has `maxDevices` (expired unverified devices are
   * purged first and do not count). Serialised per user, so concurrent enrolments cannot overshoot. With
   * `withoutStepUp`, only while it holds (`STEP_UP_REQUIRED` otherwise).
   */
  create(device: NewMfaDevice, limits: { maxDevices: number; now: Date; withoutStepUp?: WithoutStepUp }): Promise<CreateDeviceResult>;
  /**
   * Renames and/or enables/disables a device; `null` when there is no such device. Disabling it also deletes its
   * pending sms/email codes, in the same transaction: a code sent before cannot pass once it is enabled again. With
   * `withoutStepUp`, only while it holds: `null` and nothing written otherwise.
   */
  update(tenantId: string, userId: string, id: string, patch: { deviceName?: string; enabled?: boolean }, options?: { withoutStepUp?: WithoutStepUp }): Promise<MfaDevice | null>;
  /**
   * Marks an unverified, unexpired (at `now`) device verified and used. With a TOTP `step` the
   * step is recorded in the same conditional update (refused when not above the last one).
   * `null` when nothing changed: no such device, already verified, expired, the step was used, or `withoutStepUp`
   * no longer holds.
   */
  markVerified(tenantId: string, userId: string, id: string, opts: { step: number | null; now: Date; withoutStepUp?: WithoutStepUp }): Promise<MfaDevice | null>;
  /**
   * The replay guard: records `step` as the last accepted TOTP step of a verified, enabled device
   * and sets `last_used_at`, in one conditional update that only succeeds when `step` is above the
   * stored one. `null` (refuse) when another request got there first or the step is not newer.
   */
  recordTotpStep(tenantId: string, userId: string, id: string, step: number): Promise<MfaDevice | null>;
  /** Sets `last_used_at` of a device (a successful sms/email use). */
  touch(tenantId: string, userId: string, id: string): Promise<void>;
  /**
   * Deletes a device; returns it (`null` when there was none) and how many verified devices the user still has
   * (serialised per user). When it was the user's last verified device, a store may also delete, in the same
   * transaction, their recovery codes and trusted devices (bumping the trusted-device generation) and say so in
   * `revoked`; without `revoked` the caller revokes them after. When it deletes trusted devices it calls
   * `beforeCommit` (`BeforeTrustedCommit`) before its commit. With `withoutStepUp`, only while it holds: nothing is
   * deleted otherwise (`removed: null`).
   */
  remove(tenantId: string, userId: string, id: string, beforeCommit?: BeforeTrustedCommit, options?: { withoutStepUp?: WithoutStepUp }): Promise<DeviceRemoval>;
}

/** What `MfaDeviceStore.remove` did. */
export interface DeviceRemoval {
  removed: MfaDevice | null;
  verifiedRemaining: number;
  /** Set when the last verified device's recovery codes (unused ones counted) and trusted devices went with it. */
  revoked?: { trustedDevices: number; recoveryCodes: number; trustedGeneration: number };
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
  /**
   * Write only while the user has a verified MFA device, checked in the write's transaction after the generation
   * lock: "remember this device" after a second factor must not outlive a removal of the user's last device (or
   * their erasure) that commits while the login is still answering. Without one, nothing is written.
   */
  requireVerifiedMfaDevice?: boolean;
}

/** What an upsert wrote. */
export interface TrustedDeviceUpsert {
  device: TrustedDevice;
  created: boolean;
  generation: number;
}

/** The cache epoch, read or bumped in the transaction of the writer that calls `BeforeTrustedCommit`. */
export interface CacheEpochInTransaction {
  /** The epoch as committed now. */
  read(): Promise<number>;
  /**
   * The epoch as committed now, held: no bump commits before the writer's transaction ends (and a bump that has the
   * row locked is waited for); with how long ago, in milliseconds, it was last bumped (`null`: not since migration 0008). After
   * it, this transaction must not `bump()`: two writers holding it would wait for each other.
   */
  hold(): Promise<{ epoch: number; sinceBumpMs: number | null }>;
  /** Increments it and returns the new value; committed (or rolled back) with the writer's change. */
  bump(): Promise<number>;
}

/**
 * What a writer of a user's trusted devices calls in its transaction, after it changed a device row and bumped the
 * user's generation (so with the generation row locked), before it commits: the cache is told the new generation
 * while no reader can see it yet, so a crash between the commit and the caller's next step leaves no cached
 * "trusted" behind (lib/trusted-devices.ts, point 3). Called only when a device row was written or deleted. A throw
 * rolls the change back and is the call's error.
 */
export type BeforeTrustedCommit = (generation: number, epoch: CacheEpochInTransaction) => Promise<void>;

/**
 * Trusted devices and the two counters the cache relies on: a per-user *generation*, bumped in the
 * same transaction as every change of that user's devices, and a global cache *epoch*. Each writer takes an
 * optional `beforeCommit` (`BeforeTrustedCommit`); a store that never calls it still works, the cache is then told
 * after the commit.
 * Generations and epochs are positive integers that only grow.
 */
export interface TrustedDeviceStore {
  /**
   * `true` when the store runs in a transaction of the host's (`knexStorage({ knex: trx })`), which may still roll back:
   * what it writes is not committed when it answers, and what it reads may be of that transaction alone. The service
   * then neither reads nor fills the cache through it (it still raises generations, which is always safe).
   */
  readonly inHostTransaction?: boolean;
  /**
   * Creates the row or renews the one with that fingerprint (same id); bumps the user's generation. `null` only
   * with `write.requireVerifiedMfaDevice` when the user has no verified MFA device (nothing written).
   */
  upsert(tenantId: string, userId: string, write: TrustedDeviceWrite, now: Date, beforeCommit?: BeforeTrustedCommit): Promise<TrustedDeviceUpsert | null>;
  /**
   * The device with that fingerprint if it is trusted at `now` (else `null`), and the user's generation,
   * both from ONE snapshot: the generation is the one the answer is true for (0 when the user never had a change).
   */
  find(tenantId: string, userId: string, fingerprint: string, now: Date): Promise<{ device: TrustedDevice | null; generation: number }>;
  /** A user's devices, newest first (ties by id); expired ones only when asked for. */
  list(tenantId: string, userId: string, filter: { includeExpired: boolean; now: Date }, page: PageQuery): Promise<Page<TrustedDevice>>;
  /** Deletes one device; `generation` is the bumped one, `null` when nothing was deleted (not that tenant's and user's, or no such id). */
  revoke(tenantId: string, userId: string, id: string, beforeCommit?: BeforeTrustedCommit): Promise<{ revoked: boolean; generation: number | null }>;
  /** Deletes all of a user's devices (expired ones too); `generation` is `null` when there were none. */
  revokeAll(tenantId: string, userId: string, beforeCommit?: BeforeTrustedCommit): Promise<{ revoked: number; generation: number | null }>;
  /** The current cache epoch. */
  cacheEpoch(): Promise<number>;
  /** Increments the cache epoch and returns the new value. */
  bumpCacheEpoch(): Promise<number>;
}


// ---------------------------------------------------------------- recovery codes, throttling ([3/7])

/** Lockout policy of the consecutive-failure counter. */
export interface LockoutPolicy {
  /** Failures (per tenant + user) that lock verification. */
  maxFailures: number;
  /** Seconds the lock lasts; also how long an isolated failure is remembered. */
  cooldownSeconds: number;
}

export type ChargeResult = { status: 'OK' } | { status: 'LOCKED'; retryAfterSeconds: number; newlyLocked: boolean };

export interface FailureRecord {
  /** Whether verification is now locked. */
  locked: boolean;
  /** Whether this failure is the one that locked it. */
  newlyLocked: boolean;
  retryAfterSeconds: number;
}

/**
 * The consecutive-failure counter shared by every instance (one row per tenant + user), on the
 * database clock. Each verification first charges an attempt; a success resets the counter.
 */
export interface VerificationThrottleStore {
  /**
   * Atomically counts one attempt before a code is checked: refused (`LOCKED`) while a lock runs
   * or when `maxFailures` attempts are already counted, so concurrent guesses cannot overshoot.
   */
  charge(tenantId: string, userId: string, policy: LockoutPolicy): Promise<ChargeResult>;
  /** The attempt failed: locks when the counted failures reached `maxFailures`. */
  recordFailure(tenantId: string, userId: string, policy: LockoutPolicy): Promise<FailureRecord>;
  /** A success: forget the failures. */
  reset(tenantId: string, userId: string): Promise<void>;
  /**
   * Takes back the attempt `charge` counted when the code could not be compared with anything (every secret it could
   * match failed to decrypt: a server fault, not a guess), unless a lock runs. Optional: without it, such attempts
   * count, and a user whose secrets a missing key made unreadable is locked out on top.
   */
  refund?(tenantId: string, userId: string): Promise<void>;
  /**
   * Seconds until the user's running lock ends; 0 when none runs. Read when the request-rate limit refuses a verify
   * request, so that its 429 tells a locked user the lock's wait, not the shorter window's. Optional: without it, that
   * 429 gives the window's.
   */
  lockedFor?(tenantId: string, userId: string): Promise<number>;
}

/** What a one-time sms/email code is for: finishing an enrolment, or a login second factor. */
export type OtpPurpose = 'enrollment' | 'login';

/**
 * A user's recovery codes, kept only as hashes (the service hashes; the store never sees a code).
 * One set per tenant+user; each hash is used at most once.
 */
export interface RecoveryCodeStore {
  /**
   * Replaces the user's whole set (used and unused) with these hashes, atomically: no reader ever sees a mix or an
   * empty gap, and concurrent replacements leave exactly one set. With `requireVerifiedMfaDevice`, only while the
   * user has a verified MFA device, read in the replacement's transaction after its lock: `false` and nothing
   * written when they have none. `true` otherwise.
   */
  replace(tenantId: string, userId: string, codeHashes: readonly Buffer[], options?: { requireVerifiedMfaDevice?: boolean }): Promise<boolean>;
  /** Marks the unused code with this hash used; `true` only for the one call that did (concurrent calls with the same code: exactly one `true`). */
  consume(tenantId: string, userId: string, codeHash: Buffer): Promise<boolean>;
  /** How many of the user's codes are still unused. */
  countRemaining(tenantId: string, userId: string): Promise<number>;
}

/** A pending sms/email code as stored: salted hash only, never the code or the destination. */
export interface OtpCodeRecord {
  tenantId: string;
  userId: string;
  deviceId: string;
  purpose: OtpPurpose;
  /** Random per code; the key of the HMAC in `codeHash`. */
  salt: Buffer;
  codeHash: Buffer;
  expiresAt: Date;
}

/** Pending one-time codes of sms/email devices: at most one per device and purpose. */
export interface OtpCodeStore {
  /**
   * Stores a code, replacing the device's pending code for the same purpose (its attempt count starts again at 0);
   * `false` if the user has no such device in the tenant, or it is turned off once verified. Atomic with `update`'s
   * disable: no code stored around a disable survives it.
   */
  put(record: OtpCodeRecord): Promise<boolean>;
  /**
   * Counts one attempt against the pending code of this device, user and purpose, provided it has
   * not expired at `now` and fewer than `maxAttempts` attempts were counted; returns its salt and hash,
   * or `null` (none, expired or used up). Atomic: concurrent callers each use up one attempt.
   */
  beginAttempt(key: { tenantId: string; userId: string; deviceId: string; purpose: OtpPurpose }, now: Date, maxAttempts: number): Promise<{ salt: Buffer; codeHash: Buffer } | null>;
  /** Deletes the pending code if it still has this hash; `true` only for the one call that did. */
  consume(key: { tenantId: string; userId: string; deviceId: string; purpose: OtpPurpose }, codeHash: Buffer): Promise<boolean>;
}

// ---------------------------------------------------------------- sync records ([4/7])

/** One device's authenticator vault (seed 001 `DeviceSyncResponse`), as stored: the vault sealed. */
export interface SyncRecord {
  tenantId: string;
  /** `devsync_` + 32 hex characters. */
  id: string;
  userId: string;
  /** Unique per tenant and user: a device has one record. */
  deviceFingerprint: string;
  deviceName: string;
  /** Opaque version of the record: a new random value on every write (optimistic concurrency). */
  syncToken: string;
  /** The vault JSON sealed with the key ring, associated data = (tenant, user, record id). */
  vault: Sealed;
  createdAt: Date;
  lastSyncAt: Date;
}

/** What `SyncRecordStore.create` inserts (the timestamps are the database's). */
export type NewSyncRecord = Omit<SyncRecord, 'createdAt' | 'lastSyncAt'>;

/** Names the record a compare-and-set update is meant for. */
export interface SyncRecordKey {
  tenantId: string;
  userId: string;
  deviceFingerprint: string;
  /** The id the new vault was sealed for: a record recreated under another id is a conflict. */
  id: string;
}

/** The new content of a record on update. */
export interface SyncRecordChange {
  deviceName: string;
  /** The token the record carries after the write. */
  syncToken: string;
  vault: Sealed;
}

/**
 * Outcome of a write. `conflict` carries the record as it now is, or `null` when there is none
 * (it was deleted meanwhile); nothing was written in either case.
 */
export type SyncWriteResult = { status: 'created' | 'updated'; record: SyncRecord } | { status: 'conflict'; current: SyncRecord | null };

/** Outcome of a create: a write's, or `limit-reached` when the user already has `maxRecords` records (nothing written). */
export type SyncCreateResult = SyncWriteResult | { status: 'limit-reached' };

export interface SyncRecordStore {
  /** A user's records, newest first by `createdAt` (ties by id), so pages do not shift while devices sync. */
  list(tenantId: string, userId: string, page: PageQuery): Promise<Page<SyncRecord>>;
  /** One record of the user, or `null` (also for another user's or tenant's id). */
  get(tenantId: string, userId: string, id: string): Promise<SyncRecord | null>;
  /** The user's record for a device, or `null`. */
  findByFingerprint(tenantId: string, userId: string, deviceFingerprint: string): Promise<SyncRecord | null>;
  /**
   * Inserts the record unless the user already has one for this fingerprint, atomically (one
   * winner among concurrent creators): `created`, or `conflict` with the existing record. With
   * `limits`, also unless the user already has `maxRecords` records (`limit-reached`), decided under
   * a per-user lock so that concurrent creates of other fingerprints do not pass it together.
   */
  create(record: NewSyncRecord, limits?: { maxRecords: number }): Promise<SyncCreateResult>;
  /**
   * Compare-and-set in one statement: writes `change` (and `lastSyncAt` = now) only if the record
   * named by `key` still carries `expectedToken`: `updated`, or `conflict` with the current record.
   */
  updateIfToken(key: SyncRecordKey, expectedToken: string, change: SyncRecordChange): Promise<SyncWriteResult>;
  /**
   * Deletes one record of the user; `false` when there was none. With `expectedToken`, only if the
   * record still carries it, in one statement: `false` too when it does not (the caller reads the
   * record to tell a stale token from a missing record).
   */
  delete(tenantId: string, userId: string, id: string, expectedToken?: string): Promise<boolean>;
}

// ---------------------------------------------------------------- the whole

/** Everything the three routers use; each router checks only the parts it calls. */
// ---------------------------------------------------------------- erasure

/** What erasing a user removed, per kind of record. */
export interface ErasedUserData {
  mfaDevices: number;
  recoveryCodes: number;
  trustedDevices: number;
  syncRecords: number;
}

/** A user's data as a whole: the right to erasure (GDPR art. 17) when the host deletes an account. */
export interface UserDataStore {
  /**
   * Deletes everything kept about one user of a tenant, in ONE transaction: MFA devices (and their pending codes),
   * recovery codes, trusted devices, vault sync records and the lockout counter. Serialised with the user's
   * enrolments, device removals, recovery-code replacements and trusted-device writes (a first trust still in flight
   * included). The user's trusted-device generation is kept and bumped in the same transaction, made if the user had
   * none (the cache relies on it only growing); `trustedGeneration` is the new one, for the cache. When it deletes
   * trusted devices it calls `beforeCommit` (`BeforeTrustedCommit`) before its commit.
   */
  erase(tenantId: string, userId: string, beforeCommit?: BeforeTrustedCommit): Promise<{ erased: ErasedUserData; trustedGeneration: number }>;
}

export interface MfaStorage {
  mfaDevices: MfaDeviceStore;
  /** The verification lockout counter ([3/7]). */
  verificationThrottle: VerificationThrottleStore;
  recoveryCodes: RecoveryCodeStore;
  otpCodes: OtpCodeStore;
  /** Authenticator vaults synced across a user's devices ([4/7]). */
  syncRecords: SyncRecordStore;
  trustedDevices: TrustedDeviceStore;
  /** Erasure of all of a user's data. */
  users: UserDataStore;
  /** Resolves when the database answers a trivial query and takes writes; rejects otherwise (readiness). */
  ping(): Promise<void>;
}
