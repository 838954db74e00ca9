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

/** `value` when it is an id of safe characters (anything else could inject into headers or logs). */
const safe = (value: unknown): string | undefined => (typeof value === 'string' && SAFE_ID.test(value) ? value : undefined);
/** The counter pino-http's default `genReqId` makes (1, 2, …), as its log line writes it. */
const counted = (value: unknown): string | undefined => (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? String(value) : undefined);

/**
 * The request's id: the one a `requestId()` layer gave it; else the host's own, when a layer of the host's gave it one
 * already (the response's header, or `req.id` as pino-http's `genReqId` sets it), so the kit's answers and the host's
 * log lines name the same id; else (no layer ran, e.g. a host error answered by `problemJson()`) a well-formed
 * `X-Request-ID`, else the number pino-http's default `genReqId` gave it, else a new one. Exposed on the response
 * when it is not there yet.
 */
export function ensureRequestId(req: Request, res: Response, header = 'x-request-id', generate: () => string = newRequestId): string {
  const ctx = contextOf(req);
  if (!ctx.requestId) {
    const exposed = res.getHeader(header);
    const hostId = (req as { id?: unknown }).id;
    // A client's well-formed id is echoed (CONTRACT.md §2) before a per-process counter of the host's, which is no id
    // across restarts and instances; a host's id of its own making (text) before both.
    ctx.requestId = safe(exposed) ?? safe(hostId) ?? safe(req.headers[header]) ?? counted(hostId) ?? generate();
    if (!res.headersSent && exposed !== ctx.requestId) res.setHeader(header, ctx.requestId);
  }
  return ctx.requestId;
}
