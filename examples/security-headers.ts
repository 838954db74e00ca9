/**
 * The example server's security headers for its JSON API (helmet, configured), shared with the benchmark's
 * bare reference (`BARE_MIDDLEWARE=helmet`) so that "bare + helmet" measures what the example app sends.
 */
import type { Request, RequestHandler, Response } from 'express';
import helmet from 'helmet';

/**
 * helmet, configured for what these routes answer: JSON to programs, never a document a browser renders. A JSON
 * response keeps the headers that protect it (OWASP REST Security Cheat Sheet, "Security Headers"): a CSP that
 * allows nothing and no framing, `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, HSTS, and
 * `Cross-Origin-Resource-Policy: same-origin` (no cross-origin no-cors read of a body). The ones that act only on an
 * HTML document (COOP, Origin-Agent-Cluster, Referrer-Policy, X-DNS-Prefetch-Control, X-Download-Options,
 * X-Permitted-Cross-Domain-Policies, X-XSS-Protection) are sent by /docs alone. helmet's default twelve cost the
 * login hot path about a tenth of its throughput (BENCHMARKS.md).
 *
 * None of these headers depends on the request (no nonce, no per-request directive), so helmet runs once, at
 * start-up, and every response gets the headers it set then, in one loop: helmet validates and builds each header
 * on every call, a chain of twelve middleware for the same strings.
 */
export function apiSecurityHeaders(): RequestHandler {
  const headers = apiSecurityHeaderList();
  return (_req, res, next) => {
    for (const [name, value] of headers) res.setHeader(name, value);
    next();
  };
}

/** The headers `apiSecurityHeaders()` sets, as [name, value] pairs: for the answers no middleware runs for (`problemClientError`). */
export function apiSecurityHeaderList(): ReadonlyArray<readonly [string, string]> {
  return headersOf(apiHelmet());
}

/** The headers a middleware sets on a response when it calls `next()` at once; set-up fails if it does not. */
function headersOf(middleware: RequestHandler): ReadonlyArray<readonly [string, string]> {
  const set = new Map<string, string>();
  const recorder = {
    setHeader(name: string, value: unknown) {
      set.set(name.toLowerCase(), String(value));
      return recorder;
    },
    removeHeader(name: string) {
      set.delete(name.toLowerCase());
    },
  };
  let passed = false;
  void middleware({ headers: {} } as Request, recorder as unknown as Response, (err?: unknown) => {
    passed = !err;
  });
  if (!passed) throw new Error('express-mfa-kit example: the security headers middleware did not call next() at once, without an error');
  return [...set];
}

function apiHelmet(): RequestHandler {
  return helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginOpenerPolicy: false,
    crossOriginResourcePolicy: { policy: 'same-origin' },
    originAgentCluster: false,
    referrerPolicy: false,
    strictTransportSecurity: true,
    xContentTypeOptions: true,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xFrameOptions: { action: 'deny' },
    xPermittedCrossDomainPolicies: false,
    // X-Powered-By is never set: the app disables it, so there is nothing to remove per request.
    xPoweredBy: false,
    xXssProtection: false,
  });
}
