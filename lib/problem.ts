/**
 * `problemJson()`: the single error formatter. Turns anything passed to `next(err)` into an
 * RFC 9457 Problem (or the `simple` / `nest` shapes of the seeds), masking what it does not know.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, validateHeaderName, validateHeaderValue, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { contextOf } from './context.js';
import { DUPLICATE_MEMBER, duplicateMemberMessage } from './duplicate-members.js';
import { INVALID_UTF8, ProblemError, isStorageUnavailable, type ErrorKey, type FieldViolation } from './errors.js';
import { getDefaultLogger, type Logger } from './logger.js';
import { isoSeconds } from './pagination.js';
import { isWellFormedQuery } from './query-string.js';
import { BODY_NOT_OBJECT } from './validation.js';
import { checkNestedOptions } from './options.js';
import { ensureRequestId } from './request-id.js';

/** The full RFC 9457 body (seed 002 `dto.Problem`, a superset of seed 000/001 `SimpleResponse`). */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: number;
  i18n_key: string;
  message: string;
  timestamp: string;
  request_id: string;
  trace_id?: string;
  span_id?: string;
  service: string;
  errors?: FieldViolation[];
  retry_after?: number;
  [extension: string]: unknown;
}

/** What a formatter returns: the body and, optionally, its content type. */
export interface FormattedProblem {
  body: unknown;
  contentType?: string;
}

/** A custom formatter: gets the full problem and the catalogue key, returns the body to send. */
export type ProblemFormatter = (problem: ProblemDetails, key: ErrorKey, req: Request) => FormattedProblem;

/** `problem` (RFC 9457, default), `simple` (`{code, message, timestamp}`), `nest` (`{statusCode, error, message, code}`), or a function. */
export type ErrorFormat = 'problem' | 'simple' | 'nest' | ProblemFormatter;

export interface ProblemJsonOptions {
  /** @default 'problem' */
  format?: ErrorFormat;
  /** `service` member of the body. @default 'mfa-kit' */
  service?: string;
  /** Prefix of the `type` URI; the problem's slug is appended. `'about:blank'` sends that for all. @default DEFAULT_TYPE_BASE_URI */
  typeBaseUri?: string;
  /** Where unknown errors are logged (with the request id). @default pino on stdout */
  logger?: Logger;
  /**
   * Called with each unexpected error (a 5xx the kit logs as `unhandled error`, its own or from a layer of yours inside a
   * router, such as `authenticate`), after that line: hand it to your error tracker (Sentry's `captureException`). It is
   * the error as thrown: its message and stack may hold SQL or values, and what you send on is yours to scrub. A throw
   * from it is logged and does not change the answer. @default none
   */
  report?: (err: unknown, req: Request) => void;
}

/** `ProblemJsonOptions` with its defaults filled in (`report` stays optional: none by default). */
export type ResolvedProblemOptions = Required<Omit<ProblemJsonOptions, 'report'>> & Pick<ProblemJsonOptions, 'report'>;

export const DEFAULT_TYPE_BASE_URI = 'https://express-mfa-kit.dev/errors/';
export const DEFAULT_SERVICE = 'mfa-kit';
/** The content type of a format that names none (`simple`, `nest`, most functions). */
const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
/** Seconds a client is told to wait when storage is unavailable. */
export const STORAGE_RETRY_AFTER_SECONDS = 5;

/** A 401's challenge when its thrower named none (RFC 9110 §15.5.2: a 401 carries `WWW-Authenticate`). */
const DEFAULT_CHALLENGES: Partial<Record<ErrorKey, string>> = {
  UNAUTHENTICATED: 'Bearer',
  INVALID_INTERNAL_KEY: 'ApiKey',
};

const STANDARD_MEMBERS = new Set(['type', 'title', 'status', 'detail', 'instance', 'code', 'i18n_key', 'message', 'timestamp', 'request_id', 'trace_id', 'span_id', 'service', 'errors', 'retry_after']);

/** Members a thrower added (e.g. a 409's current `sync_token`): every format carries them. */
const extensionsOf = (problem: ProblemDetails): Record<string, unknown> =>
  Object.fromEntries(Object.entries(problem).filter(([name]) => !STANDARD_MEMBERS.has(name)));

/** The presets need no request (so the parser-error answer below can use them). */
const PRESETS: Record<'problem' | 'simple' | 'nest', (problem: ProblemDetails, key: ErrorKey) => FormattedProblem> = {
  problem: (problem) => ({ body: problem, contentType: 'application/problem+json; charset=utf-8' }),
  simple: (problem) => ({ body: { code: problem.code, message: problem.message, timestamp: problem.timestamp, ...extensionsOf(problem) } }),
  nest: (problem, key) => ({
    body: { statusCode: problem.status, error: STATUS_CODES[problem.status] ?? 'Error', message: problem.message, code: key, ...extensionsOf(problem) },
  }),
};

/** W3C Trace Context `traceparent`: version, trace-id, parent-id, flags; a later version may append fields. */
const TRACEPARENT = /^(?<version>[0-9a-f]{2})-(?<traceId>[0-9a-f]{32})-(?<spanId>[0-9a-f]{16})-(?<flags>[0-9a-f]{2})(?<more>-.*)?$/;
const ZEROS = /^0+$/;

/**
 * Seed 002's `trace_id` (its example: `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01`, a whole
 * `traceparent`) and `span_id` (the parent-id) of a valid `traceparent`, else undefined. As W3C Trace Context says,
 * a header with version `ff`, an all-zero trace-id or parent-id, or (version 00) anything after the flags is invalid
 * and treated as absent; of a later version, the four fields this version defines are kept.
 */
function traceOf(header: unknown): { traceparent: string; spanId: string } | undefined {
  const { version, traceId, spanId, flags, more } = (typeof header === 'string' ? TRACEPARENT.exec(header.trim())?.groups : undefined) ?? {};
  if (version === undefined || traceId === undefined || spanId === undefined || flags === undefined) return undefined;
  if (version === 'ff' || (version === '00' && more !== undefined) || ZEROS.test(traceId) || ZEROS.test(spanId)) return undefined;
  return { traceparent: `${version}-${traceId}-${spanId}-${flags}`, spanId };
}
/**
 * Query parameter names whose values a Problem's `instance` does not repeat: credentials, codes, sessions, signatures.
 * Anywhere in the name (`apikey`, `jsessionid`, `passphrase`, `requestSig`), which redacts a few ordinary names too
 * (`author`, `design`): better than repeating a secret. The short words that are parts of too many ordinary ones
 * (`spinner`, `inside`) count as words of the name only (`otp`, `sms_otp`, `smsOtp`, `userPin`, `sid`).
 */
const SENSITIVE_PART = /key|token|secret|code|pass|pwd|jwt|auth|session|bearer|cookie|sig|credential/i;
const SENSITIVE_WORDS = new Set(['otp', 'pin', 'sid']);
const isSensitiveName = (name: string): boolean =>
  SENSITIVE_PART.test(name) || name.split(/[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])/).some((word) => SENSITIVE_WORDS.has(word.toLowerCase()));

/** `scheme://authority` in front of a request target sent in absolute form (RFC 9112 §3.2.2), userinfo included. */
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * The request's target as path and query (origin form, RFC 9112 §3.2.1): a target sent in absolute form
 * (`http://user:pass@host/path`, which node:http and Express take as they are) without its scheme and authority,
 * so neither a Problem's `instance` nor a log line repeats a password put in the URL's userinfo.
 */
export function requestTarget(req: Pick<Request, 'url' | 'originalUrl'>): string {
  const url = req.originalUrl || req.url;
  if (url.startsWith('/')) return url;
  const authority = ABSOLUTE_FORM.exec(url);
  if (!authority) return url;
  const rest = url.slice(authority[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** Whether a request target in absolute form carries userinfo (`http://user:pass@host/…`): an error, RFC 9110 §4.2.4. */
export const hasUserinfo = (target: string): boolean => !target.startsWith('/') && (ABSOLUTE_FORM.exec(target)?.[0].includes('@') ?? false);

/** What may not stand as it is in a URI reference (RFC 3986 §2): anything but unreserved, reserved and `%` with two hex digits. */
const NOT_URI = /[^A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]|%(?![0-9A-Fa-f]{2})/g;
const percentEncoded = (c: string): string => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;

/**
 * The request path and query, with values of secret-looking parameters replaced, bounded in length: a URI reference
 * (RFC 9457 §3.1.5), so what node:http lets through raw (`"`, `<`, `{`, a space in an absolute-form target) is
 * percent-encoded.
 */
function instanceOf(req: Request): string {
  const url = requestTarget(req);
  const q = url.indexOf('?');
  // node:http gives the target as latin1 text, one character a byte: each is encoded as that byte. Only the path: the
  // query is written back by URLSearchParams, encoded, or left out.
  // A path that begins `//` would read as another host's (a network-path reference, RFC 3986 §4.2): its second `/` is encoded.
  const path = (q === -1 ? url : url.slice(0, q)).replace(NOT_URI, percentEncoded).replace(/^\/\//, '/%2F');
  // A query wellFormedQuery() refused would come back rewritten (U+FFFD, `%25ZZ`): a URL the client never sent.
  if (q === -1 || !isWellFormedQuery(url)) return bounded(path);
  const params = new URLSearchParams(url.slice(q + 1));
  for (const name of new Set(params.keys())) if (isSensitiveName(name)) params.set(name, '[redacted]');
  return bounded(`${path}?${params.toString()}`);
}

/** At most 512 characters, not cut inside a percent-encoded byte (`%2` is no URI reference). */
const bounded = (reference: string): string => reference.slice(0, 512).replace(/%[0-9A-Fa-f]?$/, '');

/** The Content-Encodings body-parser decodes on this Node (zstd only where zlib has it); identity goes without saying. */
const DECODED = ['gzip', 'deflate', 'br', ...('createZstdDecompress' in zlib ? ['zstd'] : [])];
const BODY_ENCODINGS = `identity, ${DECODED.slice(0, -1).join(', ')} or ${DECODED.at(-1)!}`;

interface BodyParserError {
  type?: unknown;
  status?: unknown;
  /** A zlib error's code (`Z_DATA_ERROR`, brotli's `ERR__ERROR_FORMAT_…`), when decoding the body failed. */
  code?: unknown;
  expose?: unknown;
  /** The repeated member name (`DUPLICATE_MEMBER`). */
  member?: unknown;
  /** The body text that failed to parse (body-parser attaches it). */
  body?: unknown;
}

/** Whether `text` is JSON after all: a scalar (`null`, `5`, `"x"`), which the strict parser refuses like a syntax error. */
function isJsonScalar(text: unknown): boolean {
  if (typeof text !== 'string') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** The catalogue's entries that name a status and nothing more: a host's error of that status is one of these. */
const GENERIC_BY_STATUS: Partial<Record<number, ErrorKey>> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHENTICATED',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  408: 'REQUEST_TIMEOUT',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  429: 'TOO_MANY_REQUESTS',
  431: 'HEADERS_TOO_LARGE',
  500: 'INTERNAL',
};

/** passport's `AuthenticationError` (lib/errors/authenticationerror.js): `name`, the status text as message, a 4xx `status`. */
function isPassportRefusal(err: unknown): err is Error & { status: number } {
  if (!(err instanceof Error) || err.name !== 'AuthenticationError') return false;
  const { status } = err as Error & { status?: unknown };
  return typeof status === 'number' && Number.isInteger(status) && status >= 400 && status <= 499 && err.message === STATUS_CODES[status];
}

/** Maps anything thrown to a `ProblemError`; returns whether it was unexpected (to be logged as an error). */
export function toProblemError(err: unknown): { problem: ProblemError; unexpected: boolean } {
  if (err instanceof ProblemError) return { problem: err, unexpected: err.status >= 500 && err.key !== 'STORAGE_UNAVAILABLE' };
  const e = (typeof err === 'object' && err !== null ? err : {}) as BodyParserError;
  switch (e.type) {
    case 'entity.parse.failed':
      if (isJsonScalar(e.body)) {
        const detail = BODY_NOT_OBJECT;
        return { problem: ProblemError.invalid('(body)', 'type', detail), unexpected: false };
      }
      return { problem: ProblemError.from('MALFORMED_JSON'), unexpected: false };
    case INVALID_UTF8:
      return { problem: ProblemError.from('MALFORMED_JSON', 'The request body is not valid UTF-8.'), unexpected: false };
    case DUPLICATE_MEMBER: {
      // I-JSON (RFC 7493 §2.3): which of the two would count depends on the parser; neither does.
      const detail = `(body): ${duplicateMemberMessage(String(e.member))}`;
      return { problem: ProblemError.invalid('(body)', 'duplicate', detail), unexpected: false };
    }
    case 'entity.too.large':
      return { problem: ProblemError.from('PAYLOAD_TOO_LARGE'), unexpected: false };
    case 'charset.unsupported':
      return { problem: ProblemError.from('UNSUPPORTED_MEDIA_TYPE', 'The request body must be UTF-8 application/json.'), unexpected: false };
    case 'encoding.unsupported':
      // RFC 9110 §15.5.16: a Content-Encoding the server cannot decode is a 415 too; the value is not echoed.
      // §12.5.3: such a 415 lists the codings the server takes in Accept-Encoding.
      return {
        problem: ProblemError.from('UNSUPPORTED_MEDIA_TYPE', { detail: `The request's Content-Encoding is not supported: send the body as ${BODY_ENCODINGS}.`, headers: { 'Accept-Encoding': DECODED.join(', ') } }),
        unexpected: false,
      };
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return { problem: ProblemError.from('VALIDATION_FAILED', 'The request body could not be read.'), unexpected: false };
    default:
      break;
  }
  // A body that is not what its Content-Encoding says: zlib's error, made a 400 by body-parser (no `type`). Codes:
  // zlib's Z_DATA_ERROR, Z_BUF_ERROR (cut short)…; brotli's ERR__ERROR_FORMAT_…; zstd's ZSTD_error_….
  if (e.type === undefined && e.status === 400 && typeof e.code === 'string' && /^(Z_|ERR__ERROR_|ZSTD_)/.test(e.code)) {
    return { problem: ProblemError.from('VALIDATION_FAILED', 'The request body could not be decoded: it is not what its Content-Encoding says.'), unexpected: false };
  }
  // Express's router throws a URIError (status 400, not `expose`d) for a path parameter with broken
  // percent-encoding (`/sync/%`, `/sync/%zz`): the client's mistake, not ours. Its message echoes the value.
  if (err instanceof URIError && e.status === 400) {
    const detail = 'The URL path has malformed percent-encoding.';
    return { problem: ProblemError.invalid('(path)', 'format', detail), unexpected: false };
  }
  if (isStorageUnavailable(err)) {
    return { problem: ProblemError.from('STORAGE_UNAVAILABLE', { retryAfter: STORAGE_RETRY_AFTER_SECONDS, cause: err }), unexpected: false };
  }
  // Passport's refusal with `failWithError: true` (its AuthenticationError: a 401, or a strategy's 400, no `expose`):
  // the caller's credentials, not a fault of ours, answered as the http-errors errors below. Its message is the status
  // text; the challenge its strategy gave, passport has set on the response already (sendProblem keeps it).
  if (isPassportRefusal(err)) {
    const generic = GENERIC_BY_STATUS[err.status];
    return { problem: generic !== undefined ? ProblemError.from(generic, { cause: err }) : ProblemError.forStatus(err.status, { cause: err }), unexpected: false };
  }
  // Other http-errors errors (a host's own middleware or routes: `createError(403, 'Account suspended')`) keep their
  // status, and a client error its message (http-errors exposes those of 4xx only); a kit entry of the same status
  // would name a cause that is not this one (a 403 is no tenant mismatch), so the generic one says the status alone.
  if (typeof e.status === 'number' && Number.isInteger(e.status) && e.status >= 400 && e.status <= 599 && typeof e.expose === 'boolean') {
    const message = (err as { message?: unknown }).message;
    const detail = e.expose && typeof message === 'string' && message !== '' ? message : undefined;
    const retryAfter = Number((err as { headers?: Record<string, unknown> }).headers?.['Retry-After']);
    const init = { ...(detail !== undefined && { detail }), ...(Number.isSafeInteger(retryAfter) && retryAfter > 0 && { retryAfter }), cause: err };
    const generic = GENERIC_BY_STATUS[e.status];
    return { problem: generic !== undefined ? ProblemError.from(generic, init) : ProblemError.forStatus(e.status, init), unexpected: e.status >= 500 };
  }
  return { problem: ProblemError.from('INTERNAL', { cause: err }), unexpected: true };
}

type BodyOptions = { service: string; typeBaseUri: string };

/** The members every problem has, from the catalogue entry and what is known of the request. */
function problemBody(problem: ProblemError, options: BodyOptions, instance: string, requestId: string): ProblemDetails {
  const { spec } = problem;
  return {
    type: options.typeBaseUri === 'about:blank' ? 'about:blank' : `${options.typeBaseUri}${spec.slug}`,
    title: spec.title,
    status: spec.status,
    detail: problem.detail,
    instance,
    code: spec.code,
    i18n_key: spec.i18nKey,
    message: problem.detail,
    timestamp: isoSeconds(new Date()),
    request_id: requestId,
    service: options.service,
  };
}

/** Builds the full RFC 9457 body for a problem on a request. */
export function buildProblem(problem: ProblemError, req: Request, options: BodyOptions): ProblemDetails {
  const body = problemBody(problem, options, instanceOf(req), contextOf(req).requestId);
  const trace = traceOf(req.headers.traceparent);
  if (trace) {
    body.trace_id = trace.traceparent;
    body.span_id = trace.spanId;
  }
  if (problem.errors?.length) body.errors = problem.errors;
  if (problem.retryAfter !== undefined) body.retry_after = problem.retryAfter;
  if (problem.extensions) {
    for (const [name, value] of Object.entries(problem.extensions)) if (!(name in body)) body[name] = value;
  }
  return body;
}

/** Writes one problem to the response in the chosen format. */
export function sendProblem(res: Response, req: Request, problem: ProblemError, options: Pick<ResolvedProblemOptions, 'format' | 'service' | 'typeBaseUri'>): void {
  const details = buildProblem(problem, req, options);
  const formatter: ProblemFormatter = typeof options.format === 'function' ? options.format : PRESETS[options.format];
  const { body, contentType } = formatter(details, problem.key, req);
  if (problem.retryAfter !== undefined) res.setHeader('Retry-After', String(problem.retryAfter));
  // A 401 carries a challenge: the problem's own; for passport's refusal, the one its strategy set on the response, if
  // any; else the default.
  const strategyChallenge = isPassportRefusal(problem.cause) && res.hasHeader('WWW-Authenticate');
  if (problem.challenge !== undefined || (problem.status === 401 && !strategyChallenge)) res.setHeader('WWW-Authenticate', problem.challenge ?? DEFAULT_CHALLENGES[problem.key] ?? 'Bearer');
  if (problem.headers) for (const [name, value] of Object.entries(problem.headers)) res.setHeader(name, value);
  res.status(problem.status);
  res.setHeader('Content-Type', contentType ?? JSON_CONTENT_TYPE);
  res.setHeader('Cache-Control', 'no-store');
  res.send(JSON.stringify(body));
}

const FORMATS = new Set(['problem', 'simple', 'nest']);

/** The members of `ProblemJsonOptions`. */
const PROBLEM_OPTION_NAMES = ['format', 'service', 'typeBaseUri', 'logger', 'report'] satisfies ReadonlyArray<keyof ProblemJsonOptions>;

/** Checks a router's `errors` option at set-up: an object of the formatter's options (not `'nest'` alone, no misspelt member). */
export function checkErrorsOption(factory: string, errors: unknown): void {
  // `logger` too: one object may serve `problemJson()` and the routers (whose own `logger` wins).
  checkNestedOptions(factory, 'errors', errors, PROBLEM_OPTION_NAMES, "{ format: 'nest' }");
}

/** Resolves formatter options to a complete set, failing at set-up on an unknown preset name. */
export function resolveProblemOptions(options: ProblemJsonOptions = {}): ResolvedProblemOptions {
  // A misspelt member would leave the default format without a word: refused at set-up.
  checkNestedOptions('problemJson', 'options', options, PROBLEM_OPTION_NAMES, "{ format: 'nest' }");
  const format = options.format ?? 'problem';
  if (typeof format !== 'function' && !FORMATS.has(format)) {
    throw new TypeError(`express-mfa-kit: unknown error format '${String(format)}': use 'problem', 'simple', 'nest' or a function (problem, key, req) => ({ body })`);
  }
  return {
    format,
    service: options.service ?? DEFAULT_SERVICE,
    typeBaseUri: options.typeBaseUri ?? DEFAULT_TYPE_BASE_URI,
    logger: options.logger ?? getDefaultLogger(),
    ...(options.report !== undefined && { report: checkReport(options.report) }),
  };
}

function checkReport(report: unknown): NonNullable<ProblemJsonOptions['report']> {
  if (typeof report !== 'function') throw new TypeError("express-mfa-kit: the errors option 'report' must be a function (err, req) => void, e.g. (err) => Sentry.captureException(err)");
  return report as NonNullable<ProblemJsonOptions['report']>;
}

/**
 * `app.use(notFound)` instead of `app.use(notFound())`: Express would call the factory with the request, which
 * returns a handler and answers nothing, and every such request would hang. Thrown from inside Express, this goes
 * to the app's error handler (or Express's own page) with the fix in the message.
 */
function mountedWithoutCall(factory: string, first: unknown): void {
  if (typeof first === 'object' && first !== null && 'method' in first && 'headers' in first && ('socket' in first || 'url' in first)) {
    throw new TypeError(`express-mfa-kit: ${factory} was mounted without being called: use app.use(${factory}()), not app.use(${factory})`);
  }
}

/** The error handler every router ends with; mount it app-wide too, to format your own errors the same way. */
export function problemJson(options: ProblemJsonOptions = {}): ErrorRequestHandler {
  mountedWithoutCall('problemJson', options);
  const resolved = resolveProblemOptions(options);
  const { logger } = resolved;
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const { problem, unexpected } = toProblemError(err);
    // Its own when no requestId() layer ran before the error (the host's routes, its body parser): CONTRACT.md §2.
    const requestId = ensureRequestId(req, res);
    if (unexpected) {
      logger.error({ ...problem.logFields, request_id: requestId, error: summarizeError(err) }, 'unhandled error');
      if (resolved.report) {
        try {
          resolved.report(err, req);
        } catch (thrown) {
          logger.error({ request_id: requestId, error: summarizeError(thrown) }, "the errors option 'report' threw");
        }
      }
    } else if (problem.key === 'STORAGE_UNAVAILABLE') {
      logger.warn({ request_id: requestId, reason: describeCause(err) }, 'storage unavailable');
    }
    sendProblem(res, req, problem, resolved);
  };
}

/** Text that starts like an SQL statement. */
const SQL_TEXT = /^\s*\(?\s*(?:select|insert|update|delete|with|create|alter|drop|truncate|copy|begin|commit|rollback|set|lock)\b/i;

/**
 * What of an unknown error may be logged: its name, code and first message line, with the SQL
 * text knex prepends (`<sql> - <reason>`) cut off. No stack, no SQL, no bound values.
 */
export function summarizeError(err: unknown): { name: string; code?: string; message: string } {
  if (!(err instanceof Error)) return { name: typeof err, message: 'non-error thrown' };
  const code = (err as { code?: unknown }).code;
  // knex puts the statement before the driver's message (`insert into … - <message>`), on as many lines as the SQL
  // has: the message is what follows the last ' - '. Whatever still reads like SQL is left out.
  const cut = err.message.lastIndexOf(' - ');
  let tail = (cut === -1 ? err.message : err.message.slice(cut + 3)).split('\n', 1)[0] ?? '';
  // knex's compile errors end with the statement: "Undefined binding(s) detected … query: select …".
  const query = tail.indexOf(' query: ');
  if (query !== -1) tail = tail.slice(0, query);
  // Postgres's data exceptions (class 22) quote the value they refused ("invalid input syntax for type uuid: …").
  const message = typeof code === 'string' && code.startsWith('22') ? '(data exception: the value is left out)' : SQL_TEXT.test(tail) ? '(SQL left out)' : tail.slice(0, 200);
  return typeof code === 'string' ? { name: err.name, code, message } : { name: err.name, message };
}

function describeCause(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown };
  if (typeof e.code === 'string') return e.code;
  return typeof e.name === 'string' ? e.name : 'unknown';
}

/** Node's HTTP parser errors (`clientError`), by `err.code`, as catalogue problems; any other one is a 400. */
const CLIENT_ERRORS: Partial<Record<string, ErrorKey>> = {
  HPE_HEADER_OVERFLOW: 'HEADERS_TOO_LARGE',
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 'PAYLOAD_TOO_LARGE',
  ERR_HTTP_REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
};

/** A request line's start: a method, one space, a target's first character. */
const REQUEST_LINE_START = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^\s]/;

/**
 * Whether Node refused the headers' size because of the request line (a target over the limit): 414 URI Too Long
 * (RFC 9110 §15.5.15) rather than 431, which is for header fields. Node gives the data it was parsing as `rawPacket`:
 * when it begins with a request line that is more than half of the head it holds (or has no line end yet), the
 * target is what is too long. A head split over several reads, its start in another packet, stays a 431.
 */
function requestLineTooLong(err: Error): boolean {
  const { code, rawPacket } = err as { code?: unknown; rawPacket?: unknown };
  if (code !== 'HPE_HEADER_OVERFLOW' || !Buffer.isBuffer(rawPacket) || !REQUEST_LINE_START.test(rawPacket.toString('latin1', 0, 64))) return false;
  const lineEnd = rawPacket.indexOf(0x0a);
  const headEnd = rawPacket.indexOf('\r\n\r\n', 0, 'latin1');
  return lineEnd === -1 || lineEnd * 2 > (headEnd === -1 ? rawPacket.length : headEnd);
}

/** Whether the bytes Node refused begin a `HEAD` request: its answer carries no body (RFC 9110 §9.3.2). */
function refusedHead(err: Error): boolean {
  const { rawPacket } = err as { rawPacket?: unknown };
  return Buffer.isBuffer(rawPacket) && rawPacket.toString('latin1', 0, 5) === 'HEAD ';
}

export interface ProblemClientErrorOptions {
  format?: 'problem' | 'simple' | 'nest';
  service?: string;
  typeBaseUri?: string;
  /**
   * Header fields every such answer carries too, e.g. the app's security headers (which its middleware never gets to
   * set here). Checked at set-up as Node checks `setHeader`, and ASCII only (the answer is written as text); not one
   * the answer writes itself (Content-Type, Content-Length, Cache-Control, X-Request-ID, Connection, Transfer-Encoding).
   */
  headers?: ReadonlyArray<readonly [name: string, value: string]>;
}

const NOT_ASCII = /[^\t\x20-\x7e]/;

/** The answer's own header fields: `headers` may not name them. */
const CLIENT_ERROR_OWN_HEADERS = new Set(['content-type', 'content-length', 'cache-control', 'x-request-id', 'connection', 'transfer-encoding']);

/** `headers` as header lines (each ending in CRLF), or a TypeError naming the field that is refused. */
function headerLines(headers: ProblemClientErrorOptions['headers']): string {
  if (!Array.isArray(headers)) throw new TypeError("express-mfa-kit: problemClientError() option 'headers' must be a list of [name, value] pairs");
  return headers
    .map((pair: unknown) => {
      const [name, value] = Array.isArray(pair) ? (pair as unknown[]) : [];
      if (typeof name !== 'string' || typeof value !== 'string') throw new TypeError("express-mfa-kit: problemClientError() option 'headers' must be a list of [name, value] pairs of strings");
      try {
        validateHeaderName(name);
        validateHeaderValue(name, value);
        // Node would write a value's bytes 0x80-0xFF as latin1; this answer is a string written as UTF-8.
        if (NOT_ASCII.test(value)) throw new TypeError('not ASCII');
      } catch {
        throw new TypeError(`express-mfa-kit: problemClientError() option 'headers': '${name.slice(0, 64)}' is not a valid header name, or its value is not a valid header value`);
      }
      if (CLIENT_ERROR_OWN_HEADERS.has(name.toLowerCase())) throw new TypeError(`express-mfa-kit: problemClientError() option 'headers' may not set ${name}: the answer writes it itself`);
      return `${name}: ${value}\r\n`;
    })
    .join('');
}

/**
 * Writes `problem` on a socket node:http never handed to the app, then closes it: what `problemClientError` and
 * `problemConnectRefusal` answer. The options are checked when this is made, not per answer.
 */
function socketAnswerer(options: ProblemClientErrorOptions): (socket: Duplex, problem: ProblemError, headOnly?: boolean) => void {
  const { headers = [], ...formatting } = options;
  const resolved = resolveProblemOptions(formatting); // checks the preset's name
  const format = options.format ?? 'problem';
  const extra = headerLines(headers);
  return (socket, problem, headOnly = false) => {
    const { spec } = problem;
    const requestId = `req_${randomUUID()}`;
    const details = problemBody(problem, resolved, '', requestId);
    const { body, contentType } = PRESETS[format](details, problem.key);
    // No request was read, so there is no instance to name (JSON.stringify leaves the member out).
    const text = JSON.stringify(format === 'problem' ? { ...details, instance: undefined } : body);
    socket.end(
      `HTTP/1.1 ${spec.status} ${STATUS_CODES[spec.status] ?? ''}\r\nContent-Type: ${contentType ?? JSON_CONTENT_TYPE}\r\n` +
        `Content-Length: ${Buffer.byteLength(text)}\r\nCache-Control: no-store\r\nX-Request-ID: ${requestId}\r\n${extra}Connection: close\r\n\r\n${headOnly ? '' : text}`,
      () => socket.destroy(),
    );
  };
}

/**
 * A `clientError` listener for the http server: what Node's HTTP parser refuses before Express sees a request
 * (a request line and headers over `--max-http-header-size`, bytes that are not HTTP, a request not received in
 * time) is answered as a Problem too, in a preset format, instead of Node's bare status line; then the
 * connection is closed. `server.on('clientError', problemClientError())`.
 */
export function problemClientError(options: ProblemClientErrorOptions = {}): (err: Error, socket: Duplex) => void {
  const answer = socketAnswerer(options);
  return (err, socket) => {
    const code = (err as { code?: unknown }).code;
    // As Node's own handler (socketOnError in lib/_http_server.js): no answer once the client has gone or a
    // response on this connection has begun to be written.
    const inFlight = (socket as { _httpMessage?: { _headerSent?: boolean } | null })._httpMessage;
    if (code === 'ECONNRESET' || !socket.writable || inFlight?._headerSent === true) {
      socket.destroy();
      return;
    }
    answer(socket, ProblemError.from(requestLineTooLong(err) ? 'URI_TOO_LONG' : (typeof code === 'string' && CLIENT_ERRORS[code]) || 'BAD_HTTP_REQUEST'), refusedHead(err));
  };
}

/**
 * A `connect` listener for an origin server: node:http never passes a `CONNECT` request to the app, and without a
 * listener it closes the connection with no answer at all. This answers it 400 as a Problem (the preset format and
 * `headers` of `problemClientError`), since an origin server tunnels nothing (RFC 9110 §9.3.6), and closes the
 * connection: bytes the client sent after the request are never read. `server.on('connect', problemConnectRefusal())`.
 */
export function problemConnectRefusal(options: ProblemClientErrorOptions = {}): (req: IncomingMessage, socket: Duplex) => void {
  const answer = socketAnswerer(options);
  return (_req, socket) => {
    // Pipelined behind a request whose answer is not written yet: an answer now would be read as that one's. The
    // connection is closed, as Node does without a listener (a client retries a request that got no answer).
    const pending = (socket as { _httpMessage?: unknown })._httpMessage;
    if (!socket.writable || (pending !== null && pending !== undefined)) {
      socket.destroy();
      return;
    }
    answer(socket, ProblemError.from('BAD_HTTP_REQUEST', 'CONNECT asks for a tunnel, and this server is not a proxy.'));
  };
}

/** A final handler for paths nobody served: 404 as a Problem. */
export function notFound(): RequestHandler;
export function notFound(...misuse: unknown[]): RequestHandler {
  mountedWithoutCall('notFound', misuse[0]);
  return (_req, _res, next) => {
    next(ProblemError.from('NOT_FOUND', 'No route matches this path.'));
  };
}
