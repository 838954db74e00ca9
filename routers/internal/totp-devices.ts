/**
 * `GET /mfa/totp/devices` (seed 000): a user's TOTP devices for the identity service; and their removal by it (a lost
 * phone, a reset by support): `DELETE /mfa/totp/devices/:id` and `DELETE /mfa/devices` (every device of the user).
 */
import type { Request, Router } from 'express';
import { z } from 'zod';
import { contextOf } from '../../lib/context.js';
import { removeAllDevices, removeDevice, type DeviceRemovalDeps } from '../../lib/device-removal.js';
import { ProblemError } from '../../lib/errors.js';
import { createRecoveryCodes } from '../../lib/recovery-codes.js';
import { listEnvelope, paginationShape, toPageRequest, isoSeconds } from '../../lib/pagination.js';
import { sendJson } from '../../lib/send-json.js';
import { deviceIdParam, parseOrThrow, refuseDeleteExtras, userIdSchema } from '../../lib/validation.js';
import type { MfaDevice } from '../../storage/types.js';
import type { InternalRouterConfig } from './options.js';

/** Seed 000 `dto.TOTPDeviceItem`. */
export interface TotpDeviceItem {
  device_id: string;
  device_name: string;
  enabled: boolean;
  verified: boolean;
  created_at: string;
  /** Absent until the device is first used. */
  last_used_at?: string;
}

export const toTotpDeviceItem = (d: MfaDevice): TotpDeviceItem => ({
  device_id: d.id,
  device_name: d.deviceName,
  enabled: d.enabled,
  verified: d.verified,
  created_at: isoSeconds(d.createdAt),
  ...(d.lastUsedAt && { last_used_at: isoSeconds(d.lastUsedAt) }),
});

export function mountTotpDevices(router: Router, config: InternalRouterConfig): void {
  const query = z.object({ user_id: userIdSchema, ...paginationShape(config.maxPageSize) });

  router.get('/mfa/totp/devices', async (req, res) => {
    const q = parseOrThrow(query, req.query);
    const page = toPageRequest(q);
    const tenantId = contextOf(req).tenantId!;
    const { items, total } = await config.storage.mfaDevices.list(tenantId, q.user_id, { method: 'totp' }, { limit: page.pageSize, offset: page.offset });
    sendJson(req, res, listEnvelope(items.map(toTotpDeviceItem), total, page));
  });

  // The rule of the user's own removal (lib/device-removal.ts): the last verified device takes the trusted devices
  // and recovery codes with it.
  const removal: DeviceRemovalDeps = {
    storage: config.storage,
    trustedDevices: config.trustedDevices,
    recoveryCodes: createRecoveryCodes({ storage: config.storage }),
    events: config.events,
    logger: config.logger,
  };
  const userQuery = z.object({ user_id: userIdSchema });
  const callerOf = (req: Request, userId: string) => {
    const { tenantId, requestId } = contextOf(req);
    return { tenantId: tenantId!, userId, requestId };
  };

  router.delete('/mfa/totp/devices/:id', async (req, res) => {
    refuseDeleteExtras(req, ['user_id']);
    const q = parseOrThrow(userQuery, req.query);
    // A malformed id cannot name a device, and a device of another method is not one of this list's: both 404.
    const id = deviceIdParam.safeParse(req.params.id);
    const removed = id.success && (await removeDevice(removal, callerOf(req, q.user_id), id.data, 'internal', 'totp'));
    if (!removed) throw ProblemError.from('DEVICE_NOT_FOUND');
    res.status(204).end();
  });

  router.delete('/mfa/devices', async (req, res) => {
    refuseDeleteExtras(req, ['user_id']);
    const q = parseOrThrow(userQuery, req.query);
    const removed = await removeAllDevices(removal, callerOf(req, q.user_id), 'internal');
    sendJson(req, res, { removed });
  });
}
