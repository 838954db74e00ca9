/** JSON body parsing for the routers: 415 for a body that is not UTF-8 JSON, 413 over the limit, 400 when malformed. */
import { isUtf8 } from 'node:buffer';
import { parse as parseContentType } from 'content-type';
import express, { type Request, type RequestHandler } from 'express';
import { DUPLICATE_MEMBER, firstDuplicateMember } from './duplicate-members.js';
import { INVALID_UTF8, ProblemError } from './errors.js';

export const DEFAULT_BODY_LIMIT = '100kb';

const JSON_PATCH = /^application\/json-patch\+json\s*(;|$)/i;
const isJsonType = (type: string): boolean => /^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type);

/** The media types a PATCH of the kit's takes (RFC 5789 §3.1 `Accept-Patch`): JSON Merge Patch, as its plain JSON too. */
export const ACCEPT_PATCH = 'application/json, application/merge-patch+json';

/**
 * Whether the type names a charset other than UTF-8 (RFC 8259 §8.1: JSON between systems is UTF-8); body-parser
 * refuses any that does not start with `utf-` itself but decodes UTF-16 and UTF-32. Read with the parser
 * body-parser uses; a header it cannot parse is left to body-parser.
 */
const otherCharset = (type: string): boolean => {
  let charset: string | undefined;
  try {
    charset = parseContentType(type).parameters.charset;
  } catch {
    return false;
  }
  return charset !== undefined && charset !== '' && charset.toLowerCase() !== 'utf-8';
};

/**
 * Before the parse: body-parser decodes what is not UTF-8 into U+FFFD without a word, so a body that is not UTF-8 is
 * malformed JSON instead; and a member named twice in one object is refused (lib/duplicate-members.ts), where
 * `JSON.parse` would keep the last one without a word.
 */
const utf8Only = (_req: unknown, _res: unknown, body: Buffer): void => {
  if (!isUtf8(body)) throw Object.assign(new Error('The request body is not UTF-8.'), { type: INVALID_UTF8 });
  const member = firstDuplicateMember(body.toString('utf8'));
  if (member !== undefined) throw Object.assign(new Error('The request body names a member twice.'), { type: DUPLICATE_MEMBER, member });
};

/**
 * Reads a body of unknown length that is not JSON: 415 at its first byte; one that ends empty passes on, as none. A
 * body another layer has read already (a host's `express.text()`) had content or not, which is no longer known: 415.
 */
function refuseContent(req: Request, next: (err?: unknown) => void): void {
  if (req.readableEnded || !req.readable) {
    next(ProblemError.from('UNSUPPORTED_MEDIA_TYPE'));
    return;
  }
  const done = (err?: unknown): void => {
    req.off('data', onData).off('end', onEnd).off('error', onAborted).off('close', onAborted);
    next(err);
  };
  const onData = (): void => done(ProblemError.from('UNSUPPORTED_MEDIA_TYPE'));
  const onEnd = (): void => done();
  // The client went away mid-body (an error, or a close without one): as body-parser reports it (a 400 nobody reads,
  // no error logged).
  const onAborted = (): void => done(Object.assign(new Error('request aborted'), { type: 'request.aborted' }));
  req.on('data', onData).on('end', onEnd).on('error', onAborted).on('close', onAborted);
}

/** `jsonBody()`'s options. */
export interface JsonBodyOptions {
  /**
   * Which requests with a body are this parser's: any other passes on with its body unread, for a later layer to
   * answer (a router's prelude parses only for a method and path one of its routes answers, so a body sent where
   * there is no route gets the 404 or 405, not a 400 about the body). @default every request
   */
  only?: (req: Request) => boolean;
}

/**
 * Parses `application/json` (and `*+json`) bodies; a body of any other type → 415 Problem. One handler in an
 * array (spread it): a request without a body (no Content-Length, no Transfer-Encoding: every GET) passes
 * straight on, without the parser's stream set-up.
 */
export function jsonBody(limit: string | number = DEFAULT_BODY_LIMIT, options: JsonBodyOptions = {}): RequestHandler[] {
  let parse: RequestHandler;
  try {
    parse = express.json({ limit, strict: true, type: (req) => isJsonType(req.headers['content-type'] ?? ''), verify: utf8Only });
  } catch {
    // body-parser's own words (`option limit "lots" is invalid`) name neither the kit's option nor its form.
    throw new TypeError(`express-mfa-kit: option 'bodyLimit' must be a number of bytes or a size such as '100kb' or '1mb'`);
  }
  const { only } = options;
  const handler: RequestHandler = (req, res, next) => {
    const length = req.headers['content-length'];
    // No body (every GET): nothing to parse.
    if (length === undefined && req.headers['transfer-encoding'] === undefined) {
      next();
      return;
    }
    // Not this parser's: left unread for a later layer.
    if (only !== undefined && !only(req)) {
      next();
      return;
    }
    const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
    const type = req.headers['content-type'] ?? '';
    if (hasBody && !isJsonType(type)) {
      // A chunked body may still be empty, which is no body (as Content-Length: 0): only content is refused.
      if (length === undefined) refuseContent(req, next);
      else next(ProblemError.from('UNSUPPORTED_MEDIA_TYPE'));
      return;
    }
    // A PATCH body here is the members to change (JSON Merge Patch, RFC 7396), not a list of operations (JSON Patch,
    // RFC 6902), which as plain JSON would be a 400 about its shape: 415 with what is taken (RFC 5789 §2.2).
    if (hasBody && req.method === 'PATCH' && JSON_PATCH.test(type)) {
      res.setHeader('Accept-Patch', ACCEPT_PATCH);
      next(ProblemError.from('UNSUPPORTED_MEDIA_TYPE', 'A PATCH body is a JSON object of the members to change (application/json or application/merge-patch+json), not a JSON Patch.'));
      return;
    }
    if (hasBody && otherCharset(type)) {
      next(ProblemError.from('UNSUPPORTED_MEDIA_TYPE', 'The request body must be UTF-8 application/json.'));
      return;
    }
    parse(req, res, next);
  };
  return [handler];
}
