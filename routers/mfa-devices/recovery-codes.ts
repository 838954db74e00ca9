/** `/recovery-codes`: a new set of one-time fallback codes (replacing the old), and how many remain. */
import type { RequestHandler, Router } from 'express';
import { z } from 'zod';
import { ProblemError } from '../../lib/errors.js';
import { parseOrThrow } from '../../lib/validation.js';
import { callerOf, stepUpRefused } from './devices.js';
import type { MfaDevicesRouterConfig } from './options.js';
import type { MfaDevicesService } from './service.js';

/**
 * `stepUp`: the router's step-up check (a new set replaces the codes that are a second factor). `throttle`: the verify
 * and send routes' rate limit, per user: a new set costs a key derivation per code (lib/recovery-codes.ts).
 */
const noMembers = z.strictObject({});

export function mountRecoveryCodes(router: Router, config: MfaDevicesRouterConfig, service: MfaDevicesService, stepUp: RequestHandler[], throttle: RequestHandler): void {
  router.post('/recovery-codes', ...stepUp, throttle, async (req, res) => {
    // No member is defined: one sent (`{"count": 5}`) is refused by name rather than ignored.
    parseOrThrow(noMembers, req.body ?? {});
    const result = await service.regenerateRecoveryCodes(callerOf(req));
    if (result.status === 'NOT_ENROLLED') throw ProblemError.from('MFA_NOT_ENROLLED', 'Recovery codes are the fallback of a second factor: verify a device first.');
    if (result.status === 'STEP_UP_REQUIRED') throw stepUpRefused(config);
    res.status(201).json({ codes: result.codes });
  });

  router.get('/recovery-codes', async (req, res) => {
    res.json({ remaining: await service.recoveryCodesRemaining(callerOf(req)) });
  });
}
