/**
 * `sendJson(req, res, body)`: what `res.json()` answers for a fresh JSON body, without `res.send()`'s general work
 * (a Content-Type lookup, an ETag of the body when the app has them on, a freshness check against
 * `If-None-Match`). For answers sent `no-store` (every router's, lib/no-store.ts) none of that applies: nothing
 * keeps the body to revalidate it, so these answers carry no ETag whatever the app's `etag` setting. The host app's
 * `json replacer`, `json spaces` and `json escape` settings apply as they do to `res.json()`. `HEAD` gets the
 * headers without the body, as from `res.json()`. Beside a Transfer-Encoding the app has set there is no Content-Length
 * (RFC 9112 §6.2; `res.json()` sends both before Express 5.3). A response whose Content-Type the app has set already,
 * or a body that is no JSON text (`undefined`, or a replacer that drops it), is `res.json()`'s to answer.
 */
import type { Request, Response } from 'express';

/** `JSON.stringify`'s replacer, as Express passes the `json replacer` setting on. */
type Replacer = ((this: unknown, key: string, value: unknown) => unknown) | Array<string | number>;

/** Express's own escape for `json escape`: `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`. */
const escapeHtml = (json: string): string =>
  json.replace(/[<>&]/g, (c) => (c === '<' ? '\\u003c' : c === '>' ? '\\u003e' : '\\u0026'));

/** The body as `res.json()` would write it; `undefined` when JSON has no text for it. */
function stringify(req: Request, body: unknown): string | undefined {
  const settings = req.app.settings as Record<string, unknown>;
  const replacer = settings['json replacer'] as Replacer | null | undefined;
  const spaces = settings['json spaces'] as string | number | undefined;
  let text: string | undefined;
  if (!replacer && !spaces) text = JSON.stringify(body);
  else if (Array.isArray(replacer)) text = JSON.stringify(body, replacer, spaces);
  else text = JSON.stringify(body, replacer ?? undefined, spaces);
  return text !== undefined && settings['json escape'] ? escapeHtml(text) : text;
}

export function sendJson(req: Request, res: Response, body: unknown): void {
  // res.json() keeps a Content-Type the app set (with its charset made utf-8): leave that to Express.
  const text = res.hasHeader('Content-Type') ? undefined : stringify(req, body);
  if (text === undefined) {
    res.json(body);
    return;
  }
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  if (!res.hasHeader('Transfer-Encoding')) res.setHeader('Content-Length', Buffer.byteLength(text));
  if (req.method === 'HEAD') res.end();
  else res.end(text);
}
