/**
 * What a router's route table answers, read from the router itself: which methods its routes take at a path. For
 * the requests off the hot path that ask: a wrong method (lib/method-not-allowed.ts) and a request with a body
 * (lib/prelude.ts: the body is read only where a route takes it).
 */
import type { Router } from 'express';

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

/** The routes of the router whose path matches `path`, in the router's order. */
function* routesAt(router: Router, path: string): Generator<NonNullable<RouteLayer['route']>> {
  for (const layer of router.stack as unknown as RouteLayer[]) {
    if (!layer.route || typeof layer.match !== 'function') continue;
    let matched: unknown;
    try {
      matched = layer.match(path);
    } catch {
      // A parameter that is not valid percent-encoding: the route would not take this path either.
      matched = false;
    }
    if (matched) yield layer.route;
  }
}

/** The methods the router's routes answer at `path`, as Express lists them (empty: no route has this path). */
export function routeMethods(router: Router, path: string): Set<string> {
  const allowed = new Set<string>();
  for (const route of routesAt(router, path)) for (const method of methodsOf(route)) allowed.add(method);
  return allowed;
}

/** Whether one of the router's routes answers `method` (upper case) at `path` (an `all()` route answers any); stops at the first. */
export function routeAnswers(router: Router, method: string, path: string): boolean {
  for (const route of routesAt(router, path)) if (route.methods._all || methodsOf(route).includes(method)) return true;
  return false;
}
