/**
 * `wellFormedQuery()`: a 400 Problem for a query string that is not percent-encoded UTF-8. Express's query
 * parser (node:querystring, or qs) never fails: it keeps `%ZZ` as typed and turns every byte sequence that is
 * not UTF-8 (`%FF`, `%C0%AF`, `%ED%A0%80`) into U+FFFD, so different ids would name the same row. A raw byte
 * outside printable ASCII is refused too (RFC 3986 allows none; Node hands them on as Latin-1).
 */
import type { RequestHandler } from 'express';
import { ProblemError } from './errors.js';

const NOT_URL_CHARACTER = /[^\x21-\x7e]/;

/** Whether the query part of `url` (after the first `?`) is printable ASCII whose `%XX` escapes decode to UTF-8. */
export function isWellFormedQuery(url: string): boolean {
  const at = url.indexOf('?');
  if (at === -1) return true;
  const query = url.slice(at + 1);
  if (NOT_URL_CHARACTER.test(query)) return false;
  if (!query.includes('%')) return true;
  try {
    decodeURIComponent(query);
    return true;
  } catch {
    return false;
  }
}

/**
 * The check as middleware, for a router's prelude: it runs for every request the router sees, matched by one of its
 * routes or not, and answers 400 `VALIDATION_FAILED` (`(query)`, `format`) before anything reads `req.query`.
 */
export function wellFormedQuery(): RequestHandler {
  return (req, _res, next) => {
    if (isWellFormedQuery(req.url)) {
      next();
      return;
    }
    const detail = 'The query string has malformed percent-encoding or is not UTF-8.';
    next(ProblemError.invalid('(query)', 'format', detail));
  };
}
