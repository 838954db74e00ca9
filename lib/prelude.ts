/**
 * `routerPrelude(router, authentication, bodyLimit, hotRoute?)`: what every route of each of the kit's routers gets
 * first, as ONE router layer (lib/chain.ts), in this order: a request id; `Cache-Control: no-store` (answers are per
 * user and per moment, lib/no-store.ts); the router's own authentication (and tenant), before anything is read; a
 * query string that is percent-encoded UTF-8 (lib/query-string.ts); the JSON body (lib/json-body.ts), parsed only for
 * an authenticated caller, and only where one of the router's routes answers the method and path: a body sent
 * elsewhere is left unread, so a wrong method gets its 405 and a path the router does not have its 404 (or the host
 * app's next layer), whatever the body.
 */
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import { chain } from './chain.js';
import { jsonBody } from './json-body.js';
import { noStore } from './no-store.js';
import { wellFormedQuery } from './query-string.js';
import { requestId } from './request-id.js';
import { routeAnswers } from './route-table.js';

/** A `GET` (and `HEAD`) route answered by the prelude's own layer; see `routerPrelude`. */
export interface HotRoute {
  /** The path as the router sees it (after its mount path), e.g. `/session/trusted-devices/check`. */
  path: string;
  /** The route's handler, also registered as the router's route of that path. */
  handler: (req: Request, res: Response) => Promise<void>;
}

/**
 * With a `hotRoute`, a `GET`/`HEAD` of exactly that path (or with one trailing slash) is answered right after the
 * prelude, from the same layer: the router walks no route layers, and Express's route dispatch is skipped. That is
 * most of what an Express router adds to a request its handler answers from a cache (BENCHMARKS.md, tenth round).
 * The route is still registered as usual: a spelling Express also matches (another letter case) takes that way,
 * and answers the same.
 */
export function routerPrelude(router: Router, authentication: readonly RequestHandler[], bodyLimit: string | number, hotRoute?: HotRoute): RequestHandler {
  const routed = (req: Request) => routeAnswers(router, req.method, req.path);
  const prelude = chain([requestId(), noStore(), ...authentication, wellFormedQuery(), ...jsonBody(bodyLimit, { only: routed })]);
  if (!hotRoute) return prelude;
  const { path, handler } = hotRoute;
  const withSlash = `${path}/`;
  return (req: Request, res: Response, next: NextFunction) => {
    // req.path: the router has parsed the URL already (parseurl keeps it on the request).
    if ((req.method !== 'GET' && req.method !== 'HEAD') || (req.path !== path && req.path !== withSlash)) {
      prelude(req, res, next);
      return;
    }
    prelude(req, res, (err?: unknown) => {
      // An error (or 'route', 'router') goes to the router as it is: it skips to the error handlers, or on.
      if (err) {
        next(err);
        return;
      }
      handler(req, res).then(undefined, next);
    });
  };
}
