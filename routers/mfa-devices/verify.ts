/** `POST /verify`: the login second factor, with "remember this device" and the host's `onVerified` hook. */
import type { RequestHandler, Router } from 'express';
import { ProblemError } from '../../lib/errors.js';
import { lockedProblem } from '../../lib/verification-throttle.js';
import { parseOrThrow } from '../../lib/validation.js';
import { callerOf, claimsOf } from './devices.js';
import type { MfaDevicesRouterConfig, VerifiedContext } from './options.js';
import { loginVerifyBody } from './schemas.js';
import type { MfaDevicesService } from './service.js';

/** Answer of a successful `POST /verify`. */
export interface LoginVerifyResponse {
  verified: true;
  method: VerifiedContext['method'];
  deviceId?: string;
  trustedDevice?: { id: string; trustedUntil: string };
  [hostField: string]: unknown;
}

export function mountVerify(router: Router, config: MfaDevicesRouterConfig, service: MfaDevicesService, throttle: RequestHandler): void {
  router.post('/verify', throttle, async (req, res) => {
    const body = parseOrThrow(loginVerifyBody, req.body ?? {});
    const caller = callerOf(req);
    const result = await service.verifyLogin(caller, {
      ...(body.code !== undefined && { code: body.code }),
      ...(body.recoveryCode !== undefined && { recoveryCode: body.recoveryCode }),
      ...(body.deviceId !== undefined && { deviceId: body.deviceId }),
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

    const answer: LoginVerifyResponse = { verified: true, method: result.method, ...(result.deviceId !== undefined && { deviceId: result.deviceId }) };
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
      });
      if (res.headersSent) return; // the hook answered itself
      // The kit's own fields win: a hook cannot make a failure look verified or vice versa.
      if (extra && typeof extra === 'object') for (const [k, v] of Object.entries(extra)) if (!(k in answer)) answer[k] = v;
    }
    res.json(answer);
  });
}
