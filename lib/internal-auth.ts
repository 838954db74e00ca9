/** `internalAuth()`: service-to-service API keys, several at once for rotation, compared in constant time. */
import * as crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import { ProblemError } from './errors.js';
import { commaList, HTTP_TOKEN } from './options.js';

export interface InternalAuthOptions {
  /** Accepted keys; the first is not special: any of them passes. At least one, each ≥ 16 characters. */
  keys: string | readonly string[] | undefined;
  /** Header carrying the key. @default 'x-internal-api-key' */
  header?: string;
}

export const DEFAULT_INTERNAL_KEY_HEADER = 'x-internal-api-key';
export const MIN_INTERNAL_KEY_LENGTH = 16;

/** SHA-256; `crypto.hash()` (Node ≥ 20.12) where there is one: no Hash object per request. */
const digest: (value: string) => Buffer =
  typeof crypto.hash === 'function' ? (value) => crypto.hash('sha256', value, 'buffer') : (value) => crypto.createHash('sha256').update(value, 'utf8').digest();

/** Splits `'a,b'` or a list into trimmed keys, refusing short or empty ones at set-up. */
export function parseInternalKeys(keys: string | readonly string[] | undefined): string[] {
  const list = commaList(keys, 'internal API keys must be a comma-separated string or a list of strings, e.g. process.env.INTERNAL_API_KEYS');
  if (list.length === 0) {
    throw new TypeError('express-mfa-kit: no internal API key (is INTERNAL_API_KEYS set?): pass at least one, e.g. internalKeys: process.env.INTERNAL_API_KEYS');
  }
  for (const key of list) {
    if (key.length < MIN_INTERNAL_KEY_LENGTH) {
      throw new TypeError(`express-mfa-kit: an internal API key is shorter than ${MIN_INTERNAL_KEY_LENGTH} characters: use a random one, e.g. \`openssl rand -hex 32\``);
    }
  }
  return list;
}

/** A query parameter's name as compared: lower-cased, letters and digits only, without a trailing `[…]` (`api_key[]`). */
const bareName = (name: string): string => name.toLowerCase().replace(/\[.*\]$/, '').replaceAll(/[^a-z0-9]/g, '');

/** Names a key goes by in a URL, as `bareName()` leaves them (`api_key`, `API-KEY`, `x.internal.api.key` …). */
const KEY_NAMES = ['key', 'apikey', 'accesskey', 'internalkey', 'internalapikey', 'xapikey', 'xinternalapikey'];

/**
 * `keyInQuery(query)`: whether a query string has a parameter named like an API key or like `header` (names
 * percent-decoded, any case, any characters between the letters). A query with no `key`, no `%` and nothing like the
 * header's name is answered by one regex test (the hot path's query), without splitting it.
 */
export function keyInQueryFor(header: string): (query: string) => boolean {
  const names = new Set([...KEY_NAMES, bareName(header)]);
  const loose = [...bareName(header)].map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^a-z0-9]*');
  const maybe = new RegExp(`key|%|${loose}`, 'i');
  return (query) => {
    if (!maybe.test(query)) return false;
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      let name = (eq === -1 ? pair : pair.slice(0, eq)).replaceAll('+', ' ');
      try {
        name = decodeURIComponent(name);
      } catch {
        // not percent-encoded UTF-8: the router's query check answers it
      }
      if (names.has(bareName(name))) return true;
    }
    return false;
  };
}

/**
 * Checks the key header before anything else (401 otherwise). Keys are hashed once at set-up and the
 * presented key's SHA-256 is compared with each of them by `timingSafeEqual` (equal-length digests,
 * every key compared, no early exit), so neither content nor length leaks through timing. A key in
 * the query string is never looked at, and refused: a request whose query has a parameter named like a
 * key (`x-internal-api-key`, `api_key`, `key`, …) gets 401 even beside a right header, since a URL ends up
 * in proxy and access logs (the caller should rotate that key).
 */
export function internalAuth(options: InternalAuthOptions): RequestHandler {
  const digests = parseInternalKeys(options.keys).map(digest);
  const header = (options.header ?? DEFAULT_INTERNAL_KEY_HEADER).toLowerCase();
  if (!HTTP_TOKEN.test(header)) {
    throw new TypeError(`express-mfa-kit: internal key header '${header}' is not a valid HTTP header name: use letters, digits and '-', e.g. 'x-internal-api-key'`);
  }
  // No registered scheme fits a key in a header of its own; the challenge names the header to send it in.
  const refused = (detail?: string) => ProblemError.from('INVALID_INTERNAL_KEY', { challenge: `ApiKey header="${header}"`, ...(detail !== undefined && { detail }) });
  const inUrl = `An API key in the URL is refused (URLs are logged): send it in the ${header} header only, and rotate the key that was sent.`;
  const keyInQuery = keyInQueryFor(header);
  return (req, _res, next) => {
    const question = req.url.indexOf('?');
    if (question !== -1 && keyInQuery(req.url.slice(question + 1))) {
      next(refused(inUrl));
      return;
    }
    const presented = req.headers[header];
    if (typeof presented !== 'string' || presented === '') {
      next(refused());
      return;
    }
    const candidate = digest(presented);
    let ok = false;
    for (const d of digests) ok = crypto.timingSafeEqual(candidate, d) || ok;
    if (!ok) {
      next(refused());
      return;
    }
    next();
  };
}
