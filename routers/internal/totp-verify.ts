/** `POST /mfa/totp/verify`: an identity service checks a user's TOTP code — accepted once, throttled and locked like the user routes. */
import type { Router } from 'express';
import { z } from 'zod';
import { contextOf } from '../../lib/context.js';
import { ProblemError } from '../../lib/errors.js';
import { emitSafely } from '../../lib/events.js';
import type { KeyRing } from '../../lib/keyring.js';
import { acceptTotpCodeOnAny, recordTotpStepOf } from '../../lib/second-factor.js';
import { createTotp } from '../../lib/totp.js';
import { isUserId, otpCode, parseOrThrow, userIdSchema } from '../../lib/validation.js';
import { Lockout, lockedProblem, verifyRateLimiter } from '../../lib/verification-throttle.js';
import type { InternalRouterConfig } from './options.js';

/** Answer of a successful verification. */
export interface TotpVerifyResponse {
  valid: true;
  device_id: string;
}

/** TOTP devices a user may have (the device limit keeps it far lower). */
const DEVICE_CAP = 100;

// Strict, as every other write body but the vault push: a member this route does not read (`device_id`, hoping to
// pin the device) is a 400 naming it, not silently a check against every device of the user.
const body = z.strictObject({ user_id: userIdSchema, code: otpCode });

export function mountTotpVerify(router: Router, config: InternalRouterConfig & { keyRing: KeyRing }): void {
  const totp = createTotp({ now: config.now });
  const lockout = new Lockout(config.storage.verificationThrottle, config.lockout, config.events, config.logger);
  const deps = { keyRing: config.keyRing, totp, events: config.events, logger: config.logger };
  const throttle = verifyRateLimiter({
    config: config.rateLimit,
    redis: config.redis,
    scope: 'internal',
    // Per user, not per caller: one identity service speaks for every user.
    key: (req) => {
      const userId: unknown = (req.body as { user_id?: unknown } | undefined)?.user_id;
      return JSON.stringify([contextOf(req).tenantId, typeof userId === 'string' ? userId : '']);
    },
    lockout: {
      store: config.storage.verificationThrottle,
      // A user id the route would refuse (400) is nobody's lock.
      who: (req) => {
        const userId: unknown = (req.body as { user_id?: unknown } | undefined)?.user_id;
        const { tenantId } = contextOf(req);
        return tenantId !== undefined && typeof userId === 'string' && isUserId(userId) ? { tenantId, userId } : undefined;
      },
    },
    logger: config.logger,
  });

  router.post('/mfa/totp/verify', throttle, async (req, res) => {
    const input = parseOrThrow(body, req.body ?? {});
    const ctx = contextOf(req);
    const caller = { tenantId: ctx.tenantId!, userId: input.user_id, requestId: ctx.requestId };
    const { items } = await config.storage.mfaDevices.list(caller.tenantId, caller.userId, { method: 'totp' }, { limit: DEVICE_CAP, offset: 0 });
    const devices = items.filter((d) => d.verified && d.enabled);
    if (devices.length === 0) throw ProblemError.from('MFA_NOT_ENROLLED', 'The user has no verified, enabled TOTP device.');

    const charged = await lockout.charge(caller, 'internal');
    if (charged.status === 'LOCKED') throw lockedProblem(charged.retryAfterSeconds);
    const result = await acceptTotpCodeOnAny(deps, caller, 'internal', devices, input.code, recordTotpStepOf(config.storage.mfaDevices, caller));
    if (result.status === 'OK') {
      await lockout.succeeded(caller);
      emitSafely(config.events, config.logger, 'mfa.succeeded', { ...caller, at: new Date(), method: 'totp', deviceId: result.device.id, via: 'internal' });
      const answer: TotpVerifyResponse = { valid: true, device_id: result.device.id };
      res.json(answer);
      return;
    }
    if (result.status === 'MISMATCH' && result.unreadable) {
      if (result.compared === 0) await lockout.notCompared(caller);
      throw result.unreadable;
    }
    await lockout.failed(caller, 'internal', result.status === 'REPLAY' ? 'replay' : 'invalid_code');
    throw ProblemError.from('INVALID_CODE');
  });
}
