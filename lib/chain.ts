/**
 * `chain(handlers)`: several middleware run as ONE router layer. Express's router walks its layer list for
 * every request (path match, parameter handling, a `next` closure per layer), so a router's fixed prelude
 * (request id, authentication, tenant, body) costs less as one layer than as five. Each handler still gets
 * `next`, `next(err)` stops the chain with that error, and a rejected promise is passed on, as Express 5 does.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';

export function chain(handlers: readonly RequestHandler[]): RequestHandler {
  const list = [...handlers];
  if (list.length === 1) return list[0]!;
  return (req: Request, res: Response, next: NextFunction) => {
    let i = 0;
    const step = (err?: unknown): void => {
      // As Express treats a `use` layer: a falsy value or 'route' goes on to the next handler, 'router' leaves
      // the router, anything else is an error that skips the rest.
      if (err && err !== 'route') {
        next(err);
        return;
      }
      const handler = list[i++];
      if (handler === undefined) {
        next();
        return;
      }
      try {
        const result: unknown = handler(req, res, step);
        if (result instanceof Promise) result.then(undefined, (e: unknown) => next(e || new Error('Rejected promise')));
      } catch (e) {
        next(e);
      }
    };
    step();
  };
}
