/** `requestId()`: echo a well-formed `X-Request-ID`, else make one, and expose it on the response. */
import { randomUUID } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { contextOf } from './context.js';

const SAFE_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

export interface RequestIdOptions {
  /** Header read and written. @default 'x-request-id' */
  header?: string;
  /** Makes a new id. @default () => `req_${randomUUID()}` */
  generate?: () => string;
}

const newRequestId = () => `req_${randomUUID()}`;

export function requestId(options: RequestIdOptions = {}): RequestHandler {
  const header = (options.header ?? 'x-request-id').toLowerCase();
  const generate = options.generate ?? newRequestId;
  return (req, res, next) => {
    ensureRequestId(req, res, header, generate);
    next();
  };
}

/**
 * The request's id: the one a `requestId()` layer gave it, else (no such layer ran, e.g. a host error answered by
 * `problemJson()`) a well-formed `X-Request-ID`, else a new one; exposed on the response when it is new here.
 */
export function ensureRequestId(req: Request, res: Response, header = 'x-request-id', generate: () => string = newRequestId): string {
  const ctx = contextOf(req);
  if (!ctx.requestId) {
    const sent = req.headers[header];
    // Only ids of safe characters are echoed: anything else could inject into headers or logs.
    ctx.requestId = typeof sent === 'string' && SAFE_ID.test(sent) ? sent : generate();
    if (!res.headersSent) res.setHeader(header, ctx.requestId);
  }
  return ctx.requestId;
}
