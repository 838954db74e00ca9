/** `POST /verify`: the login second factor, with "remember this device" and the host's `onVerified` hook. */
import { isIP } from 'node:net';
import type { RequestHandler, Router } from 'express';
import { ProblemError } from '../../lib/errors.js';
import { lockedProblem } from '../../lib/verification-throttle.js';
import { parseOrThrow } from '../../lib/validation.js';
import { claimsOf } from '../../lib/user-auth.js';
import { callerOf } from './devices.js';
import type { MfaDevicesRouterConfig, VerifiedContext } from './options.js';
import { loginVerifyBody } from './schemas.js';
import type { MfaDevicesService } from './service.js';

/** Answer of a successful `POST /verify`. */
export interface LoginVerifyResponse {
  verified: true;
  method: VerifiedContext['method'];
  deviceId?: string;
  trustedDevice?: { id: string; trustedUntil: string };
  /** After a recovery code: how many unused ones the user has left (0: time to make new ones). */
  recoveryCodesRemaining?: number;
  [hostField: string]: unknown;
}

export function mountVerify(router: Router, config: MfaDevicesRouterConfig, service: MfaDevicesService, throttle: RequestHandler): void {
  router.post('/verify', throttle, async (req, res) => {
    const body = parseOrThrow(loginVerifyBody, req.body ?? {});
    const caller = callerOf(req);
    const remember = body.rememberDevice === true && body.device ? body.device : undefined;
    const result = await service.verifyLogin(caller, {
      ...(body.code !== undefined && { code: body.code }),
      ...(body.recoveryCode !== undefined && { recoveryCode: body.recoveryCode }),
      ...(body.deviceId !== undefined && { deviceId: body.deviceId }),
      ...(remember && {
        remember: {
          fingerprint: remember.fingerprint,
          deviceName: remember.name,
          deviceType: remember.type,
          browser: remember.browser,
          os: remember.os,
          // The address the second factor was passed from (req.ip honours the app's 'trust proxy').
          ip: req.ip !== undefined && isIP(req.ip) !== 0 ? req.ip : undefined,
        },
      }),
    });
    switch (result.status) {
      case 'OK':
        break;
      case 'INVALID_CODE':
        throw ProblemError.from('INVALID_CODE');
      case 'LOCKED':
        throw lockedProblem(result.retryAfterSeconds);
      case 'NOT_ENROLLED':
        throw ProblemError.from('MFA_NOT_ENROLLED');
      case 'DEVICE_NOT_FOUND':
        throw ProblemError.from('DEVICE_NOT_FOUND');
      case 'DEVICE_NOT_VERIFIED':
        throw ProblemError.from('DEVICE_NOT_VERIFIED');
      case 'DEVICE_DISABLED':
        throw ProblemError.from('DEVICE_DISABLED');
    }

    const trusted = result.trustedDevice && { id: result.trustedDevice.id, trustedUntil: result.trustedDevice.trustedUntil };
    const answer: LoginVerifyResponse = {
      verified: true,
      method: result.method,
      ...(result.deviceId !== undefined && { deviceId: result.deviceId }),
      ...(trusted && { trustedDevice: { id: trusted.id, trustedUntil: trusted.trustedUntil.toISOString() } }),
      ...(result.recoveryCodesRemaining !== undefined && { recoveryCodesRemaining: result.recoveryCodesRemaining }),
    };
    if (config.onVerified) {
      const extra = await config.onVerified({
        req,
        res,
        tenantId: caller.tenantId,
        userId: caller.userId,
        requestId: caller.requestId,
        claims: claimsOf(req),
        method: result.method,
        ...(result.deviceId !== undefined && { deviceId: result.deviceId }),
        ...(trusted && { trustedDevice: trusted }),
        ...(result.recoveryCodesRemaining !== undefined && { recoveryCodesRemaining: result.recoveryCodesRemaining }),
      });
      if (res.headersSent) return; // the hook answered itself
      // The kit's own fields win: a hook cannot make a failure look verified or vice versa.
      if (extra && typeof extra === 'object') for (const [k, v] of Object.entries(extra)) if (!(k in answer)) answer[k] = v;
    }
    res.json(answer);
  });
}
