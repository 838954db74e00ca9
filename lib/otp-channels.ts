/** sms and email second factors: destination checks and masking, and single-use 6-digit codes sent through an injected sender. */
import { createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { ProblemError } from './errors.js';
import { getDefaultLogger, type Logger } from './logger.js';
import type { KeyRing } from './keyring.js';
import { checkInjected, checkInteger, isDevelopment } from './options.js';
import type { MfaStorage, OtpPurpose } from '../storage/types.js';

export type { OtpPurpose } from '../storage/types.js';

/** A one-time code to deliver: what `MfaCodeSender.send` receives. */
export interface MfaCodeMessage {
  tenantId: string;
  userId: string;
  method: 'sms' | 'email';
  /** The normalised phone number (E.164) or email address. */
  destination: string;
  /** The 6-digit code. */
  code: string;
  purpose: OtpPurpose;
}

/**
 * Delivers codes (your SMS gateway, your mailer). A throw or rejection means "not sent": the
 * caller gets a 503 `CODE_DELIVERY_FAILED` and may ask for a new code.
 */
export interface MfaCodeSender {
  send(message: MfaCodeMessage): Promise<void> | void;
}

/** Identifies a pending code: one per device and purpose. */
export interface OtpCodeTarget {
  tenantId: string;
  userId: string;
  deviceId: string;
  purpose: OtpPurpose;
}

/** The sms/email code service (see `createOtpChannels`). */
export interface OtpChannels {
  /** The canonical form of a phone number (E.164) or email address; throws a 400 `VALIDATION_FAILED` Problem naming `phoneNumber` or `email`. */
  normalizeDestination(method: 'sms' | 'email', value: string): string;
  /** What a user may be shown of a destination: `+44••••••789`, `a•••@example.com`. */
  mask(method: 'sms' | 'email', destination: string): string;
  /** Makes a new code for the device (replacing its pending one for this purpose), stores its salted hash and sends it. */
  issue(args: OtpCodeTarget & { method: 'sms' | 'email'; destination: string }): Promise<void>;
  /** `true` once for the right, unexpired code of this device, user and purpose, within the attempt limit; the code is then gone. */
  verify(args: OtpCodeTarget & { code: string }): Promise<boolean>;
}

/**
 * What `attempt` found: the right code (`ok`, now used up), one compared and wrong (`wrong`: a malformed one too), or no
 * code to compare with (`none`: none pending, expired, out of attempts, or used up by a racing request): no guess.
 */
export type OtpAttempt = 'ok' | 'wrong' | 'none';

/** `createOtpChannels()`'s channels: `verify`, and `attempt`, which tells a wrong code from none to compare with. */
export interface OtpChannelsWithAttempt extends OtpChannels {
  attempt(args: OtpCodeTarget & { code: string }): Promise<OtpAttempt>;
}

/** Options of `createOtpChannels()`. */
export interface OtpChannelsOptions {
  /** Storage with `otpCodes` (e.g. `knexStorage({ knex })`). */
  storage: MfaStorage;
  /** Delivers the codes. */
  sender: MfaCodeSender;
  /**
   * The key ring of the secrets at rest (`mfaDevicesRouter` passes its own). Codes are then stored as a hash keyed
   * with a key derived from it (`KeyRing.mac`), so a read of the database alone does not reveal a pending code.
   * Without it (or with a ring that has no `mac`), the hash is keyed with the row's own random salt only, and 6
   * digits are found from a stolen row by trying them all.
   */
  keyRing?: KeyRing;
  /**
   * Seconds a code stays valid.
   * @default 600
   */
  codeTtlSeconds?: number;
  /**
   * Guesses allowed per code (right or wrong); after that the code is dead and a new one must be issued.
   * @default 5
   */
  maxAttempts?: number;
  /**
   * Where delivery failures and sent-code notices go (masked destination, never the code).
   * @default pino at LOG_LEVEL on stdout
   */
  logger?: Logger;
  /**
   * The clock, in milliseconds since the epoch (tests inject one).
   * @default Date.now
   */
  now?: () => number;
}

/** Default lifetime of a code: 10 minutes. */
export const DEFAULT_CODE_TTL_SECONDS = 600;
/** Default guesses per code. */
export const DEFAULT_MAX_ATTEMPTS = 5;
/** The guesses per code one may set: from 1 to this. */
export const MAX_MAX_ATTEMPTS = 100;
const CODE_DIGITS = 6;
const SALT_BYTES = 16;
const BULLETS = '••••••';

const E164 = /^\+[1-9]\d{6,14}$/;
// RFC 5322 atext (plus letters, marks and digits of any script for internationalised addresses),
// dot-separated; no quoted strings, comments or IP literals: nobody enrols those as a second factor.
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\p{L}\p{M}\p{N}-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\p{L}\p{M}\p{N}-]+)*$/u;
const DOMAIN_LABEL = /^[\p{L}\p{M}\p{N}](?:[\p{L}\p{M}\p{N}-]{0,61}[\p{L}\p{M}\p{N}])?$/u;
const TOP_LEVEL = /^(?:\p{L}[\p{L}\p{M}]+|xn--[a-z0-9-]+)$/u;

function normalizePhone(value: unknown): string {
  if (typeof value !== 'string') throw ProblemError.invalid('phoneNumber', value === undefined ? 'required' : 'type', value === undefined ? 'phoneNumber is required' : 'phoneNumber must be a string');
  if (value.length > 64) throw ProblemError.invalid('phoneNumber', 'format', 'phoneNumber must be an international number in E.164 form, e.g. +447700900123');
  // Separators people type or paste; anything else (letters, a leading 00, extensions) is refused rather than guessed.
  const compact = value.replace(/[\s\-\u2010-\u2015().]/g, '');
  if (compact === '') throw ProblemError.invalid('phoneNumber', 'required', 'phoneNumber is required');
  if (!E164.test(compact)) throw ProblemError.invalid('phoneNumber', 'format', 'phoneNumber must be an international number in E.164 form, e.g. +447700900123');
  return compact;
}

function normalizeEmail(value: unknown): string {
  if (typeof value !== 'string') throw ProblemError.invalid('email', value === undefined ? 'required' : 'type', value === undefined ? 'email is required' : 'email must be a string');
  const trimmed = value.trim();
  if (trimmed === '') throw ProblemError.invalid('email', 'required', 'email is required');
  const bad = () => ProblemError.invalid('email', 'format', 'email must be an address like name@example.com');
  if (trimmed.length > 254) throw bad();
  const at = trimmed.lastIndexOf('@');
  if (at <= 0 || at > 64) throw bad();
  const local = trimmed.slice(0, at);
  // The local part is case-sensitive in principle; only the domain is case-insensitive.
  const domain = trimmed.slice(at + 1).toLowerCase();
  if (!LOCAL_PART.test(local) || domain.length > 253) throw bad();
  const labels = domain.split('.');
  if (labels.length < 2 || !labels.every((l) => DOMAIN_LABEL.test(l)) || !TOP_LEVEL.test(labels[labels.length - 1]!)) throw bad();
  return `${local}@${domain}`;
}

/** The canonical destination (see `OtpChannels.normalizeDestination`). */
export function normalizeDestination(method: 'sms' | 'email', value: string): string {
  return method === 'sms' ? normalizePhone(value) : normalizeEmail(value);
}

/**
 * A destination as it may be shown (see `OtpChannels.mask`). Always the same number of bullets,
 * so the mask does not tell the length either. Never throws.
 */
export function maskDestination(method: 'sms' | 'email', destination: string): string {
  if (method === 'email') {
    const at = destination.lastIndexOf('@');
    if (at < 0) return BULLETS;
    const first = Array.from(destination.slice(0, at))[0];
    // A one-character local part would be shown whole; hide it instead.
    return `${at > 1 && first ? first : ''}•••${destination.slice(at)}`;
  }
  const digits = destination.replace(/\D/g, '');
  if (digits.length < 7) return BULLETS;
  const [head, tail] = digits.length >= 10 ? [2, 3] : [1, 2];
  return `+${digits.slice(0, head)}${BULLETS}${digits.slice(-tail)}`;
}

/**
 * The stored form of a code. 6 digits are only ~20 bits: no hash of them alone protects a stolen row, so with a key
 * ring the hash is keyed with a key derived from it (a pepper, `KeyRing.mac`): a database read without the keys
 * reveals no code. The salt then says which ring key (`v2:<kid>:` and 16 random bytes), so codes issued before a
 * rotation still pass. Without a ring (`v1`), the random salt is the HMAC key and only the expiry and the attempt
 * limit protect the code. Both bind tenant, user, device and purpose: a hash copied to another row never matches.
 */
const PEPPER_PURPOSE = 'otp-code';
const V2 = 'v2:';

function codeMessage(version: 'v1' | 'v2', target: OtpCodeTarget, code: string, salt?: Buffer): string {
  return JSON.stringify([`express-mfa-kit/otp/${version}`, ...(salt ? [salt.toString('base64')] : []), target.tenantId, target.userId, target.deviceId, target.purpose, code]);
}

/** A new salt and the code's hash under it: keyed with the ring's active key when it can, else with the salt. */
function hashNew(keyRing: KeyRing | undefined, target: OtpCodeTarget, code: string): { salt: Buffer; codeHash: Buffer } {
  const random = randomBytes(SALT_BYTES);
  if (keyRing?.mac) {
    const salt = Buffer.concat([Buffer.from(`${V2}${keyRing.activeKeyId}:`, 'latin1'), random]);
    const keyed = keyRing.mac(PEPPER_PURPOSE, codeMessage('v2', target, code, salt), keyRing.activeKeyId);
    if (keyed) return { salt, codeHash: keyed.mac };
  }
  return { salt: random, codeHash: createHmac('sha256', random).update(codeMessage('v1', target, code)).digest() };
}

/** The hash of `code` under a stored salt, as `hashNew` made it; `undefined` when the salt names a key no longer in the ring. */
function hashStored(keyRing: KeyRing | undefined, salt: Buffer, target: OtpCodeTarget, code: string): Buffer | undefined {
  if (salt.length > V2.length && salt.toString('latin1', 0, V2.length) === V2) {
    const end = salt.indexOf(':', V2.length, 'latin1');
    if (end < 0 || !keyRing?.mac) return undefined;
    return keyRing.mac(PEPPER_PURPOSE, codeMessage('v2', target, code, salt), salt.toString('latin1', V2.length, end))?.mac;
  }
  return createHmac('sha256', salt).update(codeMessage('v1', target, code)).digest();
}

/** sms/email codes on the given storage and sender. Throws a TypeError at set-up for a missing part or a bad number. */
export function createOtpChannels(options: OtpChannelsOptions): OtpChannelsWithAttempt {
  const factory = 'createOtpChannels';
  checkInjected(factory, 'storage', options?.storage, ['otpCodes.put', 'otpCodes.beginAttempt', 'otpCodes.consume'], 'pass knexStorage({ knex }) or a storage implementing OtpCodeStore as storage.otpCodes');
  checkInjected(factory, 'sender', options.sender, ['send'], 'pass { send({ tenantId, userId, method, destination, code, purpose }) { … } } that delivers the code (demoSender(logger) in development only)');
  const ttlMs = checkInteger(factory, 'codeTtlSeconds', options.codeTtlSeconds ?? DEFAULT_CODE_TTL_SECONDS, 30, 86_400) * 1000;
  const maxAttempts = checkInteger(factory, 'maxAttempts', options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS, 1, MAX_MAX_ATTEMPTS);
  if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError(`express-mfa-kit: ${factory}() option 'now' must be a function returning milliseconds, like Date.now`);
  const now = options.now ?? Date.now;
  const logger = options.logger ?? getDefaultLogger();
  const store = options.storage.otpCodes;
  const sender = options.sender;
  const keyRing = options.keyRing;

  const attempt = async (args: OtpCodeTarget & { code: string }): Promise<OtpAttempt> => {
    const target: OtpCodeTarget = { tenantId: args.tenantId, userId: args.userId, deviceId: args.deviceId, purpose: args.purpose };
    const code = typeof args.code === 'string' && args.code.length <= 32 ? args.code.replace(/[\s-]/g, '') : '';
    // Something that cannot be a code is refused without using up one of the real code's attempts.
    if (!/^[0-9]{6}$/.test(code)) return 'wrong';
    const pending = await store.beginAttempt(target, new Date(now()), maxAttempts);
    if (!pending) return 'none';
    const candidate = hashStored(keyRing, pending.salt, target, code);
    if (!candidate || candidate.length !== pending.codeHash.length || !timingSafeEqual(candidate, pending.codeHash)) return 'wrong';
    // Not consumed: a racing request with the same code used it up first.
    return (await store.consume(target, pending.codeHash)) ? 'ok' : 'none';
  };
  return {
    normalizeDestination,
    mask: maskDestination,

    async issue(args) {
      const target: OtpCodeTarget = { tenantId: args.tenantId, userId: args.userId, deviceId: args.deviceId, purpose: args.purpose };
      const code = randomInt(0, 10 ** CODE_DIGITS).toString().padStart(CODE_DIGITS, '0');
      // Stored before sending, so the code works the moment it arrives.
      const stored = await store.put({ ...target, ...hashNew(keyRing, target, code), expiresAt: new Date(now() + ttlMs) });
      if (!stored) throw ProblemError.from('DEVICE_NOT_FOUND');
      const logged = { tenant_id: args.tenantId, user_id: args.userId, device_id: args.deviceId, method: args.method, purpose: args.purpose, destination: maskDestination(args.method, args.destination) };
      try {
        await sender.send({ tenantId: args.tenantId, userId: args.userId, method: args.method, destination: args.destination, code, purpose: args.purpose });
      } catch (err) {
        // Only the error's name and code: a gateway's message may well quote the number or the code.
        const e = err as { name?: unknown; code?: unknown } | null;
        logger.error({ ...logged, err_name: typeof e?.name === 'string' ? e.name : typeof err, err_code: typeof e?.code === 'string' || typeof e?.code === 'number' ? e.code : undefined }, 'mfa code could not be sent');
        throw ProblemError.from('CODE_DELIVERY_FAILED', { retryAfter: 30 });
      }
      logger.info(logged, 'mfa code sent');
    },

    attempt,
    verify: async (args) => (await attempt(args)) === 'ok',
  };
}

/**
 * A sender for the example server and local development: it sends nothing. It writes the code to
 * stdout, prefixed `[demo sender]`, outside the JSON log (so log shipping never carries it), and logs
 * through `logger` only the masked destination and where the code went. Outside development (`NODE_ENV` other
 * than unset, `development` or `test`: `production`, `staging`…) it withholds the code and warns. Production must
 * inject a real `MfaCodeSender` (SMS gateway, mailer).
 */
export function demoSender(logger: Logger): MfaCodeSender {
  return {
    send(message) {
      const masked = maskDestination(message.method, message.destination);
      // Printed in development only (`isDevelopment`), as the example server generates secrets only there.
      const fields = { tenant_id: message.tenantId, user_id: message.userId, method: message.method, purpose: message.purpose, destination: masked };
      if (!isDevelopment()) {
        logger.warn(fields, 'demo sender outside development (NODE_ENV is not unset, development or test): the code was NOT delivered anywhere; inject a real sender');
        return;
      }
      process.stdout.write(`[demo sender] ${message.purpose} code for ${message.method} ${masked} (tenant ${message.tenantId}, user ${message.userId}): ${message.code}  (development only: nothing was sent)\n`);
      logger.info(fields, 'demo sender: code written to stdout with the [demo sender] prefix, not sent');
    },
  };
}
