/**
 * `mfaDevicesRouter(options)`: what an end user does with their second factors, mounted at
 * `/auth/mfa` (CONTRACT.md §5, seed 003). Bearer JWT (or the host's authenticate), tenant from the
 * token; verify routes rate-limited and behind the shared lockout; events on `router.events`.
 */
import express, { type Router } from 'express';
import { contextOf } from '../../lib/context.js';
import type { MfaEvents } from '../../lib/events.js';
import { methodNotAllowed } from '../../lib/method-not-allowed.js';
import { problemJson } from '../../lib/problem.js';
import { routerPrelude } from '../../lib/prelude.js';
import { userAuth } from '../../lib/user-auth.js';
import { verifyRateLimiter } from '../../lib/verification-throttle.js';
import { mountDevices, stepUpGuard } from './devices.js';
import { parseOptions, type MfaDevicesRouterOptions } from './options.js';
import { mountRecoveryCodes } from './recovery-codes.js';
import { mountTrustedDevices } from './trusted-devices.js';
import { MfaDevicesService } from './service.js';
import { mountVerify } from './verify.js';

export type { MfaDevicesRouterOptions, MfaUser, TotpOptions, VerifiedContext } from './options.js';
export type { MfaDeviceDto } from './dto.js';
export type { LoginVerifyResponse } from './verify.js';
export type { UserTrustedDeviceDto } from './trusted-devices.js';

/** The router, with the emitter its events go to. */
export type MfaDevicesRouter = Router & { readonly events: MfaEvents };

export function mfaDevicesRouter(options: MfaDevicesRouterOptions): MfaDevicesRouter {
  const config = parseOptions(options);
  const service = new MfaDevicesService(config);
  const router = express.Router();
  // The prelude every route shares (lib/prelude.ts).
  router.use(routerPrelude(router, userAuth('mfaDevicesRouter', config.auth), config.bodyLimit));
  const throttle = verifyRateLimiter({
    config: config.rateLimit,
    redis: config.redis,
    scope: 'user',
    key: (req) => {
      const ctx = contextOf(req);
      return JSON.stringify([ctx.tenantId, ctx.userId]);
    },
    lockout: {
      store: config.storage.verificationThrottle,
      who: (req) => {
        const { tenantId, userId } = contextOf(req);
        return tenantId !== undefined && userId !== undefined ? { tenantId, userId } : undefined;
      },
    },
    logger: config.logger,
  });
  mountDevices(router, config, service, throttle);
  mountVerify(router, config, service, throttle);
  mountRecoveryCodes(router, config, service, stepUpGuard(config, service), throttle);
  mountTrustedDevices(router, service);
  // A path of a route above with another method: 405 with Allow (RFC 9110), not a 404.
  router.use(methodNotAllowed(router));
  router.use(problemJson(config.errors));
  return Object.assign(router, { events: config.events });
}
