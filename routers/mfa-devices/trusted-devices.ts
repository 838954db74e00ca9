/** `/trusted-devices`: the caller's own remembered browsers and devices; revoke one or all. */
import type { Router } from 'express';
import { ProblemError } from '../../lib/errors.js';
import { refuseEmptyDeviceId } from '../../lib/trusted-devices.js';
import { URL_CREDENTIALS } from '../../lib/user-auth.js';
import { refuseDeleteExtras } from '../../lib/validation.js';
import type { TrustedDevice } from '../../storage/types.js';
import { callerOf, requestedPage } from './devices.js';
import type { MfaDevicesService } from './service.js';

/** A trusted device as its user sees it (camelCase like seed 003; the fingerprint stays server-side). */
export interface UserTrustedDeviceDto {
  id: string;
  deviceName?: string;
  deviceType?: string;
  browser?: string;
  os?: string;
  ip?: string;
  createdAt: string;
  trustedUntil: string;
}

export const toUserTrustedDeviceDto = (d: TrustedDevice): UserTrustedDeviceDto => ({
  id: d.id,
  ...(d.deviceName !== null && { deviceName: d.deviceName }),
  ...(d.deviceType !== null && { deviceType: d.deviceType }),
  ...(d.browser !== null && { browser: d.browser }),
  ...(d.os !== null && { os: d.os }),
  ...(d.ip !== null && { ip: d.ip }),
  createdAt: d.createdAt.toISOString(),
  trustedUntil: d.trustedUntil.toISOString(),
});

export function mountTrustedDevices(router: Router, service: MfaDevicesService): void {
  router.get('/trusted-devices', async (req, res) => {
    const page = requestedPage(req);
    const { items, total } = await service.listTrustedDevices(callerOf(req), page);
    res.setHeader('X-Total-Count', String(total));
    res.json(items.map(toUserTrustedDeviceDto));
  });

  router.delete('/trusted-devices/:id', async (req, res) => {
    refuseDeleteExtras(req, [], URL_CREDENTIALS);
    const id = req.params.id;
    if (typeof id !== 'string' || !(await service.revokeTrustedDevice(callerOf(req), id))) throw ProblemError.from('TRUSTED_DEVICE_NOT_FOUND');
    res.status(204).end();
  });

  router.delete('/trusted-devices', async (req, res) => {
    refuseDeleteExtras(req, [], URL_CREDENTIALS);
    refuseEmptyDeviceId(req.path);
    res.json({ revoked: await service.revokeAllTrustedDevices(callerOf(req)) });
  });
}
