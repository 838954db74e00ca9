/**
 * `internalRouter(options)`: routes for sibling services (an identity service), mounted at `/internal`.
 * Every request passes the internal key check first (401), then needs `X-Tenant-ID` (400).
 */
import express, { type Router } from 'express';
import { internalAuth } from '../../lib/internal-auth.js';
import { methodNotAllowed } from '../../lib/method-not-allowed.js';
import { problemJson } from '../../lib/problem.js';
import { routerPrelude } from '../../lib/prelude.js';
import { tenant } from '../../lib/tenant.js';
import { parseOptions, type InternalRouterOptions } from './options.js';
import { mountTotpDevices } from './totp-devices.js';
import { mountTotpVerify } from './totp-verify.js';
import { mountTrustedDevices, trustedDeviceCheck } from './trusted-devices.js';
import { mountUserData } from './user-data.js';

export type { InternalRouterOptions } from './options.js';

export function internalRouter(options: InternalRouterOptions): Router {
  const config = parseOptions(options);
  const router = express.Router();
  // The prelude every route shares (lib/prelude.ts); no-store matters most here: a cached "trusted" would outlive
  // its revocation. Key first, then tenant. The trusted-device check, the login hot path, is answered from the
  // prelude's own layer.
  const check = trustedDeviceCheck(config);
  router.use(routerPrelude(router, [internalAuth({ keys: config.internalKeys, header: config.keyHeader }), tenant({ from: config.tenant })], config.bodyLimit, check));
  mountTrustedDevices(router, config, check);
  mountTotpDevices(router, config);
  // [3/7] needs the key ring to open TOTP secrets
  if (config.keyRing) mountTotpVerify(router, { ...config, keyRing: config.keyRing });
  mountUserData(router, config);
  // A path of a route above with another method: 405 with Allow (RFC 9110), not a 404.
  router.use(methodNotAllowed(router));
  router.use(problemJson(config.errors));
  return router;
}
