/** `/devices…`: list, enrol (TOTP, sms, email), send a code, confirm an enrolment, rename / enable / disable, remove. */
import type { Request, RequestHandler, Response, Router } from 'express';
import { contextOf } from '../../lib/context.js';
import { ProblemError } from '../../lib/errors.js';
import { lockedProblem } from '../../lib/verification-throttle.js';
import { toPageRequest, type PageRequest } from '../../lib/pagination.js';
import { sendJson } from '../../lib/send-json.js';
import { showsSecondFactor, stepUpRequired } from '../../lib/step-up.js';
import { claimsOf, URL_CREDENTIALS } from '../../lib/user-auth.js';
import { parseOrThrow, refuseDeleteExtras } from '../../lib/validation.js';
import { toMfaDeviceDto } from './dto.js';
import { MAX_ACCOUNT_LABEL_LENGTH, accountLabelOr, isAccountLabel, type MfaDevicesRouterConfig } from './options.js';
import { deviceIdParam, enrollEmailBody, enrollSmsBody, enrollTotpBody, pageQuery, updateDeviceBody, verifyDeviceBody } from './schemas.js';
import type { Caller, MfaDevicesService } from './service.js';
import type { MfaDevice, WithoutStepUp } from '../../storage/types.js';

/** The authenticated caller of a request (set by the auth chain). */
export const callerOf = (req: Request): Caller => {
  const ctx = contextOf(req);
  const withoutStepUp = passedWithoutStepUp.get(req);
  return { tenantId: ctx.tenantId!, userId: ctx.userId!, requestId: ctx.requestId, ...(withoutStepUp !== undefined && { withoutStepUp }) };
};

/** The requests `stepUpGuard` let on without a step-up, and on what condition: their writes judge it again (`WithoutStepUp`). */
const passedWithoutStepUp = new WeakMap<Request, WithoutStepUp>();

/**
 * The page a list was asked for: `page` (default 1) and `page_size` (default 20, at most 100) as on every list
 * (CONTRACT.md §3; out of range → 400). Seed 003's lists are bare arrays, so the list's length goes in
 * `X-Total-Count`.
 */
export const requestedPage = (req: Request): PageRequest => toPageRequest(parseOrThrow(pageQuery, req.query));

/** `:id` as a device id; anything that is not a UUID names no device. */
export const deviceIdOf = (req: Request): string => {
  const parsed = deviceIdParam.safeParse(req.params.id);
  if (!parsed.success) throw ProblemError.from('DEVICE_NOT_FOUND');
  return parsed.data;
};

/**
 * The step-up check (`stepUp`, RFC 9470; lib/step-up.ts) of a route that changes the caller's second factors, for the
 * requests `condition` names a condition for; nothing when the router has no `stepUp`. A token that shows a second
 * factor passes. Another passes while the condition holds, i.e. while the user has nothing to step up with (the first
 * enrolment, a pending one, the way back): `'no-verified-device'` by default, since with a verified device, turned on
 * or off, the login takes their recovery codes, so they have a second factor. The write judges the condition again in
 * its own transaction (`WithoutStepUp`): a request that passed here a moment before the user's first device was
 * verified elsewhere is then refused with the same 401.
 */
export function stepUpGuard(
  config: MfaDevicesRouterConfig,
  service: MfaDevicesService,
  condition: (req: Request) => WithoutStepUp | undefined | Promise<WithoutStepUp | undefined> = () => 'no-verified-device',
): RequestHandler[] {
  const policy = config.stepUp;
  if (policy === undefined) return [];
  return [
    async (req, _res, next) => {
      if (showsSecondFactor(claimsOf(req), policy, config.now())) {
        next();
        return;
      }
      const asked = await condition(req);
      if (asked === undefined) {
        next();
        return;
      }
      if (!(await service.holdsWithoutStepUp(callerOf(req), asked))) {
        next(stepUpRequired(policy));
        return;
      }
      passedWithoutStepUp.set(req, asked);
      next();
    },
  ];
}

/** The 401 of a write that found the user with a factor after `stepUpGuard` let it on (`WithoutStepUp`). */
export const stepUpRefused = (config: MfaDevicesRouterConfig): ProblemError =>
  config.stepUp ? stepUpRequired(config.stepUp) : ProblemError.from('STEP_UP_REQUIRED');

/** A 201's `Location` (RFC 9110 §15.3.2): the new device's path under the router's mount path (renamed or removed there, verified at `…/verify`). */
const setCreatedLocation = (req: Request, res: Response, id: string): void => {
  res.setHeader('Location', `${req.baseUrl}/devices/${id}`);
};

/** The `enabled` a PATCH sets, when it sets one (anything else the body holds is the schema's to refuse). */
const enabledSet = (req: Request): unknown =>
  typeof req.body === 'object' && req.body !== null && 'enabled' in req.body ? (req.body as { enabled?: unknown }).enabled : undefined;

/**
 * Which PATCHes change a factor, and on what condition one may without a step-up. A rename changes none. Turning a
 * device off does: only while the user has no verified device. Turning one back on does too (a user who turned off a
 * lost phone's device must not see it back on from a password-only token, the phone and the password being what a
 * thief has), unless the caller has nothing left to step up with: no device that is on and no unused recovery code.
 * Then it is the way back, and gives nobody a factor they do not hold.
 */
const changesFactor = (req: Request): WithoutStepUp | undefined => {
  const enabled = enabledSet(req);
  if (enabled === undefined) return undefined;
  return enabled === true ? 'no-factor-on' : 'no-verified-device';
};

export function mountDevices(router: Router, config: MfaDevicesRouterConfig, service: MfaDevicesService, throttle: RequestHandler): void {
  const stepUp = stepUpGuard(config, service);
  const dto = (req: Request, device: MfaDevice) => toMfaDeviceDto(device, service.maskedDestination(device, contextOf(req).requestId));

  router.get('/devices', async (req, res) => {
    const page = requestedPage(req);
    const devices = await service.listDevices(callerOf(req));
    res.setHeader('X-Total-Count', String(devices.length));
    sendJson(req, res, devices.slice(page.offset, page.offset + page.pageSize).map((device) => dto(req, device)));
  });

  router.post('/devices/totp', ...stepUp, async (req, res) => {
    const body = parseOrThrow(enrollTotpBody, req.body ?? {});
    const caller = callerOf(req);
    const label = config.accountName({ tenantId: caller.tenantId, userId: caller.userId, claims: claimsOf(req) });
    // A host's accountName that answers no usable label (too long for a QR code, not displayable, a colon): the user id.
    if (!isAccountLabel(label)) config.logger.warn({ request_id: caller.requestId }, `accountName answered no usable label (1-${MAX_ACCOUNT_LABEL_LENGTH} displayable characters, no ':'): the user id is used`);
    const account = accountLabelOr(label, caller.userId);
    const result = await service.enrollTotp(caller, { deviceName: body.deviceName, account });
    switch (result.status) {
      case 'OK':
        setCreatedLocation(req, res, result.device.id);
        res.status(201).json({ device: toMfaDeviceDto(result.device), secret: result.secret, otpauthUrl: result.otpauthUrl, qrCode: result.qrCode });
        return;
      case 'DEVICE_LIMIT_REACHED':
        throw limitReached();
      case 'STEP_UP_REQUIRED':
        throw stepUpRefused(config);
    }
  });

  const limitReached = () => ProblemError.from('DEVICE_LIMIT_REACHED', `A user may have at most ${config.maxDevices} devices: remove one first.`);

  // Sending a code costs money and reaches a person: the same per-user rate limit as verifying.
  for (const method of ['sms', 'email'] as const) {
    router.post(`/devices/${method}`, ...stepUp, throttle, async (req, res) => {
      const body = method === 'sms' ? parseOrThrow(enrollSmsBody, req.body ?? {}) : parseOrThrow(enrollEmailBody, req.body ?? {});
      const destination = 'phoneNumber' in body ? body.phoneNumber : body.email;
      const result = await service.enrollOtp(callerOf(req), method, { deviceName: body.deviceName, destination });
      switch (result.status) {
        case 'OK':
          setCreatedLocation(req, res, result.device.id);
          res.status(201).json({ device: toMfaDeviceDto(result.device, result.destination) });
          return;
        case 'DEVICE_LIMIT_REACHED':
          throw limitReached();
        case 'METHOD_NOT_ENABLED':
          throw ProblemError.from('METHOD_NOT_ENABLED', `${method} devices are not enabled on this server (no code sender is configured).`);
        case 'STEP_UP_REQUIRED':
          throw stepUpRefused(config);
      }
    });
  }

  // A pending enrolment: verifying it makes it a factor, and a code sent for it (not a login's) serves only that. Both
  // take the step-up enrolling does; otherwise an enrolment begun on the password alone while the user had no factor
  // (the first-enrolment exception) could be finished, or sent codes, after they got one. An id that names no pending
  // device passes to the route's own answer (404, already verified).
  const pendingDevice = async (req: Request): Promise<WithoutStepUp | undefined> =>
    (await service.getDevice(callerOf(req), deviceIdOf(req)))?.verified === false ? 'no-verified-device' : undefined;
  const stepUpForPending = stepUpGuard(config, service, pendingDevice);
  router.post('/devices/:id/challenge', ...stepUpForPending, throttle, async (req, res) => {
    const id = deviceIdOf(req);
    const result = await service.challenge(callerOf(req), id);
    switch (result.status) {
      case 'OK':
        res.status(202).json({ sent: true, destination: result.destination, purpose: result.purpose, expiresIn: config.codeTtlSeconds });
        return;
      case 'NOT_FOUND':
        throw ProblemError.from('DEVICE_NOT_FOUND');
      case 'NOT_SUPPORTED':
        throw ProblemError.from('CHALLENGE_NOT_SUPPORTED', 'TOTP devices make their own codes: nothing is sent.');
      case 'METHOD_NOT_ENABLED':
        throw ProblemError.from('METHOD_NOT_ENABLED', 'sms and email codes are not enabled on this server (no code sender is configured).');
      case 'DEVICE_DISABLED':
        throw ProblemError.from('DEVICE_DISABLED');
    }
  });

  router.post('/devices/:id/verify', ...stepUpForPending, throttle, async (req, res) => {
    const id = deviceIdOf(req);
    const body = parseOrThrow(verifyDeviceBody, req.body ?? {});
    const result = await service.verifyDevice(callerOf(req), id, body.code);
    switch (result.status) {
      case 'OK':
        res.json(dto(req, result.device));
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
      case 'STEP_UP_REQUIRED':
        throw stepUpRefused(config);
    }
  });

  router.patch('/devices/:id', ...stepUpGuard(config, service, changesFactor), async (req, res) => {
    const id = deviceIdOf(req);
    const body = parseOrThrow(updateDeviceBody, req.body ?? {});
    const result = await service.updateDevice(callerOf(req), id, {
      ...(body.deviceName !== undefined && { deviceName: body.deviceName }),
      ...(body.enabled !== undefined && { enabled: body.enabled }),
    });
    switch (result.status) {
      case 'OK':
        res.json(dto(req, result.device));
        return;
      case 'NOT_FOUND':
        throw ProblemError.from('DEVICE_NOT_FOUND');
      case 'STEP_UP_REQUIRED':
        throw stepUpRefused(config);
    }
  });

  router.delete('/devices/:id', ...stepUp, async (req, res) => {
    refuseDeleteExtras(req, [], URL_CREDENTIALS);
    const id = deviceIdOf(req);
    const result = await service.removeDevice(callerOf(req), id);
    switch (result.status) {
      case 'OK':
        res.status(204).end();
        return;
      case 'NOT_FOUND':
        throw ProblemError.from('DEVICE_NOT_FOUND');
      case 'STEP_UP_REQUIRED':
        throw stepUpRefused(config);
    }
  });
}
