/**
 * `methodNotAllowed(router)`: a router's last layer before its error handler. A request that gets there matched
 * none of the router's routes; when its path is the path of one of them all the same, what is wrong is the method:
 * 405 with `Allow`, the methods the resource has (RFC 9110 §15.5.6), rather than the 404 that says the resource is
 * not there. Any other path passes on to the host's next layers, as before. `OPTIONS` passes on too: Express
 * answers it with the same `Allow` list.
 */
import type { RequestHandler, Router } from 'express';
import { ProblemError } from './errors.js';

/**
 * What router 2 (Express 5) keeps of a route in `router.stack`: `match(path)` (pure: it returns the match) and the
 * route's `methods`, which Express's own `OPTIONS` answer reads. Not in @types/express, whose `ILayer` is Express 4's.
 */
interface RouteLayer {
  route?: { methods: Record<string, boolean | undefined> };
  match?: (path: string) => unknown;
}

/** The methods a route answers, as Express lists them: upper case, `HEAD` wherever `GET` is. */
function methodsOf(route: NonNullable<RouteLayer['route']>): string[] {
  const methods = Object.keys(route.methods)
    .filter((m) => m !== '_all' && route.methods[m])
    .map((m) => m.toUpperCase());
  if (methods.includes('GET') && !methods.includes('HEAD')) methods.push('HEAD');
  return methods;
}

/**
 * The methods the router's routes answer at `path` (empty: no route has this path). A walk of the route table,
 * for requests off the hot path: a wrong method, and a request that sends a body (lib/prelude.ts).
 */
export function routeMethods(router: Router, path: string): Set<string> {
  const allowed = new Set<string>();
  for (const layer of router.stack as unknown as RouteLayer[]) {
    if (!layer.route || typeof layer.match !== 'function') continue;
    let matched: unknown;
    try {
      matched = layer.match(path);
    } catch {
      // A parameter that is not valid percent-encoding: the route would not take this path either.
      matched = false;
    }
    if (matched) for (const method of methodsOf(layer.route)) allowed.add(method);
  }
  return allowed;
}

export function methodNotAllowed(router: Router): RequestHandler {
  return (req, res, next) => {
    if (req.method === 'OPTIONS') {
      next();
      return;
    }
    const allowed = routeMethods(router, req.path);
    if (allowed.size === 0) {
      next();
      return;
    }
    res.setHeader('Allow', [...allowed].sort().join(', '));
    next(ProblemError.from('METHOD_NOT_ALLOWED'));
  };
}
