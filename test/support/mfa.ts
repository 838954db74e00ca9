/** Test helpers for the MFA devices suites: signed tokens, a movable clock, apps on real storage, oathtool codes. */
import { execFileSync } from 'node:child_process';
import express from 'express';
import jwt from 'jsonwebtoken';
import type request from 'supertest';
import { internalRouter, mfaDevicesRouter, silentLogger, type MfaDevicesRouter, type MfaDevicesRouterOptions, type MfaStorage } from '../../index.js';
import { KEY_A, ring } from './fixtures.js';

export const JWT_SECRET = 'test-jwt-secret-0123456789abcdef';

/** A HS256 user token (claims `sub`, `tenant_id` — none when `null`; extra claims and jsonwebtoken options on top). */
export function token(userId: string, tenantId: string | null = 'acme', extra: Record<string, unknown> = {}, options: jwt.SignOptions = {}): string {
  return jwt.sign({ sub: userId, ...(tenantId !== null && { tenant_id: tenantId }), ...extra }, JWT_SECRET, { algorithm: 'HS256', expiresIn: '5m', ...options });
}

/** A clock tests move by hand (milliseconds). */
export class TestClock {
  constructor(public ms: number = Date.now()) {}
  readonly now = (): number => this.ms;
  /** Moves by whole TOTP steps of `period` seconds. */
  step(steps: number, period = 30): void {
    this.ms += steps * period * 1000;
  }
}

/**
 * Waits, when less than `marginMs` is left of the current 30 s step, for the next one: a code of the previous step made
 * after it is still within a skew of one step when the server checks it, though the step ends in between (made at
 * 29.999 s of a step and checked at 30.001 s, it would be two steps back: a 400 by the clock, not by the code).
 */
export async function clearOfStepEdge(marginMs = 2000): Promise<void> {
  const left = 30_000 - (Date.now() % 30_000);
  if (left < marginMs) await new Promise((resolve) => setTimeout(resolve, left + 50));
}

/** The code `oathtool` (Debian, an independent implementation) gives for a base32 secret at `atMs`. */
export function oathtool(secret: string, atMs: number, opts: { algorithm?: 'SHA1' | 'SHA256' | 'SHA512'; digits?: number; period?: number } = {}): string {
  const alg = (opts.algorithm ?? 'SHA1').toLowerCase();
  const args = [`--totp=${alg}`, '-b', `--digits=${opts.digits ?? 6}`, `--time-step-size=${opts.period ?? 30}s`, `--now=@${Math.floor(atMs / 1000)}`, secret];
  return execFileSync('oathtool', args, { encoding: 'utf8' }).trim();
}

export interface MfaApp {
  app: express.Express;
  router: MfaDevicesRouter;
}

/** An app with `mfaDevicesRouter` at /auth/mfa and `internalRouter` (with TOTP verification, same cache) at /internal on `storage`. */
export function mfaApp(storage: MfaStorage, options: Partial<MfaDevicesRouterOptions> = {}): MfaApp {
  const app = express();
  const router = mfaDevicesRouter({ storage, keyRing: ring, jwt: { secret: JWT_SECRET }, logger: silentLogger, ...options });
  app.use('/auth/mfa', router);
  // The internal router shares the clock, lockout, rate limit and events of the user router.
  app.use(
    '/internal',
    internalRouter({
      storage,
      internalKeys: [KEY_A],
      logger: silentLogger,
      keyRing: ring,
      events: router.events,
      ...(options.now !== undefined && { now: options.now }),
      ...(options.lockout !== undefined && { lockout: options.lockout }),
      ...(options.rateLimit !== undefined && { rateLimit: options.rateLimit }),
      ...(options.redis !== undefined && { redis: options.redis }),
      ...(options.cache !== undefined && { cache: options.cache }),
    }),
  );
  return { app, router };
}

/** Sets the bearer token on a supertest request. */
export const as = (req: request.Test, userId: string, tenantId = 'acme'): request.Test => req.set('Authorization', `Bearer ${token(userId, tenantId)}`);
