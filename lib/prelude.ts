/**
 * `routerPrelude(authentication, bodyLimit)`: what every route of each of the kit's routers gets first, as ONE
 * router layer (lib/chain.ts), in this order: a request id; `Cache-Control: no-store` (answers are per user and
 * per moment, lib/no-store.ts); the router's own authentication (and tenant), before anything is read; a query
 * string that is percent-encoded UTF-8 (lib/query-string.ts); the JSON body (lib/json-body.ts), parsed only for an
 * authenticated caller.
 */
import type { RequestHandler } from 'express';
import { chain } from './chain.js';
import { jsonBody } from './json-body.js';
import { noStore } from './no-store.js';
import { wellFormedQuery } from './query-string.js';
import { requestId } from './request-id.js';

export function routerPrelude(authentication: readonly RequestHandler[], bodyLimit: string | number): RequestHandler {
  return chain([requestId(), noStore(), ...authentication, wellFormedQuery(), ...jsonBody(bodyLimit)]);
}
