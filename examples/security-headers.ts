/**
 * The example server's security headers for its JSON API (helmet, configured), shared with the benchmark's
 * bare reference (`BARE_MIDDLEWARE=helmet`) so that "bare + helmet" measures what the example app sends.
 */
import type { RequestHandler } from 'express';
import helmet from 'helmet';

/**
 * helmet, configured for what these routes answer: JSON to programs, never a document a browser renders. A JSON
 * response keeps the headers that protect it (OWASP REST Security Cheat Sheet, "Security Headers"): a CSP that
 * allows nothing and no framing, `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, HSTS, and
 * `Cross-Origin-Resource-Policy: same-origin` (no cross-origin no-cors read of a body). The ones that act only on an
 * HTML document (COOP, Origin-Agent-Cluster, Referrer-Policy, X-DNS-Prefetch-Control, X-Download-Options,
 * X-Permitted-Cross-Domain-Policies, X-XSS-Protection) are sent by /docs alone. Every header is validated and
 * written on every response: helmet's default twelve cost the login hot path about a tenth of its throughput (BENCHMARKS.md).
 */
export function apiSecurityHeaders(): RequestHandler {
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
