/** `requestId()`: echo a well-formed `X-Request-ID`, else make one, and expose it on the response. */
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import { contextOf } from './context.js';

const SAFE_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

export interface RequestIdOptions {
  /** Header read and written. @default 'x-request-id' */
  header?: string;
  /** Makes a new id. @default () => `req_${randomUUID()}` */
  generate?: () => string;
}

export function requestId(options: RequestIdOptions = {}): RequestHandler {
  const header = (options.header ?? 'x-request-id').toLowerCase();
  const generate = options.generate ?? (() => `req_${randomUUID()}`);
  return (req, res, next) => {
    const ctx = contextOf(req);
    if (!ctx.requestId) {
      const sent = req.headers[header];
      // Only ids of safe characters are echoed: anything else could inject into headers or logs.
      ctx.requestId = typeof sent === 'string' && SAFE_ID.test(sent) ? sent : generate();
      res.setHeader(header, ctx.requestId);
    }
    next();
  };
}
