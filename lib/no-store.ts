/**
 * `noStore()`: `Cache-Control: no-store` on every answer of a router. Its answers are per user and per moment:
 * secrets at enrolment, decrypted vaults, and trust decisions a revocation must end at once; a shared cache or
 * a proxy between the caller and the kit must keep none of them (RFC 9111 §5.2.2.5). Problem answers set it
 * themselves (lib/problem.ts).
 */
import type { RequestHandler } from 'express';

export function noStore(): RequestHandler {
  return (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  };
}
