/**
 * `deviceSyncRouter(options)`: end users' authenticator apps sync their encrypted TOTP vaults
 * across devices (seed 001, CONTRACT.md §6), mounted at `/mfa/devices/sync`. Bearer JWT (or the
 * host's own authentication); writes use optimistic concurrency on a `sync_token`.
 */
import express, { type Router } from 'express';
import { methodNotAllowed } from '../../lib/method-not-allowed.js';
import { problemJson } from '../../lib/problem.js';
import { routerPrelude } from '../../lib/prelude.js';
import { requireSecondFactor } from '../../lib/step-up.js';
import { userAuth } from '../../lib/user-auth.js';
import { parseOptions, type DeviceSyncRouterOptions } from './options.js';
import { mountSyncRecords } from './routes.js';

export type { DeviceSyncRouterOptions } from './options.js';
export type { DeviceSyncListItem, DeviceSyncResponse } from './vault.js';

export function deviceSyncRouter(options: DeviceSyncRouterOptions): Router {
  const config = parseOptions(options);
  const router = express.Router();
  // The prelude every route shares (lib/prelude.ts): an anonymous caller never gets up to 1 MiB parsed, nor (with
  // `stepUp`) a token that shows no second factor.
  router.use(routerPrelude(router, [...userAuth('deviceSyncRouter', config.auth), ...requireSecondFactor(config.stepUp)], config.bodyLimit));
  mountSyncRecords(router, config);
  // A path of a route above with another method: 405 with Allow (RFC 9110), not a 404.
  router.use(methodNotAllowed(router));
  router.use(problemJson(config.errors));
  return router;
}
