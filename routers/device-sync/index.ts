/**
 * `deviceSyncRouter(options)`: end users' authenticator apps sync their encrypted TOTP vaults
 * across devices (seed 001, CONTRACT.md §6), mounted at `/mfa/devices/sync`. Bearer JWT (or the
 * host's own authentication); writes use optimistic concurrency on a `sync_token`.
 */
import express, { type Router } from 'express';
import { chain } from '../../lib/chain.js';
import { jsonBody } from '../../lib/json-body.js';
import { problemJson } from '../../lib/problem.js';
import { wellFormedQuery } from '../../lib/query-string.js';
import { noStore } from '../../lib/no-store.js';
import { requestId } from '../../lib/request-id.js';
import { userAuth } from '../../lib/user-auth.js';
import { parseOptions, type DeviceSyncRouterOptions } from './options.js';
import { mountSyncRecords } from './routes.js';

export type { DeviceSyncRouterOptions } from './options.js';
export type { DeviceSyncResponse } from './vault.js';

export function deviceSyncRouter(options: DeviceSyncRouterOptions): Router {
  const config = parseOptions(options);
  const router = express.Router();
  // One router layer (lib/chain.ts). Authenticate before reading a body: an anonymous caller never gets up to 1 MiB parsed.
  router.use(chain([requestId(), noStore(), ...userAuth('deviceSyncRouter', config.auth), wellFormedQuery(), ...jsonBody(config.bodyLimit)]));
  mountSyncRecords(router, config);
  router.use(problemJson(config.errors));
  return router;
}
