/** `internalRouter` options: the public shape, its defaults, and the parser that fills a complete config. */
import type { Logger } from '../../lib/logger.js';
import { getDefaultLogger } from '../../lib/logger.js';
import { checkInjected, checkInteger, checkOptionsObject } from '../../lib/options.js';
import { DEFAULT_MAX_PAGE_SIZE } from '../../lib/pagination.js';
import { resolveProblemOptions, type ProblemJsonOptions } from '../../lib/problem.js';
import { DEFAULT_INTERNAL_KEY_HEADER, parseInternalKeys } from '../../lib/internal-auth.js';
import { DEFAULT_BODY_LIMIT } from '../../lib/json-body.js';
import { tenantFrom, type TenantExtractor } from '../../lib/tenant.js';
import type { MfaStorage } from '../../storage/types.js';
import type { TrustedDeviceCache } from '../../storage/cache/types.js';
import { TRUSTED_DEVICE_SETTING_NAMES, createTrustedDevices, resolveTrustedDeviceSettings, type TrustedDeviceSettings, type TrustedDevices } from '../../lib/trusted-devices.js';

export interface InternalRouterOptions {
  /** Storage, e.g. `knexStorage({ knex })`. Required. */
  storage: MfaStorage;
  /** Accepted internal API keys (comma-separated string or list); several at once for rotation. Required. */
  internalKeys: string | readonly string[];
  /** Header carrying the internal key. @default 'x-internal-api-key' */
  keyHeader?: string;
  /** Where the tenant comes from. @default tenantFrom.header('X-Tenant-ID') */
  tenant?: TenantExtractor;
  /** Error body format and Problem fields. @default { format: 'problem', service: 'mfa-kit' } */
  errors?: Omit<ProblemJsonOptions, 'logger'>;
  /** pino-compatible logger. @default pino on stdout */
  logger?: Logger;
  /** Largest `page_size` accepted on lists. @default 100 */
  maxPageSize?: number;
  /** Largest JSON body accepted. @default '100kb' */
  bodyLimit?: string | number;
  /**
   * Cache for the trusted-device check: `redisCache({ client })` when several instances serve (revocations
   * reach all of them), `memoryCache()` for a single process. @default none: every check reads Postgres
   */
  cache?: TrustedDeviceCache;
  /**
   * Trusted-device tunables: `maxTtlSeconds` (@default 2592000), `defaultTtlSeconds` (@default 2592000),
   * `negativeTtlSeconds` (@default 10), `positiveTtlSeconds` (@default 3600), `epochRefreshMs` (@default 1000),
   * `cacheRetryMs` (@default 1000). See `TrustedDeviceSettings`.
   */
  trustedDevices?: TrustedDeviceSettings;
}

/** The complete configuration the router runs on. */
export interface InternalRouterConfig {
  storage: MfaStorage;
  internalKeys: string[];
  keyHeader: string;
  tenant: TenantExtractor;
  errors: Required<ProblemJsonOptions>;
  logger: Logger;
  maxPageSize: number;
  bodyLimit: string | number;
  /** The trusted-device service the routes of seed 002 call. */
  trustedDevices: TrustedDevices;
  /** Largest `ttl_seconds` accepted on a trust. */
  maxTrustTtlSeconds: number;
}

const KNOWN = ['storage', 'internalKeys', 'keyHeader', 'tenant', 'errors', 'logger', 'maxPageSize', 'bodyLimit', 'cache', 'trustedDevices'] as const;
const EXAMPLE = '{ storage: knexStorage({ knex }), internalKeys: process.env.INTERNAL_API_KEYS }';

export function parseOptions(options: InternalRouterOptions): InternalRouterConfig {
  checkOptionsObject('internalRouter', options, KNOWN, EXAMPLE);
  checkInjected('internalRouter', 'storage', options.storage, ['ping', 'mfaDevices.list', 'trustedDevices.find', 'trustedDevices.upsert'], 'pass storage: knexStorage({ knex })');
  if (options.internalKeys === undefined) {
    throw new TypeError(`express-mfa-kit: internalRouter() needs 'internalKeys', e.g. internalRouter(${EXAMPLE})`);
  }
  const internalKeys = parseInternalKeys(options.internalKeys);
  const logger = options.logger ?? getDefaultLogger();
  if (options.trustedDevices !== undefined) checkOptionsObject('internalRouter trustedDevices', options.trustedDevices, TRUSTED_DEVICE_SETTING_NAMES, '{ maxTtlSeconds: 2592000 }');
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
  };
}
