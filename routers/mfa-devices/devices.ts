/** `/devices…`: list, enrol (TOTP), confirm an enrolment, rename / enable / disable, remove. */
import type { Request, RequestHandler, Router } from 'express';
import { contextOf } from '../../lib/context.js';
import { ProblemError } from '../../lib/errors.js';
import { lockedProblem } from '../../lib/verification-throttle.js';
import { parseOrThrow } from '../../lib/validation.js';
import { toMfaDeviceDto } from './dto.js';
import type { MfaDevicesRouterConfig } from './options.js';
import { deviceIdParam, enrollTotpBody, updateDeviceBody, verifyDeviceBody } from './schemas.js';
import type { Caller, MfaDevicesService } from './service.js';

/** The authenticated caller of a request (set by the auth chain). */
export const callerOf = (req: Request): Caller => {
  const ctx = contextOf(req);
  return { tenantId: ctx.tenantId!, userId: ctx.userId!, requestId: ctx.requestId };
};

/** The token claims (or the host's user object) as a record. */
export const claimsOf = (req: Request): Record<string, unknown> => {
  const user = (req as { user?: unknown }).user;
  return typeof user === 'object' && user !== null ? (user as Record<string, unknown>) : {};
};

/** `:id` as a device id; anything that is not a UUID names no device. */
export const deviceIdOf = (req: Request): string => {
  const parsed = deviceIdParam.safeParse(req.params.id);
  if (!parsed.success) throw ProblemError.from('DEVICE_NOT_FOUND');
  return parsed.data;
};

export function mountDevices(router: Router, config: MfaDevicesRouterConfig, service: MfaDevicesService, throttle: RequestHandler): void {
  router.get('/devices', async (req, res) => {
    const devices = await service.listDevices(callerOf(req));
    res.json(devices.map(toMfaDeviceDto));
  });

  router.post('/devices/totp', async (req, res) => {
    const body = parseOrThrow(enrollTotpBody, req.body ?? {});
    const caller = callerOf(req);
    const account = config.accountName({ tenantId: caller.tenantId, userId: caller.userId, claims: claimsOf(req) });
    const result = await service.enrollTotp(caller, { deviceName: body.deviceName, account });
    switch (result.status) {
      case 'OK':
        res.status(201).json({ device: toMfaDeviceDto(result.device), secret: result.secret, otpauthUrl: result.otpauthUrl, qrCode: result.qrCode });
        return;
      case 'DEVICE_LIMIT_REACHED':
        throw ProblemError.from('DEVICE_LIMIT_REACHED', `A user may have at most ${config.maxDevices} devices: remove one first.`);
    }
  });

  router.post('/devices/:id/verify', throttle, async (req, res) => {
    const id = deviceIdOf(req);
    const body = parseOrThrow(verifyDeviceBody, req.body ?? {});
    const result = await service.verifyDevice(callerOf(req), id, body.code);
    switch (result.status) {
      case 'OK':
        res.json(toMfaDeviceDto(result.device));
        return;
      case 'NOT_FOUND':
        throw ProblemError.from('DEVICE_NOT_FOUND');
      case 'ALREADY_VERIFIED':
        throw ProblemError.from('DEVICE_ALREADY_VERIFIED');
      case 'EXPIRED':
      case 'INVALID_CODE':
        throw ProblemError.from('INVALID_CODE');
      case 'LOCKED':
        throw lockedProblem(result.retryAfterSeconds);
    }
  });

  router.patch('/devices/:id', async (req, res) => {
    const id = deviceIdOf(req);
    const body = parseOrThrow(updateDeviceBody, req.body ?? {});
    const result = await service.updateDevice(callerOf(req), id, {
      ...(body.deviceName !== undefined && { deviceName: body.deviceName }),
      ...(body.enabled !== undefined && { enabled: body.enabled }),
    });
    switch (result.status) {
      case 'OK':
        res.json(toMfaDeviceDto(result.device));
        return;
      case 'NOT_FOUND':
        throw ProblemError.from('DEVICE_NOT_FOUND');
    }
  });

  router.delete('/devices/:id', async (req, res) => {
    const id = deviceIdOf(req);
    const result = await service.removeDevice(callerOf(req), id);
    switch (result.status) {
      case 'OK':
        res.status(204).end();
        return;
      case 'NOT_FOUND':
        throw ProblemError.from('DEVICE_NOT_FOUND');
    }
  });
}
