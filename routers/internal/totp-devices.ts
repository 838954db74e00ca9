/** `GET /mfa/totp/devices` (seed 000): a user's TOTP devices for the identity service. */
import type { Router } from 'express';
import { z } from 'zod';
import { contextOf } from '../../lib/context.js';
import { listEnvelope, paginationShape, toPageRequest, isoSeconds } from '../../lib/pagination.js';
import { sendJson } from '../../lib/send-json.js';
import { parseOrThrow, userIdSchema } from '../../lib/validation.js';
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
}
