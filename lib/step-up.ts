/**
 * Step-up (RFC 9470): a token that shows only a password must not enrol another authenticator, remove or disable
 * one, or make new recovery codes (mfaDevicesRouter), or whoever learnt the password could take the second factor
 * over; nor read or change the authenticator vault, which holds the secrets of the user's other accounts
 * (deviceSyncRouter). The token shows a second factor through its `amr` (RFC 8176) or `acr` claim, and,
 * when asked, how recent it is through `auth_time`; otherwise the answer is RFC 9470's 401
 * `insufficient_user_authentication`, whose challenge tells the client what to get.
 */
import type { RequestHandler } from 'express';
import { ProblemError } from './errors.js';
import { checkInteger, checkNestedOptions } from './options.js';
import { claimsOf } from './user-auth.js';

export interface StepUpOptions {
  /** `amr` values (RFC 8176) any one of which shows a second factor, e.g. `['mfa', 'otp']`. */
  amr?: readonly string[];
  /** `acr` values any one of which shows one (sent back as the challenge's `acr_values`). */
  acr?: readonly string[];
  /** Seconds since the authentication (`auth_time`) after which it no longer counts (sent back as `max_age`). @default no limit */
  maxAgeSeconds?: number;
}

/** A checked step-up policy, with the challenge its refusals carry. */
export interface StepUpPolicy {
  readonly amr: ReadonlySet<string>;
  readonly acr: ReadonlySet<string>;
  readonly maxAgeSeconds: number | undefined;
  readonly challenge: string;
  /** The refusal's `detail`; the catalogue's when undefined. */
  readonly detail: string | undefined;
}

/** What a router's step-up refusal says: the challenge's `error_description`, and the Problem's `detail`. */
export interface StepUpTexts {
  description: string;
  detail?: string;
}

/** How far ahead of this clock an `auth_time` may be (the issuer's clock may run ahead). */
export const AUTH_TIME_SKEW_SECONDS = 60;

/** Longest `maxAgeSeconds` accepted: 30 days. */
export const MAX_STEP_UP_AGE_SECONDS = 30 * 86_400;

/** An `amr` / `acr` value that can go inside a quoted auth-param (RFC 9110 §5.6.4) as it is: no space, quote or backslash. */
const CLAIM_VALUE = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/;

function checkValues(factory: string, name: string, values: unknown): Set<string> {
  if (values === undefined) return new Set();
  if (!Array.isArray(values) || values.some((v) => typeof v !== 'string' || !CLAIM_VALUE.test(v))) {
    throw new TypeError(`express-mfa-kit: ${factory}() option 'stepUp.${name}' must be a list of claim values without spaces or quotes, e.g. ['mfa', 'otp']`);
  }
  return new Set(values as string[]);
}

/** Checks `stepUp` at set-up; `undefined` when it is not set (no step-up asked). `texts`: what its refusals say. */
export function resolveStepUp(factory: string, options: StepUpOptions | undefined, texts: StepUpTexts): StepUpPolicy | undefined {
  if (options === undefined) return undefined;
  checkNestedOptions(factory, 'stepUp', options, ['amr', 'acr', 'maxAgeSeconds'], "{ amr: ['mfa'], maxAgeSeconds: 900 }");
  const amr = checkValues(factory, 'amr', options.amr);
  const acr = checkValues(factory, 'acr', options.acr);
  if (amr.size === 0 && acr.size === 0) {
    throw new TypeError(`express-mfa-kit: ${factory}() option 'stepUp' needs the 'amr' or 'acr' values your tokens carry after a second factor, e.g. stepUp: { amr: ['mfa'] }`);
  }
  const maxAgeSeconds = options.maxAgeSeconds === undefined ? undefined : checkInteger(factory, 'stepUp.maxAgeSeconds', options.maxAgeSeconds, 1, MAX_STEP_UP_AGE_SECONDS);
  const params = [
    'error="insufficient_user_authentication"',
    `error_description="${texts.description}"`,
    ...(acr.size > 0 ? [`acr_values="${[...acr].join(' ')}"`] : []),
    ...(maxAgeSeconds !== undefined ? [`max_age=${maxAgeSeconds}`] : []),
  ];
  return { amr, acr, maxAgeSeconds, challenge: `Bearer ${params.join(', ')}`, detail: texts.detail };
}

/** Whether the claims show a second factor the policy takes, recent enough at `nowMs`. */
export function showsSecondFactor(claims: Readonly<Record<string, unknown>>, policy: StepUpPolicy, nowMs: number): boolean {
  const { amr, acr } = claims;
  const shown = (typeof acr === 'string' && policy.acr.has(acr)) || (Array.isArray(amr) && amr.some((v) => typeof v === 'string' && policy.amr.has(v)));
  if (!shown) return false;
  if (policy.maxAgeSeconds === undefined) return true;
  const authTime = claims.auth_time;
  if (typeof authTime !== 'number' || !Number.isFinite(authTime)) return false;
  const age = nowMs / 1000 - authTime;
  // An authentication in the future would count as recent for the token's whole life: a minute of skew, no more.
  return age <= policy.maxAgeSeconds && age >= -AUTH_TIME_SKEW_SECONDS;
}

/** The refusal: 401 `STEP_UP_REQUIRED` with RFC 9470's challenge, and the policy's detail. */
export const stepUpRequired = (policy: StepUpPolicy): ProblemError =>
  ProblemError.from('STEP_UP_REQUIRED', { challenge: policy.challenge, ...(policy.detail !== undefined && { detail: policy.detail }) });

/**
 * deviceSyncRouter's step-up: a layer (none without a policy) that lets on only a token showing a second factor the
 * policy takes at `now()`; else `stepUpRequired`. mfaDevicesRouter's (`stepUpGuard`) asks it only once the user has
 * a verified device.
 */
export function requireSecondFactor(policy: StepUpPolicy | undefined, now: () => number = Date.now): RequestHandler[] {
  if (policy === undefined) return [];
  return [
    (req, _res, next) => {
      next(showsSecondFactor(claimsOf(req), policy, now()) ? undefined : stepUpRequired(policy));
    },
  ];
}
