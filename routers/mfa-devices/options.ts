/** `mfaDevicesRouter` options: the public shape, its defaults, and the parser that fills a complete config. */
import type { Request, RequestHandler, Response } from 'express';
import { createMfaEvents, type MfaEvents } from '../../lib/events.js';
import { DEFAULT_BODY_LIMIT } from '../../lib/json-body.js';
import type { KeyRing } from '../../lib/keyring.js';
import { DEFAULT_CODE_TTL_SECONDS, DEFAULT_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS, type MfaCodeSender } from '../../lib/otp-channels.js';
import { DEFAULT_RECOVERY_CODE_COUNT } from '../../lib/recovery-codes.js';
import { TRUSTED_DEVICE_SETTING_NAMES, resolveTrustedDeviceSettings, type TrustedDeviceSettings } from '../../lib/trusted-devices.js';
import type { TrustedDeviceCache } from '../../storage/cache/types.js';
import { getDefaultLogger, type Logger } from '../../lib/logger.js';
import { checkInjected, checkInteger, checkNestedOptions, checkOptionsObject } from '../../lib/options.js';
import { characterCount, isDisplayable } from '../../lib/validation.js';
import { checkErrorsOption, resolveProblemOptions, type ProblemJsonOptions, type ResolvedProblemOptions } from '../../lib/problem.js';
import {
  DEFAULT_TOTP_ALGORITHM,
  DEFAULT_TOTP_DIGITS,
  DEFAULT_TOTP_PERIOD,
  DEFAULT_TOTP_SKEW,
  MAX_TOTP_PERIOD,
  MAX_TOTP_SKEW,
  MIN_TOTP_PERIOD,
} from '../../lib/totp.js';
import { resolveStepUp, type StepUpOptions, type StepUpPolicy, type StepUpTexts } from '../../lib/step-up.js';
import type { JwtOptions } from '../../lib/user-auth.js';
import {
  resolveLockout,
  resolveRateLimit,
  type LockoutOptions,
  type RateLimitOptions,
  type RateLimitRedisClient,
  type ResolvedRateLimit,
} from '../../lib/verification-throttle.js';
import type { LockoutPolicy, MfaStorage, TotpAlgorithm, TotpParams } from '../../storage/types.js';

/** Issuer shown in authenticator apps. */
export const DEFAULT_ISSUER = 'express-mfa-kit';
/** Devices a user may have (verified or pending). */
export const DEFAULT_MAX_DEVICES = 10;
/** How long an enrolment may stay unverified: 15 minutes. */
export const DEFAULT_UNVERIFIED_TTL_SECONDS = 900;
/** Longest `issuer` (the name authenticator apps show). */
export const MAX_ISSUER_LENGTH = 100;
/** Longest device name accepted. */
export const MAX_DEVICE_NAME_LENGTH = 100;

/** What `accountName` and `onVerified` learn about the caller. */
export interface MfaUser {
  tenantId: string;
  userId: string;
  /** The verified token claims (or whatever the host's `authenticate` put in `req.user`). */
  claims: Record<string, unknown>;
}

/** What the `onVerified` hook gets after a successful second factor. */
export interface VerifiedContext extends MfaUser {
  req: Request;
  res: Response;
  requestId: string;
  method: 'totp' | 'sms' | 'email' | 'recovery_code';
  /** The device that matched; absent for a recovery code. */
  deviceId?: string;
  /** Set when `rememberDevice` trusted this browser. */
  trustedDevice?: { id: string; trustedUntil: Date };
  /** After a recovery code: how many unused ones the user has left (0: have them make a new set, e.g. a step-up token for `POST /recovery-codes`). */
  recoveryCodesRemaining?: number;
}

export interface TotpOptions {
  /** HMAC algorithm of new devices. @default 'SHA1' (what every authenticator app supports) */
  algorithm?: TotpAlgorithm;
  /** Code length of new devices, 6 to 8. @default 6 */
  digits?: number;
  /** Seconds per step of new devices. @default 30 */
  period?: number;
  /** Steps accepted either side of now for new devices, 0 to 10. @default 1 */
  skew?: number;
}

export interface MfaDevicesRouterOptions {
  /** Storage, e.g. `knexStorage({ knex })`. Required. */
  storage: MfaStorage;
  /** Key ring sealing TOTP secrets and sms/email destinations, e.g. `keyRing(process.env.MFA_ENCRYPTION_KEYS)`. Required. */
  keyRing: KeyRing;
  /** Verify user tokens with passport-jwt. One of `jwt` or `authenticate` is required. */
  jwt?: JwtOptions;
  /** Or the host's own authentication middleware; it must set `req.user` to the claims. */
  authenticate?: RequestHandler;
  /** Claim holding the user id. @default 'sub' */
  userClaim?: string;
  /** Claim holding the tenant id. @default 'tenant_id' */
  tenantClaim?: string;
  /** Header that, when sent, must equal the tenant claim (→ 403). @default 'X-Tenant-ID' */
  tenantHeader?: string;
  /** Issuer in the `otpauth://` URI (the name authenticator apps show). @default 'express-mfa-kit' */
  issuer?: string;
  /** Account label in the `otpauth://` URI. @default the `email` claim when present, else the user id */
  accountName?: (user: MfaUser) => string;
  /** TOTP parameters of newly enrolled devices (each device keeps its own). @default SHA1, 6 digits, 30 s, skew 1 */
  totp?: TotpOptions;
  /** Devices per user; enrolling one more → 409 `DEVICE_LIMIT_REACHED`. @default 10 */
  maxDevices?: number;
  /** Seconds an enrolment may stay unverified before it is treated as gone. @default 900 */
  unverifiedTtlSeconds?: number;
  /**
   * Delivers sms/email codes (your SMS gateway, your mailer; `demoSender(logger)` in development).
   * Without it only TOTP can be enrolled: sms/email enrolment answers 400 `METHOD_NOT_ENABLED`.
   */
  sender?: MfaCodeSender | undefined;
  /** Seconds an sms/email code stays valid. @default 600 */
  codeTtlSeconds?: number;
  /** Guesses an sms/email code takes before it is spent (a new one must be sent), 1 to 100. @default 5 */
  codeMaxAttempts?: number;
  /** Recovery codes per set. @default 10 */
  recoveryCodeCount?: number;
  /**
   * Cache of the trusted-device check, shared with `internalRouter`: `redisCache({ client })` with several
   * instances, `memoryCache()` for one process. "Remember this device" writes through it. @default none: Postgres only
   */
  cache?: TrustedDeviceCache | undefined;
  /** Trusted-device tunables (as `internalRouter`'s); `defaultTtlSeconds` is how long "remember this device" lasts. @default { defaultTtlSeconds: 2592000, … } */
  trustedDevices?: TrustedDeviceSettings | undefined;
  /** Consecutive-failure lockout per tenant + user (kept in storage, shared by all instances). @default { maxFailures: 5, cooldownSeconds: 900 } */
  lockout?: LockoutOptions | undefined;
  /** Request-rate limit on verify routes, or `false`. @default { windowMs: 60000, limit: 10 } */
  rateLimit?: RateLimitOptions | false;
  /** Redis client (ioredis) for the rate-limit counters, shared by all instances. @default in-process counters */
  redis?: RateLimitRedisClient | undefined;
  /**
   * Called after a successful `POST /verify`, before the answer: issue the host's session here.
   * Returned fields are added to the JSON answer; a throw goes to the error handler.
   */
  onVerified?: ((ctx: VerifiedContext) => void | Record<string, unknown> | Promise<void | Record<string, unknown>>) | undefined;
  /**
   * Step-up (RFC 9470) for changes to a user's second factors: enrolling a device, removing one, turning one off,
   * making new recovery codes. Once the user has a verified device (on or off: the login takes recovery codes), these
   * need a token that shows one: its `amr` holds one of `amr`, or its `acr` is one of `acr`, and, with
   * `maxAgeSeconds`, its `auth_time` is that recent; otherwise 401 `STEP_UP_REQUIRED` with `WWW-Authenticate:
   * Bearer error="insufficient_user_authentication"`. Issue such a token in `onVerified`. @default none: any
   * authenticated token may (keep half-finished logins off these routes in your `authenticate`)
   */
  stepUp?: StepUpOptions | undefined;
  /** Where events are emitted (also exposed as `router.events`). @default a new EventEmitter */
  events?: MfaEvents | undefined;
  /** The clock in milliseconds (tests): TOTP steps, and the `auth_time` that `stepUp` reads. @default Date.now */
  now?: () => number;
  /** Error body format and Problem fields. @default { format: 'problem', service: 'mfa-kit' } */
  errors?: Omit<ProblemJsonOptions, 'logger'> | undefined;
  /** pino-compatible logger. @default pino on stdout */
  logger?: Logger | undefined;
  /** Largest JSON body accepted. @default '100kb' */
  bodyLimit?: string | number;
}

/** The complete configuration the router runs on. */
export interface MfaDevicesRouterConfig {
  storage: MfaStorage;
  keyRing: KeyRing;
  auth: Pick<MfaDevicesRouterOptions, 'jwt' | 'authenticate' | 'userClaim' | 'tenantClaim' | 'tenantHeader'>;
  issuer: string;
  accountName: (user: MfaUser) => string;
  totp: TotpParams;
  maxDevices: number;
  unverifiedTtlSeconds: number;
  sender: MfaCodeSender | undefined;
  cache: TrustedDeviceCache | undefined;
  trustedDevices: Required<TrustedDeviceSettings>;
  codeTtlSeconds: number;
  codeMaxAttempts: number;
  recoveryCodeCount: number;
  lockout: LockoutPolicy;
  rateLimit: ResolvedRateLimit | false;
  redis: RateLimitRedisClient | undefined;
  onVerified: MfaDevicesRouterOptions['onVerified'];
  stepUp: StepUpPolicy | undefined;
  events: MfaEvents;
  now: () => number;
  errors: ResolvedProblemOptions;
  logger: Logger;
  bodyLimit: string | number;
}

/** What the step-up refusal says: a change of factors (the detail is the catalogue's). */
const STEP_UP_FOR_CHANGES: StepUpTexts = { description: 'A recent second factor is required for this change' };

const FACTORY = 'mfaDevicesRouter';
const KNOWN = [
  'storage',
  'keyRing',
  'jwt',
  'authenticate',
  'userClaim',
  'tenantClaim',
  'tenantHeader',
  'issuer',
  'accountName',
  'totp',
  'maxDevices',
  'unverifiedTtlSeconds',
  'sender',
  'codeTtlSeconds',
  'codeMaxAttempts',
  'recoveryCodeCount',
  'cache',
  'trustedDevices',
  'lockout',
  'rateLimit',
  'redis',
  'onVerified',
  'stepUp',
  'events',
  'now',
  'errors',
  'logger',
  'bodyLimit',
] as const;
const EXAMPLE = '{ storage: knexStorage({ knex }), keyRing: keyRing(process.env.MFA_ENCRYPTION_KEYS), jwt: { secret: process.env.JWT_SECRET } }';
const ALGORITHMS: readonly TotpAlgorithm[] = ['SHA1', 'SHA256', 'SHA512'];

/** Longest account label put in an `otpauth://` URI (an email address is at most 254 characters, RFC 5321). */
export const MAX_ACCOUNT_LABEL_LENGTH = 254;

/**
 * Whether a label can go in an `otpauth://` URI and be shown by an authenticator app as it is. Not with a `:`
 * (Key Uri Format: neither issuer nor account name may contain one, encoded or not): apps split `issuer:account`
 * at a colon and would show the wrong issuer and account.
 */
export const isAccountLabel = (label: unknown): label is string =>
  typeof label === 'string' && label !== '' && characterCount(label) <= MAX_ACCOUNT_LABEL_LENGTH && !label.includes(':') && isDisplayable(label);

/** `label` when it is an account label, else the user id as one (the last resort): its colons, which a label may not hold, become `_`. */
export const accountLabelOr = (label: unknown, userId: string): string => (isAccountLabel(label) ? label : userId.replaceAll(':', '_'));

/** The `email` claim when it is a label an authenticator app can show (the user chose it: checked), else the user id. */
const defaultAccountName = (user: MfaUser): string => {
  return accountLabelOr(user.claims.email, user.userId);
};

function parseTotp(options: TotpOptions | undefined): TotpParams {
  checkNestedOptions(FACTORY, 'totp', options, ['algorithm', 'digits', 'period', 'skew'], "{ algorithm: 'SHA1', digits: 6, period: 30, skew: 1 }");
  const algorithm = options?.algorithm ?? DEFAULT_TOTP_ALGORITHM;
  if (!ALGORITHMS.includes(algorithm)) {
    throw new TypeError(`express-mfa-kit: ${FACTORY}() option 'totp.algorithm' must be one of ${ALGORITHMS.join(', ')}`);
  }
  return {
    algorithm,
    digits: options?.digits === undefined ? DEFAULT_TOTP_DIGITS : checkInteger(FACTORY, 'totp.digits', options.digits, 6, 8),
    period: options?.period === undefined ? DEFAULT_TOTP_PERIOD : checkInteger(FACTORY, 'totp.period', options.period, MIN_TOTP_PERIOD, MAX_TOTP_PERIOD),
    skew: options?.skew === undefined ? DEFAULT_TOTP_SKEW : checkInteger(FACTORY, 'totp.skew', options.skew, 0, MAX_TOTP_SKEW),
  };
}

function checkFunction(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function') {
    throw new TypeError(`express-mfa-kit: ${FACTORY}() option '${name}' must be a function`);
  }
}

export function parseOptions(options: MfaDevicesRouterOptions): MfaDevicesRouterConfig {
  checkOptionsObject(FACTORY, options, KNOWN, EXAMPLE);
  checkInjected(
    FACTORY,
    'storage',
    options.storage,
    ['mfaDevices.list', 'mfaDevices.get', 'mfaDevices.create', 'mfaDevices.recordTotpStep', 'verificationThrottle.charge', 'recoveryCodes.consume', 'otpCodes.put'],
    'pass storage: knexStorage({ knex })',
  );
  if (options.sender !== undefined) {
    checkInjected(FACTORY, 'sender', options.sender, ['send'], 'pass { send({ tenantId, userId, method, destination, code, purpose }) { … } } (demoSender(logger) in development)');
  }
  checkInjected(FACTORY, 'keyRing', options.keyRing, ['seal', 'openText'], 'pass keyRing: keyRing(process.env.MFA_ENCRYPTION_KEYS)');
  if (options.redis !== undefined) checkInjected(FACTORY, 'redis', options.redis, ['call'], 'pass an ioredis client: redis: new Redis(process.env.REDIS_URL)');
  if (options.events !== undefined) checkInjected(FACTORY, 'events', options.events, ['emit', 'on'], 'pass an EventEmitter, e.g. events: createMfaEvents()');
  checkNestedOptions(FACTORY, 'trustedDevices', options.trustedDevices, TRUSTED_DEVICE_SETTING_NAMES, '{ defaultTtlSeconds: 2592000 }');
  checkFunction('accountName', options.accountName);
  checkFunction('onVerified', options.onVerified);
  checkFunction('now', options.now);
  if (options.issuer !== undefined && (typeof options.issuer !== 'string' || options.issuer.trim() === '' || options.issuer.includes(':') || characterCount(options.issuer) > MAX_ISSUER_LENGTH || !isDisplayable(options.issuer))) {
    throw new TypeError(`express-mfa-kit: ${FACTORY}() option 'issuer' must be 1-${MAX_ISSUER_LENGTH} characters of displayable text without ':' (it prefixes the account label)`);
  }
  checkErrorsOption(FACTORY, options.errors);
  const logger = options.logger ?? getDefaultLogger();
  return {
    storage: options.storage,
    keyRing: options.keyRing,
    auth: {
      ...(options.jwt !== undefined && { jwt: options.jwt }),
      ...(options.authenticate !== undefined && { authenticate: options.authenticate }),
      ...(options.userClaim !== undefined && { userClaim: options.userClaim }),
      ...(options.tenantClaim !== undefined && { tenantClaim: options.tenantClaim }),
      ...(options.tenantHeader !== undefined && { tenantHeader: options.tenantHeader }),
    },
    issuer: options.issuer ?? DEFAULT_ISSUER,
    accountName: options.accountName ?? defaultAccountName,
    totp: parseTotp(options.totp),
    maxDevices: options.maxDevices === undefined ? DEFAULT_MAX_DEVICES : checkInteger(FACTORY, 'maxDevices', options.maxDevices, 1, 100),
    unverifiedTtlSeconds:
      options.unverifiedTtlSeconds === undefined ? DEFAULT_UNVERIFIED_TTL_SECONDS : checkInteger(FACTORY, 'unverifiedTtlSeconds', options.unverifiedTtlSeconds, 1, 7 * 24 * 3600),
    sender: options.sender,
    cache: options.cache,
    trustedDevices: resolveTrustedDeviceSettings(FACTORY, options.trustedDevices),
    codeTtlSeconds: options.codeTtlSeconds === undefined ? DEFAULT_CODE_TTL_SECONDS : checkInteger(FACTORY, 'codeTtlSeconds', options.codeTtlSeconds, 30, 86_400),
    codeMaxAttempts: options.codeMaxAttempts === undefined ? DEFAULT_MAX_ATTEMPTS : checkInteger(FACTORY, 'codeMaxAttempts', options.codeMaxAttempts, 1, MAX_MAX_ATTEMPTS),
    recoveryCodeCount: options.recoveryCodeCount === undefined ? DEFAULT_RECOVERY_CODE_COUNT : checkInteger(FACTORY, 'recoveryCodeCount', options.recoveryCodeCount, 1, 100),
    lockout: resolveLockout(FACTORY, options.lockout),
    rateLimit: resolveRateLimit(FACTORY, options.rateLimit),
    redis: options.redis,
    onVerified: options.onVerified,
    stepUp: resolveStepUp(FACTORY, options.stepUp, STEP_UP_FOR_CHANGES),
    events: options.events ?? createMfaEvents(),
    now: options.now ?? Date.now,
    errors: resolveProblemOptions({ ...options.errors, logger }),
    logger,
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
  };
}
