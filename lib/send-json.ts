/**
 * `sendJson(req, res, body)`: what `res.json()` answers for a fresh JSON body, without `res.send()`'s general work
 * (a Content-Type lookup, an ETag of the body when the app has them on, a freshness check against
 * `If-None-Match`). For answers sent `no-store` (every router's, lib/no-store.ts) none of that applies: nothing
 * keeps the body to revalidate it. `HEAD` gets the headers without the body, as from `res.json()`.
 */
import type { Request, Response } from 'express';

export function sendJson(req: Request, res: Response, body: unknown): void {
  const text = JSON.stringify(body);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  if (req.method === 'HEAD') res.end();
  else res.end(text);
}
