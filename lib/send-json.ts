/**
 * `sendJson(req, res, body)`: what `res.json()` answers for a fresh JSON body, without `res.send()`'s general work
 * (a Content-Type lookup, an ETag of the body when the app has them on, a freshness check against
 * `If-None-Match`). For answers sent `no-store` (every router's, lib/no-store.ts) none of that applies: nothing
 * keeps the body to revalidate it. The host app's `json replacer`, `json spaces` and `json escape` settings apply
 * as they do to `res.json()`. `HEAD` gets the headers without the body, as from `res.json()`. A response whose
 * Content-Type the app has set already is `res.json()`'s to answer.
 */
import type { Request, Response } from 'express';

type Replacer = (this: unknown, key: string, value: unknown) => unknown;

/** Express's own escape for `json escape`: `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`. */
const escapeHtml = (json: string): string =>
  json.replace(/[<>&]/g, (c) => (c === '<' ? '\\u003c' : c === '>' ? '\\u003e' : '\\u0026'));

function stringify(req: Request, body: unknown): string {
  const settings = req.app.settings as Record<string, unknown>;
  const replacer = settings['json replacer'] as Replacer | undefined;
  const spaces = settings['json spaces'] as string | number | undefined;
  const text = replacer || spaces ? JSON.stringify(body, replacer, spaces) : JSON.stringify(body);
  return settings['json escape'] ? escapeHtml(text) : text;
}

export function sendJson(req: Request, res: Response, body: unknown): void {
  // A Content-Type the host set already is kept by res.json(), with its charset made utf-8: leave that to Express.
  if (res.hasHeader('Content-Type')) {
    res.json(body);
    return;
  }
  const text = stringify(req, body);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  if (req.method === 'HEAD') res.end();
  else res.end(text);
}
