/** `/recovery-codes`: a new set of one-time fallback codes (replacing the old), and how many remain. */
import type { Router } from 'express';
import { callerOf } from './devices.js';
import type { MfaDevicesService } from './service.js';

export function mountRecoveryCodes(router: Router, service: MfaDevicesService): void {
  router.post('/recovery-codes', async (req, res) => {
    const codes = await service.regenerateRecoveryCodes(callerOf(req));
    res.status(201).json({ codes });
  });

  router.get('/recovery-codes', async (req, res) => {
    res.json({ remaining: await service.recoveryCodesRemaining(callerOf(req)) });
  });
}
