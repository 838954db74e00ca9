/** `internalRouter` options: the public shape, its defaults, and the parser that fills a complete config. */
import type { Logger } from '../../lib/logger.js';
import { getDefaultLogger } from '../../lib/logger.js';
import { checkInjected, checkInteger, checkNestedOptions, checkOptionsObject } from '../../lib/options.js';
import { DEFAULT_MAX_PAGE_SIZE } from '../../lib/pagination.js';
import { checkErrorsOption, resolveProblemOptions, type ProblemJsonOptions, type ResolvedProblemOptions } from '../../lib/problem.js';
import { DEFAULT_INTERNAL_KEY_HEADER, parseInternalKeys } from '../../lib/internal-auth.js';
import { DEFAULT_BODY_LIMIT } from '../../lib/json-body.js';
import { tenantFrom, type TenantSource } from '../../lib/tenant.js';
import type { LockoutPolicy, MfaStorage } from '../../storage/types.js';
import type { TrustedDeviceCache } from '../../storage/cache/types.js';
import { TRUSTED_DEVICE_SETTING_NAMES, createTrustedDevices, resolveTrustedDeviceSettings, type TrustedDeviceSettings, type TrustedDevices } from '../../lib/trusted-devices.js';
// [3/7] TOTP verification
import { createMfaEvents, type MfaEvents } from '../../lib/events.js';
import type { KeyRing } from '../../lib/keyring.js';
import {
  resolveLockout,
  resolveRateLimit,
  type LockoutOptions,
  type RateLimitOptions,
  type RateLimitRedisClient,
  type ResolvedRateLimit,
} from '../../lib/verification-throttle.js';

export interface InternalRouterOptions {
  /** Storage, e.g. `knexStorage({ knex })`. Required. */
  storage: MfaStorage;
  /**
   * Accepted internal API keys (comma-separated string or list); several at once for rotation. Required: `undefined`
   * (an unset `INTERNAL_API_KEYS`) type-checks, and fails at set-up saying so.
   */
  internalKeys: string | readonly string[] | undefined;
  /** Header carrying the internal key. @default 'x-internal-api-key' */
  keyHeader?: string;
  /** Where the tenant comes from. @default tenantFrom.header('X-Tenant-ID') */
  tenant?: TenantSource;
  /** Error body format and Problem fields. @default { format: 'problem', service: 'mfa-kit' } */
  errors?: Omit<ProblemJsonOptions, 'logger'> | undefined;
  /** pino-compatible logger. @default pino on stdout */
  logger?: Logger | undefined;
  /** Largest `page_size` accepted on lists. @default 100 */
  maxPageSize?: number;
  /** Largest JSON body accepted. @default '100kb' */
  bodyLimit?: string | number;
  /**
   * Cache for the trusted-device check: `redisCache({ client })` when several instances serve (revocations
   * reach all of them), `memoryCache()` for a single process. @default none: every check reads Postgres
   */
  cache?: TrustedDeviceCache | undefined;
  /**
   * Trusted-device tunables: `maxTtlSeconds` (@default 2592000), `defaultTtlSeconds` (@default 2592000),
   * `negativeTtlSeconds` (@default 10), `positiveTtlSeconds` (@default 3600), `epochRefreshMs` (@default 1000),
   * `cacheRetryMs` (@default 1000). See `TrustedDeviceSettings`.
   */
  trustedDevices?: TrustedDeviceSettings | undefined;
  // [3/7] TOTP verification
  /** Key ring the TOTP secrets are sealed with; `POST /mfa/totp/verify` is served only when given. */
  keyRing?: KeyRing | undefined;
  /** Consecutive-failure lockout, shared with `mfaDevicesRouter` (same counter per tenant + user). @default { maxFailures: 5, cooldownSeconds: 900 } */
  lockout?: LockoutOptions | undefined;
  /** Request-rate limit on the verify route, per tenant + user_id, or `false`. @default { windowMs: 60000, limit: 10 } */
  rateLimit?: RateLimitOptions | false;
  /** Redis client (ioredis) for shared rate-limit counters. @default in-process counters */
  redis?: RateLimitRedisClient | undefined;
  /** Where verification events go (pass `mfaDevicesRouter(...).events` to get them in one place). @default a new EventEmitter */
  events?: MfaEvents | undefined;
  /** The TOTP clock in milliseconds (tests). @default Date.now */
  now?: () => number;
}

/** The complete configuration the router runs on. */
export interface InternalRouterConfig {
  storage: MfaStorage;
  internalKeys: string[];
  keyHeader: string;
  tenant: TenantSource;
  errors: ResolvedProblemOptions;
  logger: Logger;
  maxPageSize: number;
  bodyLimit: string | number;
  /** The trusted-device service the routes of seed 002 call. */
  trustedDevices: TrustedDevices;
  /** Largest `ttl_seconds` accepted on a trust. */
  maxTrustTtlSeconds: number;
  // [3/7] TOTP verification
  keyRing: KeyRing | undefined;
  lockout: LockoutPolicy;
  rateLimit: ResolvedRateLimit | false;
  redis: RateLimitRedisClient | undefined;
  events: MfaEvents;
  now: () => number;
}

const KNOWN = [
  'storage',
  'internalKeys',
  'keyHeader',
  'tenant',
  'errors',
  'logger',
  'maxPageSize',
  'bodyLimit',
  'cache',
  'trustedDevices',
  // [3/7] TOTP verification
  'keyRing',
  'lockout',
  'rateLimit',
  'redis',
  'events',
  'now',
] as const;
const EXAMPLE = '{ storage: knexStorage({ knex }), internalKeys: process.env.INTERNAL_API_KEYS }';

export function parseOptions(options: InternalRouterOptions): InternalRouterConfig {
  checkOptionsObject('internalRouter', options, KNOWN, EXAMPLE);
  checkInjected('internalRouter', 'storage', options.storage, ['ping', 'mfaDevices.list', 'mfaDevices.get', 'mfaDevices.remove', 'trustedDevices.find', 'trustedDevices.upsert', 'users.erase'], 'pass storage: knexStorage({ knex })');
  if (options.internalKeys === undefined) {
    throw new TypeError(`express-mfa-kit: internalRouter() needs 'internalKeys' (is INTERNAL_API_KEYS set?), e.g. internalRouter(${EXAMPLE})`);
  }
  const internalKeys = parseInternalKeys(options.internalKeys);
  checkErrorsOption('internalRouter', options.errors);
  const logger = options.logger ?? getDefaultLogger();
  checkNestedOptions('internalRouter', 'trustedDevices', options.trustedDevices, TRUSTED_DEVICE_SETTING_NAMES, '{ maxTtlSeconds: 2592000 }');
  const trustSettings = resolveTrustedDeviceSettings('internalRouter', options.trustedDevices);
  const trustedDevices = createTrustedDevices({ storage: options.storage, cache: options.cache, logger, ...trustSettings });
  return {
    storage: options.storage,
    internalKeys,
    keyHeader: options.keyHeader ?? DEFAULT_INTERNAL_KEY_HEADER,
    tenant: options.tenant ?? tenantFrom.header(),
    errors: resolveProblemOptions({ ...options.errors, logger }),
    logger,
    maxPageSize: options.maxPageSize === undefined ? DEFAULT_MAX_PAGE_SIZE : checkInteger('internalRouter', 'maxPageSize', options.maxPageSize, 1, 1000),
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    trustedDevices,
    maxTrustTtlSeconds: trustSettings.maxTtlSeconds,
    // [3/7] TOTP verification
    ...parseVerificationOptions(options),
  };
}

// [3/7] TOTP verification
function parseVerificationOptions(options: InternalRouterOptions): Pick<InternalRouterConfig, 'keyRing' | 'lockout' | 'rateLimit' | 'redis' | 'events' | 'now'> {
  const factory = 'internalRouter';
  if (options.keyRing !== undefined) {
    checkInjected(factory, 'keyRing', options.keyRing, ['seal', 'openText'], 'pass keyRing: keyRing(process.env.MFA_ENCRYPTION_KEYS)');
    checkInjected(factory, 'storage', options.storage, ['mfaDevices.recordTotpStep', 'verificationThrottle.charge'], 'pass storage: knexStorage({ knex })');
  }
  if (options.redis !== undefined) checkInjected(factory, 'redis', options.redis, ['call'], 'pass an ioredis client: redis: new Redis(process.env.REDIS_URL)');
  if (options.events !== undefined) checkInjected(factory, 'events', options.events, ['emit', 'on'], 'pass an EventEmitter, e.g. events: createMfaEvents()');
  if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError(`express-mfa-kit: ${factory}() option 'now' must be a function`);
  return {
    keyRing: options.keyRing,
    lockout: resolveLockout(factory, options.lockout),
    rateLimit: resolveRateLimit(factory, options.rateLimit),
    redis: options.redis,
    events: options.events ?? createMfaEvents(),
    now: options.now ?? Date.now,
  };
}
