/**
 * TOTP (RFC 6238) on otplib 13 with Node's crypto: secrets, codes, verification with a step window,
 * the `otpauth://` URI and its QR code. The clock is injectable so tests can stand anywhere in time.
 */
import { NodeCryptoPlugin } from '@otplib/plugin-crypto-node';
import { generate, generateSecret, generateURI, verify, type HashAlgorithm } from 'otplib';
import QRCode from 'qrcode';
import type { TotpAlgorithm, TotpParams } from '../storage/types.js';

/** 20 random bytes: the 160 bits RFC 4226 recommends (32 base32 characters). */
export const TOTP_SECRET_BYTES = 20;
export const DEFAULT_TOTP_ALGORITHM: TotpAlgorithm = 'SHA1';
export const DEFAULT_TOTP_DIGITS = 6;
export const DEFAULT_TOTP_PERIOD = 30;
/** The TOTP periods the kit takes, in seconds: for its own devices and for the entries of a synced vault alike. */
export const MIN_TOTP_PERIOD = 15;
export const MAX_TOTP_PERIOD = 300;
/** Steps accepted either side of the current one. */
export const DEFAULT_TOTP_SKEW = 1;
export const MAX_TOTP_SKEW = 10;

/** A secret as otplib takes it: base32 text, or raw bytes (the RFC 6238 test keys are ASCII). */
export type TotpSecret = string | Uint8Array;

export type TotpCheck =
  | {
      valid: true;
      /** RFC 6238 time step the code belongs to. */
      step: number;
      /** Steps between that and the current one (negative: the authenticator's clock is behind). */
      delta: number;
    }
  | { valid: false; reason: 'mismatch' | 'format' };

export interface Totp {
  /** A fresh base32 secret of 160 bits from the CSPRNG. */
  generateSecret(): string;
  /** The code at `atMs` (default: the clock's now). */
  generate(secret: TotpSecret, params: TotpParams, atMs?: number): Promise<string>;
  /**
   * Checks `code` within ±`params.skew` steps of now. With `afterStep`, steps at or below it are
   * skipped (the device's last accepted step): a replayed code comes back `mismatch`.
   */
  verify(secret: TotpSecret, code: string, params: TotpParams, opts?: { afterStep?: number | null }): Promise<TotpCheck>;
  /** The current RFC 6238 time step for a period. */
  currentStep(period: number): number;
  /** `otpauth://totp/Issuer:account?secret=…&issuer=…`, with `algorithm`, `digits` and `period` when not the Key URI defaults (SHA1, 6, 30), as otplib writes them. */
  uri(args: { issuer: string; account: string; secret: string; params: TotpParams }): string;
  /** The URI as a PNG `data:` URL for authenticator apps to scan. */
  qrCode(uri: string): Promise<string>;
}

export interface TotpOptions {
  /** Milliseconds since the epoch. @default Date.now */
  now?: () => number;
}

const crypto = new NodeCryptoPlugin();

const toOtplibAlgorithm = (a: TotpAlgorithm): HashAlgorithm => a.toLowerCase() as HashAlgorithm;

/** Builds the TOTP helper. */
export function createTotp(options: TotpOptions = {}): Totp {
  const now = options.now ?? Date.now;
  const epochSeconds = (ms: number) => Math.floor(ms / 1000);

  return {
    generateSecret: () => generateSecret({ length: TOTP_SECRET_BYTES, crypto }),

    generate: (secret, params, atMs) =>
      generate({ secret, crypto, algorithm: toOtplibAlgorithm(params.algorithm), digits: params.digits, period: params.period, epoch: epochSeconds(atMs ?? now()) }),

    async verify(secret, code, params, opts = {}) {
      // otplib throws on a token of the wrong length or with non-digits: that is just a wrong code.
      if (code.length !== params.digits || !/^\d+$/.test(code)) return { valid: false, reason: 'format' };
      const epoch = epochSeconds(now());
      const tolerance = params.skew * params.period;
      // otplib refuses an afterTimeStep beyond the window; such a device accepts nothing now anyway.
      const maxStep = Math.floor((epoch + tolerance) / params.period);
      const afterStep = opts.afterStep ?? undefined;
      const result = await verify({
        secret,
        token: code,
        crypto,
        algorithm: toOtplibAlgorithm(params.algorithm),
        digits: params.digits,
        period: params.period,
        epoch,
        epochTolerance: tolerance,
        ...(afterStep !== undefined && { afterTimeStep: Math.min(afterStep, maxStep) }),
      });
      if (!result.valid || !('timeStep' in result)) return { valid: false, reason: 'mismatch' };
      return { valid: true, step: result.timeStep, delta: result.delta };
    },

    currentStep: (period) => Math.floor(epochSeconds(now()) / period),

    uri: ({ issuer, account, secret, params }) =>
      generateURI({ issuer, label: account, secret, algorithm: toOtplibAlgorithm(params.algorithm), digits: params.digits, period: params.period }),

    qrCode: (uri) => QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2, width: 256 }),
  };
}
