/**
 * `methodNotAllowed(router)`: a router's last layer before its error handler. A request that gets there matched
 * none of the router's routes; when its path is the path of one of them all the same, what is wrong is the method:
 * 405 with `Allow`, the methods the resource has (RFC 9110 §15.5.6), rather than the 404 that says the resource is
 * not there. Any other path passes on to the host's next layers, as before. `OPTIONS` passes on too: Express
 * answers it with the same `Allow` list once nothing else did, which in an app whose last layer is a catch-all
 * (`notFound()`) never happens: there, `{ answerOptions: true }` answers it here, as Express would.
 */
import type { RequestHandler, Router } from 'express';
import { ProblemError } from './errors.js';
import { ACCEPT_PATCH } from './json-body.js';
import { routeMethods } from './route-table.js';

/** The layer described above, for `router`: mount it after the router's routes, before its error handler. */
export function methodNotAllowed(router: Router, options: { answerOptions?: boolean } = {}): RequestHandler {
  return (req, res, next) => {
    if (req.method === 'OPTIONS' && !options.answerOptions) {
      // RFC 5789 §3.1: the OPTIONS answer of a resource that takes PATCH says in what (Express writes the rest).
      if (routeMethods(router, req.path).has('PATCH')) res.setHeader('Accept-Patch', ACCEPT_PATCH);
      next();
      return;
    }
    const allowed = routeMethods(router, req.path);
    if (allowed.size === 0) {
      next();
      return;
    }
    const allow = [...allowed].sort().join(', ');
    res.setHeader('Allow', allow);
    if (req.method !== 'OPTIONS') {
      next(ProblemError.from('METHOD_NOT_ALLOWED'));
      return;
    }
    if (allowed.has('PATCH')) res.setHeader('Accept-Patch', ACCEPT_PATCH);
    // Express's own answer (router's sendOptionsResponse): 200, the list as text.
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.status(200).send(allow);
  };
}
