/** `/session/trusted-devices` (seed 002): the identity service's trusted-device API; the check is the login hot path. */
import { isIP } from 'node:net';
import type { Request, Response, Router } from 'express';
import { z } from 'zod';
import { contextOf } from '../../lib/context.js';
import { ProblemError } from '../../lib/errors.js';
import { emitSafely, eventBase, type TrustedDeviceEvent } from '../../lib/events.js';
import type { HotRoute } from '../../lib/prelude.js';
import { sendJson } from '../../lib/send-json.js';
import { isoSeconds, listEnvelope, paginationShape, toPageRequest } from '../../lib/pagination.js';
import { MAX_DEVICE_DETAIL_LENGTH, MAX_DEVICE_IP_LENGTH, MAX_DEVICE_NAME_LENGTH, MAX_FINGERPRINT_LENGTH, refuseEmptyDeviceId, type TrustInput } from '../../lib/trusted-devices.js';
import { boolQuery, displayText, isStorable, isUserId, parseOrThrow, refuseDeleteExtras, storableText, userIdSchema } from '../../lib/validation.js';
import type { TrustedDevice } from '../../storage/types.js';
import type { InternalRouterConfig } from './options.js';

/**
 * Seed 002 `dto.TrustedDeviceResponse`, members in the seed's order. The seed types the details `string`, not
 * required: one the caller never gave is left out, never `null` (as `last_used_at` of seed 000's `TOTPDeviceItem`).
 */
export interface TrustedDeviceResponse {
  id: string;
  tenant_id: string;
  user_id: string;
  device_fingerprint: string;
  device_name?: string;
  device_type?: string;
  browser?: string;
  os?: string;
  ip?: string;
  created_at: string;
  trusted_until: string;
}

export const toTrustedDeviceResponse = (d: TrustedDevice): TrustedDeviceResponse => {
  // Member by member in the seed's order, a detail only when there is one: a list formats a page of these, and
  // assignments keep JSON.stringify as fast as the full object did, where a spread per detail does not.
  const r: Omit<TrustedDeviceResponse, 'created_at' | 'trusted_until'> & Partial<TrustedDeviceResponse> = {
    id: d.id,
    tenant_id: d.tenantId,
    user_id: d.userId,
    device_fingerprint: d.fingerprint,
  };
  if (d.deviceName !== null) r.device_name = d.deviceName;
  if (d.deviceType !== null) r.device_type = d.deviceType;
  if (d.browser !== null) r.browser = d.browser;
  if (d.os !== null) r.os = d.os;
  if (d.ip !== null) r.ip = d.ip;
  r.created_at = isoSeconds(d.createdAt);
  r.trusted_until = isoSeconds(d.trustedUntil);
  return r as TrustedDeviceResponse;
};

const PATH = '/session/trusted-devices';

const fingerprint = storableText(1, MAX_FINGERPRINT_LENGTH);

export const checkQuery = z.object({ user_id: userIdSchema, device_fingerprint: fingerprint });
type CheckQuery = z.output<typeof checkQuery>;

/**
 * What `checkQuery` accepts, tested without building zod's result: the same rules (`userIdSchema`, `storableText`).
 * Whenever this says no, the schema decides, and its Problem is the answer.
 */
export const isCheckQuery = (q: Record<string, unknown>): q is CheckQuery => {
  const { user_id: user, device_fingerprint: fp } = q;
  return (
    typeof user === 'string' &&
    isUserId(user) &&
    typeof fp === 'string' &&
    fp.length >= 1 &&
    fp.length <= MAX_FINGERPRINT_LENGTH &&
    isStorable(fp)
  );
};

/**
 * `GET /session/trusted-devices/check`, the login hot path: answered by the router's first layer, right after the
 * prelude (lib/prelude.ts `HotRoute`), and registered as the route as well.
 */
export function trustedDeviceCheck(config: InternalRouterConfig): HotRoute {
  const service = config.trustedDevices;
  return {
    path: `${PATH}/check`,
    async handler(req: Request, res: Response) {
      const query = req.query as Record<string, unknown>;
      const q = isCheckQuery(query) ? query : parseOrThrow(checkQuery, query);
      const result = await service.check(contextOf(req).tenantId!, q.user_id, q.device_fingerprint);
      sendJson(req, res, result.trusted && result.deviceId && result.trustedUntil ? { trusted: true, device_id: result.deviceId, trusted_until: isoSeconds(result.trustedUntil) } : { trusted: false });
    },
  };
}

export function mountTrustedDevices(router: Router, config: InternalRouterConfig, check: HotRoute): void {
  const service = config.trustedDevices;
  const userQuery = z.object({ user_id: userIdSchema });
  const listQuery = z.object({ user_id: userIdSchema, ...paginationShape(config.maxPageSize), include_expired: boolQuery('include_expired', false) });
  const detail = (max: number) => displayText(1, max).nullish();
  // Strict: a misspelt member (`ttl` for `ttl_seconds`) is a 400, not silently a 30-day trust.
  const trustBody = z.strictObject({
    user_id: userIdSchema,
    device_fingerprint: fingerprint,
    device_name: detail(MAX_DEVICE_NAME_LENGTH),
    device_type: detail(MAX_DEVICE_DETAIL_LENGTH),
    browser: detail(MAX_DEVICE_DETAIL_LENGTH),
    os: detail(MAX_DEVICE_DETAIL_LENGTH),
    ip: z
      .string()
      .max(MAX_DEVICE_IP_LENGTH)
      .refine((s) => isIP(s) !== 0, { message: 'must be an IPv4 or IPv6 address', params: { kind: 'format' } })
      .nullish(),
    ttl_seconds: z
      .number()
      .int({ message: 'must be an integer' })
      .min(1, { message: `must be from 1 to ${config.maxTrustTtlSeconds}` })
      .max(config.maxTrustTtlSeconds, { message: `must be from 1 to ${config.maxTrustTtlSeconds}` })
      .nullish(),
  });

  /** Tells the router's `events` of a trust or revocation made here, on behalf of `userId`. */
  const announce = (req: Request, userId: string, name: 'trusted_device.created' | 'trusted_device.revoked', what: Pick<TrustedDeviceEvent, 'trustedDeviceId' | 'count'>): void => {
    const ctx = contextOf(req);
    emitSafely(config.events, config.logger, name, { ...eventBase({ tenantId: ctx.tenantId!, userId, requestId: ctx.requestId }), ...what, via: 'internal' });
  };

  // First: the login hot path (most checks never reach it: the prelude's layer answers them).
  router.get(check.path, check.handler);

  router.get(PATH, async (req, res) => {
    const q = parseOrThrow(listQuery, req.query);
    const page = toPageRequest(q);
    const { items, total } = await service.list(contextOf(req).tenantId!, q.user_id, { includeExpired: q.include_expired }, { limit: page.pageSize, offset: page.offset });
    sendJson(req, res, listEnvelope(items.map(toTrustedDeviceResponse), total, page));
  });

  router.post(PATH, async (req, res) => {
    const b = parseOrThrow(trustBody, req.body);
    const input: TrustInput = {
      fingerprint: b.device_fingerprint,
      deviceName: b.device_name ?? undefined,
      deviceType: b.device_type ?? undefined,
      browser: b.browser ?? undefined,
      os: b.os ?? undefined,
      ip: b.ip ?? undefined,
      ttlSeconds: b.ttl_seconds ?? undefined,
    };
    const device = await service.trust(contextOf(req).tenantId!, b.user_id, input);
    announce(req, b.user_id, 'trusted_device.created', { trustedDeviceId: device.id });
    // RFC 9110 §15.3.2: the record's own URI (where it is revoked), as the other 201s of the kit give one.
    res.setHeader('Location', `${req.baseUrl}${PATH}/${encodeURIComponent(device.id)}?user_id=${encodeURIComponent(b.user_id)}`);
    res.status(201).json(toTrustedDeviceResponse(device));
  });

  router.delete(`${PATH}/:id`, async (req, res) => {
    refuseDeleteExtras(req, ['user_id']);
    const q = parseOrThrow(userQuery, req.query);
    // A malformed id cannot name a device: the same 404 as any id that is not this tenant's and user's.
    const id = String(req.params.id);
    const revoked = await service.revoke(contextOf(req).tenantId!, q.user_id, id);
    if (!revoked) throw ProblemError.from('TRUSTED_DEVICE_NOT_FOUND');
    announce(req, q.user_id, 'trusted_device.revoked', { trustedDeviceId: id, count: 1 });
    res.status(204).end();
  });

  router.delete(PATH, async (req, res) => {
    refuseDeleteExtras(req, ['user_id']);
    const q = parseOrThrow(userQuery, req.query);
    // As the revoke of one unknown id: the query is checked first.
    refuseEmptyDeviceId(req.path);
    const revoked = await service.revokeAll(contextOf(req).tenantId!, q.user_id);
    if (revoked > 0) announce(req, q.user_id, 'trusted_device.revoked', { count: revoked });
    res.json({ revoked });
  });
}
