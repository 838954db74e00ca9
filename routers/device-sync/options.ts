/** `deviceSyncRouter` options: the public shape, its defaults, and the parser that fills a complete config. */
import type { KeyRing } from '../../lib/keyring.js';
import { getDefaultLogger, type Logger } from '../../lib/logger.js';
import { checkInjected, checkInteger, checkOptionsObject } from '../../lib/options.js';
import { DEFAULT_MAX_PAGE_SIZE } from '../../lib/pagination.js';
import { checkErrorsOption, resolveProblemOptions, type ProblemJsonOptions, type ResolvedProblemOptions } from '../../lib/problem.js';
import { resolveStepUp, type StepUpOptions, type StepUpPolicy, type StepUpTexts } from '../../lib/step-up.js';
import type { JwtOptions, UserAuthOptions } from '../../lib/user-auth.js';
import type { MfaStorage } from '../../storage/types.js';

export interface DeviceSyncRouterOptions {
  /** Storage, e.g. `knexStorage({ knex })`; the router uses `storage.syncRecords`. Required. */
  storage: MfaStorage;
  /** Key ring the vaults are sealed with, e.g. `keyRing(process.env.MFA_ENCRYPTION_KEYS)`. Required. */
  keyRing: KeyRing;
  /** Verify Bearer JWTs with passport-jwt. One of `jwt` or `authenticate` is required. */
  jwt?: JwtOptions;
  /** Or the host's own authentication middleware; it must set `req.user` to the token claims. */
  authenticate?: UserAuthOptions['authenticate'];
  /** Claim holding the user id. @default 'sub' */
  userClaim?: string;
  /** Claim holding the tenant id. @default 'tenant_id' */
  tenantClaim?: string;
  /** Header that, when sent, must equal the tenant claim (→ 403 otherwise). @default 'X-Tenant-ID' */
  tenantHeader?: string;
  /** Error body format and Problem fields. @default { format: 'problem', service: 'mfa-kit' } */
  errors?: Omit<ProblemJsonOptions, 'logger'> | undefined;
  /** pino-compatible logger. @default pino on stdout */
  logger?: Logger | undefined;
  /** Largest `page_size` accepted on the list. @default 100 */
  maxPageSize?: number;
  /** Most TOTP entries one vault may hold. @default 500 */
  maxEntries?: number;
  /**
   * Largest vault, in bytes of its JSON text as stored and answered (`totp_devices`): a bigger one is a 400. 500
   * entries of an ordinary authenticator (a 32-character secret, an issuer, an e-mail address as account) take ~60 KB.
   * With `maxRecords` it bounds what one list answer carries and the work it takes: 20 vaults of the default are
   * ~2.6 MB (JSON inside JSON can double that), where `bodyLimit` alone let one user's list reach ~23 MB, whose
   * decryption and serialisation held the event loop for a second. @default 131072 (128 KiB)
   */
  maxVaultBytes?: number;
  /**
   * Most records (devices' vaults) one user may have: a create beyond it is a 409 `DEVICE_LIMIT_REACHED`, updates of
   * existing records still pass. It bounds what one user stores and what one list answer carries (each record is up
   * to `maxVaultBytes`). @default 20
   */
  maxRecords?: number;
  /** Largest JSON body accepted (bytes or a string such as '1mb'). @default '1mb' */
  bodyLimit?: string | number;
  /**
   * `{ amr, acr, maxAgeSeconds }`: every request under the router's mount path (the vault's list, read, push and
   * delete, and any route of the host's there) needs a token that shows a second factor (RFC 9470, as
   * `mfaDevicesRouter`'s `stepUp`): the vault holds the secrets of the user's other accounts. Else 401
   * `STEP_UP_REQUIRED` with the `insufficient_user_authentication` challenge, before the body is read. @default none
   */
  stepUp?: StepUpOptions | undefined;
}

export const DEFAULT_MAX_ENTRIES = 500;
export const DEFAULT_MAX_VAULT_BYTES = 128 * 1024;
export const DEFAULT_MAX_RECORDS = 20;
export const DEFAULT_SYNC_BODY_LIMIT = '1mb';
/** What the vault's step-up refusal says. */
const STEP_UP_FOR_VAULT: StepUpTexts = {
  description: 'A second factor is required for the authenticator vault',
  detail: 'The authenticator vault needs a second factor: pass one and retry with the token your sign-in issues for it.',
};

/** The complete configuration the router runs on. */
export interface DeviceSyncRouterConfig {
  storage: MfaStorage;
  keyRing: KeyRing;
  auth: UserAuthOptions;
  errors: ResolvedProblemOptions;
  logger: Logger;
  maxPageSize: number;
  maxEntries: number;
  maxVaultBytes: number;
  maxRecords: number;
  bodyLimit: string | number;
  stepUp: StepUpPolicy | undefined;
}

const FACTORY = 'deviceSyncRouter';
const KNOWN = ['storage', 'keyRing', 'jwt', 'authenticate', 'userClaim', 'tenantClaim', 'tenantHeader', 'errors', 'logger', 'maxPageSize', 'maxEntries', 'maxVaultBytes', 'maxRecords', 'bodyLimit', 'stepUp'] as const;
const EXAMPLE = '{ storage: knexStorage({ knex }), keyRing: keyRing(process.env.MFA_ENCRYPTION_KEYS), jwt: { secret: process.env.JWT_SECRET } }';
const STORE_METHODS = ['list', 'get', 'findByFingerprint', 'create', 'updateIfToken', 'delete'].map((m) => `syncRecords.${m}`);

export function parseOptions(options: DeviceSyncRouterOptions): DeviceSyncRouterConfig {
  checkOptionsObject(FACTORY, options, KNOWN, EXAMPLE);
  checkInjected(FACTORY, 'storage', options.storage, STORE_METHODS, 'pass storage: knexStorage({ knex }) (with the 0004_sync_records migration applied)');
  checkInjected(FACTORY, 'keyRing', options.keyRing, ['seal', 'open'], 'pass keyRing: keyRing(process.env.MFA_ENCRYPTION_KEYS)');
  if (options.bodyLimit !== undefined && typeof options.bodyLimit !== 'string' && typeof options.bodyLimit !== 'number') {
    throw new TypeError(`express-mfa-kit: ${FACTORY}() option 'bodyLimit' must be a number of bytes or a string such as '1mb'`);
  }
  checkErrorsOption(FACTORY, options.errors);
  const logger = options.logger ?? getDefaultLogger();
  // Only the keys that were given: user-auth tells "jwt or authenticate" apart by presence.
  const auth: UserAuthOptions = {
    ...(options.jwt !== undefined && { jwt: options.jwt }),
    ...(options.authenticate !== undefined && { authenticate: options.authenticate }),
    ...(options.userClaim !== undefined && { userClaim: options.userClaim }),
    ...(options.tenantClaim !== undefined && { tenantClaim: options.tenantClaim }),
    ...(options.tenantHeader !== undefined && { tenantHeader: options.tenantHeader }),
  };
  return {
    storage: options.storage,
    keyRing: options.keyRing,
    auth,
    errors: resolveProblemOptions({ ...options.errors, logger }),
    logger,
    maxPageSize: options.maxPageSize === undefined ? DEFAULT_MAX_PAGE_SIZE : checkInteger(FACTORY, 'maxPageSize', options.maxPageSize, 1, 1000),
    maxEntries: options.maxEntries === undefined ? DEFAULT_MAX_ENTRIES : checkInteger(FACTORY, 'maxEntries', options.maxEntries, 1, 100_000),
    maxVaultBytes: options.maxVaultBytes === undefined ? DEFAULT_MAX_VAULT_BYTES : checkInteger(FACTORY, 'maxVaultBytes', options.maxVaultBytes, 1024, 64 * 1024 * 1024),
    maxRecords: options.maxRecords === undefined ? DEFAULT_MAX_RECORDS : checkInteger(FACTORY, 'maxRecords', options.maxRecords, 1, 10_000),
    bodyLimit: options.bodyLimit ?? DEFAULT_SYNC_BODY_LIMIT,
    stepUp: resolveStepUp(FACTORY, options.stepUp, STEP_UP_FOR_VAULT),
  };
}
