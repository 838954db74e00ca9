/** JSON body parsing for the routers: 415 for a body that is not JSON, 413 over the limit, 400 when malformed. */
import express, { type RequestHandler } from 'express';
import { ProblemError } from './errors.js';

export const DEFAULT_BODY_LIMIT = '100kb';

const isJsonType = (type: string): boolean => /^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type);

/**
 * Parses `application/json` (and `*+json`) bodies; a body of any other type → 415 Problem. One handler in an
 * array (spread it): a request without a body (no Content-Length, no Transfer-Encoding: every GET) passes
 * straight on, without the parser's stream set-up.
 */
export function jsonBody(limit: string | number = DEFAULT_BODY_LIMIT): RequestHandler[] {
  const parse = express.json({ limit, strict: true, type: (req) => isJsonType(req.headers['content-type'] ?? '') });
  const handler: RequestHandler = (req, res, next) => {
    const length = req.headers['content-length'];
    if (length === undefined && req.headers['transfer-encoding'] === undefined) {
      next();
      return;
    }
    const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
    if (hasBody && !isJsonType(req.headers['content-type'] ?? '')) {
      next(ProblemError.from('UNSUPPORTED_MEDIA_TYPE'));
      return;
    }
    parse(req, res, next);
  };
  return [handler];
}
