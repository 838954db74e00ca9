/** express-mfa-kit: mountable Express routers and middleware for multi-factor device management. */
export { internalRouter, type InternalRouterOptions } from './routers/internal/index.js';
export { deviceSyncRouter, type DeviceSyncRouterOptions, type DeviceSyncResponse, type DeviceSyncListItem } from './routers/device-sync/index.js';

// [3/7] MFA devices
export {
  mfaDevicesRouter,
  type MfaDevicesRouter,
  type MfaDevicesRouterOptions,
  type MfaDeviceDto,
  type MfaUser,
  type TotpOptions,
  type VerifiedContext,
  type LoginVerifyResponse,
  type UserTrustedDeviceDto,
} from './routers/mfa-devices/index.js';
export { createTotp, type Totp, type TotpCheck, type TotpSecret } from './lib/totp.js';
export { createMfaEvents, type MfaEvents, type MfaEventMap, type MfaEventName } from './lib/events.js';
export type { LockoutOptions, RateLimitOptions, RateLimitRedisClient } from './lib/verification-throttle.js';

export { ERROR_CATALOGUE, ProblemError, isProblemError, isStorageUnavailable, type ErrorKey, type ErrorSpec, type FieldViolation, type ProblemInit } from './lib/errors.js';
export { problemJson, problemClientError, problemConnectRefusal, notFound, buildProblem, type ErrorFormat, type ProblemClientErrorOptions, type ProblemDetails, type ProblemFormatter, type ProblemJsonOptions } from './lib/problem.js';
export { requestId, type RequestIdOptions } from './lib/request-id.js';
export { noStore } from './lib/no-store.js';
export { tenant, tenantFrom, type TenantExtractor, type TenantOptions, type TenantSource } from './lib/tenant.js';
export { internalAuth, type InternalAuthOptions } from './lib/internal-auth.js';
export type { StepUpOptions } from './lib/step-up.js';
export type { JwtOptions } from './lib/user-auth.js';
export { bearerToken } from './lib/user-auth.js';
export { listEnvelope, type ListEnvelope, type PageInfo, type PageRequest } from './lib/pagination.js';
export { keyRing, generateKey, aad, type KeyRing, type Sealed } from './lib/keyring.js';
export { jsonBody, type JsonBodyOptions } from './lib/json-body.js';
export { silentLogger, type Logger } from './lib/logger.js';

// [3/7] recovery codes, sms/email codes, key rotation
export { createRecoveryCodes, normalizeRecoveryCode, DEFAULT_RECOVERY_CODE_COUNT, type RecoveryCodes, type RecoveryCodesOptions } from './lib/recovery-codes.js';
export { createOtpChannels, demoSender, maskDestination, normalizeDestination, DEFAULT_CODE_TTL_SECONDS, DEFAULT_MAX_ATTEMPTS, type MfaCodeMessage, type MfaCodeSender, type OtpChannels, type OtpChannelsOptions, type OtpCodeTarget } from './lib/otp-channels.js';
export { reencrypt, unreadableKeyIds, mismatchedKeyIds, SEALED_TABLES, DEFAULT_REENCRYPT_BATCH_SIZE, type MismatchedKeyId, type ReencryptOptions, type ReencryptResult, type SealedTable, type UnreadableKeyId } from './lib/reencrypt.js';
export type { MfaRequestContext } from './lib/context.js';

// [2/7] trusted devices
export {
  createTrustedDevices,
  DEFAULT_TRUSTED_DEVICE_TTL_SECONDS,
  DEFAULT_MAX_TRUSTED_DEVICE_TTL_SECONDS,
  type TrustInput,
  type TrustCheck,
  type TrustedDevices,
  type TrustedDevicesOptions,
  type TrustedDeviceSettings,
  type TrustedDeviceEvents,
  type TrustedDeviceChange,
} from './lib/trusted-devices.js';
export type { TrustedDeviceCache, TrustScope, CachedTrust } from './storage/cache/types.js';
export { FILL_MAX_AGE_MS, newGenerationHoldMs } from './storage/cache/types.js';
export { redisCache, REDIS_CACHE_CLIENT_OPTIONS, type RedisCacheOptions, type RedisCacheClient } from './storage/cache/redis.js';
export { memoryCache, type MemoryCacheOptions } from './storage/cache/memory.js';
export { toTrustedDeviceResponse, type TrustedDeviceResponse } from './routers/internal/trusted-devices.js';

export { knexStorage, migrate, rollbackAll, type KnexStorage, type KnexStorageOptions } from './storage/knex/index.js';
export { cleanupExpired, CLEANUP_TABLES, DEFAULT_CLEANUP_BATCH_SIZE, type CleanupOptions, type CleanupResult } from './storage/knex/cleanup.js';
export type * from './storage/types.js';
export { openApiDocument, OPERATIONS, schemaRegistry, type OpenApiOptions } from './lib/openapi.js';
