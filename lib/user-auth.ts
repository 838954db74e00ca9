/**
 * User authentication for the user-facing routers: a passport-jwt strategy built from options
 * (never registered with the host's passport, so its own set-up is untouched), or the host
 * app's own `authenticate` middleware. Either way `req.user` holds the token claims; the user id
 * and tenant are then read from configurable claims, and an `X-Tenant-ID` header that disagrees → 403.
 */
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { Strategy as JwtStrategy, type StrategyOptionsWithoutRequest } from 'passport-jwt';
import { contextOf } from './context.js';
import { ProblemError } from './errors.js';
import { checkNestedOptions, HTTP_TOKEN } from './options.js';
import { tenant, tenantFrom } from './tenant.js';
import { isUserId, USER_ID_RULE } from './validation.js';

/** JWS algorithms a token may be signed with (`none` is never accepted). */
export type JwtAlgorithm = 'HS256' | 'HS384' | 'HS512' | 'RS256' | 'RS384' | 'RS512' | 'ES256' | 'ES384' | 'ES512' | 'PS256' | 'PS384' | 'PS512';

export interface JwtOptions {
  /**
   * HMAC secret (HS256/384/512). Exactly one of `secret` or `publicKey` is required; `undefined` (an unset
   * `JWT_SECRET`) type-checks and fails at set-up saying so.
   */
  secret?: string | Buffer | undefined;
  /** PEM public key (RS256/ES256/…). */
  publicKey?: string | Buffer | undefined;
  /** Accepted algorithms. @default ['HS256'] with `secret`, ['RS256', 'ES256'] with `publicKey` */
  algorithms?: JwtAlgorithm[];
  /** Required `iss`, when set. */
  issuer?: string;
  /** Required `aud`, when set. */
  audience?: string;
  /** Seconds of clock skew tolerated on `exp` / `nbf`. @default 0 */
  clockToleranceSeconds?: number;
  /**
   * A token without a numeric `exp` claim is refused (401): it would never expire, and a bearer token that manages a
   * user's second factors should not outlive its session. `false` accepts one (an `exp` present is always checked).
   * @default true
   */
  requireExpiry?: boolean;
}

export interface UserAuthOptions {
  /** Build a passport-jwt strategy from these. */
  jwt?: JwtOptions;
  /** Or use the host's own middleware; it must set `req.user` to the token claims (or a user object). */
  authenticate?: RequestHandler;
  /** Claim holding the user id. @default 'sub' */
  userClaim?: string;
  /** Claim holding the tenant id. @default 'tenant_id' */
  tenantClaim?: string;
  /** Header that, when sent, must equal the tenant claim. @default 'X-Tenant-ID' */
  tenantHeader?: string;
}

export const DEFAULT_USER_CLAIM = 'sub';
export const DEFAULT_TENANT_CLAIM = 'tenant_id';

const HMAC: readonly JwtAlgorithm[] = ['HS256', 'HS384', 'HS512'];
const JWT_OPTION_NAMES = ['secret', 'publicKey', 'algorithms', 'issuer', 'audience', 'clockToleranceSeconds', 'requireExpiry'] satisfies ReadonlyArray<keyof JwtOptions>;

function jwtMiddleware(factory: string, jwt: JwtOptions): RequestHandler {
  // A misspelt `audiance` or `isuer` would leave the token's audience or issuer unchecked: refused at set-up.
  checkNestedOptions(factory, 'jwt', jwt, JWT_OPTION_NAMES, '{ secret: process.env.JWT_SECRET }');
  const { secret, publicKey } = jwt;
  if (secret !== undefined && publicKey !== undefined) {
    throw new TypeError(`express-mfa-kit: ${factory}() option 'jwt' takes 'secret' (HS256) or 'publicKey' (RS256 / ES256), not both`);
  }
  if (secret === undefined && publicKey === undefined) {
    throw new TypeError(`express-mfa-kit: ${factory}() option 'jwt' needs 'secret' or 'publicKey' (is JWT_SECRET set?), e.g. jwt: { secret: process.env.JWT_SECRET }`);
  }
  if (typeof secret === 'string' && secret.length < 16) {
    throw new TypeError(`express-mfa-kit: ${factory}() jwt.secret is shorter than 16 characters: use a random secret (\`openssl rand -base64 32\`)`);
  }
  const algorithms = jwt.algorithms ?? (secret !== undefined ? ['HS256'] : ['RS256', 'ES256']);
  if (algorithms.length === 0 || algorithms.some((a) => (a as string) === 'none')) {
    throw new TypeError(`express-mfa-kit: ${factory}() jwt.algorithms must list real algorithms ('none' is never accepted)`);
  }
  if (secret !== undefined && algorithms.some((a) => !HMAC.includes(a))) {
    throw new TypeError(`express-mfa-kit: ${factory}() jwt.secret goes with HS256/HS384/HS512 only; use jwt.publicKey for ${algorithms.join(', ')}`);
  }
  // A KeyObject made once: given a string or Buffer, jsonwebtoken tries createPublicKey() on it for EVERY
  // token and, for an HMAC secret, catches the exception that throws — the most expensive step of a request.
  // Made here, a malformed public key also fails at set-up rather than on the first login.
  let key: KeyObject;
  try {
    key = secret !== undefined ? createSecretKey(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret) : createPublicKey(publicKey!);
  } catch (err) {
    throw new TypeError(`express-mfa-kit: ${factory}() jwt.${secret !== undefined ? 'secret' : 'publicKey'} is not usable key material (a PEM public key, or a secret): ${err instanceof Error ? err.message : String(err)}`);
  }
  const strategyOptions: StrategyOptionsWithoutRequest = {
    // The token `bearerToken()` took (the middleware below has refused a malformed or repeated header by then).
    jwtFromRequest: (req: Request) => BEARER.exec(req.headers.authorization ?? '')?.[1] ?? null,
    // @types/passport-jwt predates KeyObject; passport-jwt hands the value to jsonwebtoken 9, which takes one.
    secretOrKey: key as unknown as Buffer,
    algorithms: [...algorithms],
    ...(jwt.issuer !== undefined && { issuer: jwt.issuer }),
    ...(jwt.audience !== undefined && { audience: jwt.audience }),
    // `complete`: the verify callback below gets the header too, to read its `crit`.
    jsonWebTokenOptions: { clockTolerance: jwt.clockToleranceSeconds ?? 0, complete: true },
  };
  const requireExpiry = jwt.requireExpiry ?? true;
  // `false` here is passport's "fail" (a 401 invalid_token).
  const strategy = new JwtStrategy(strategyOptions, (token: unknown, done: (err: unknown, user?: unknown) => void) => {
    const { header, payload: claims } = token as { header: { crit?: unknown }; payload: unknown };
    // RFC 7515 §4.1.11: a `crit` header names extensions the recipient MUST understand, or refuse the token; this one
    // understands none (`b64: false`, RFC 7797, among them). jsonwebtoken ignores the parameter.
    if (header.crit !== undefined) return done(null, false);
    const { exp, iat } = (claims ?? {}) as { exp?: unknown; iat?: unknown };
    // jsonwebtoken checks an `exp` that is there, but lets a token without one through, and one of `1e400` (JSON.parse
    // reads Infinity) never ends: both refused. It does not read `iat`, which RFC 7519 §4.1.6 makes a NumericDate.
    if (requireExpiry && !Number.isFinite(exp)) return done(null, false);
    if (iat !== undefined && !Number.isFinite(iat)) return done(null, false);
    return done(null, claims);
  });
  const verified = verifiedTokens(jwt.clockToleranceSeconds ?? 0);
  // The strategy is run the way passport's authenticate() runs it (a per-request object whose prototype is the
  // strategy, given success / fail / error), without building passport's middleware and initialize() state on
  // every request: that bookkeeping cost more CPU than verifying the token.
  return (req, _res, next) => {
    let token: string | undefined;
    try {
      token = bearerToken(req);
    } catch (err) {
      next(err);
      return;
    }
    const known = token ? verified.get(token) : undefined;
    if (known) {
      (req as { user?: unknown }).user = known;
      next();
      return;
    }
    let decided = false;
    const decide = (err?: unknown) => {
      if (decided) return;
      decided = true;
      next(err);
    };
    const attempt = Object.create(strategy) as JwtStrategy & StrategyOutcome;
    attempt.success = (user) => {
      (req as { user?: unknown }).user = user;
      if (token) verified.remember(token, user);
      decide();
    };
    // No token, a bad token, or a strategy that passes on: the same 401, whose challenge says which (RFC 6750 §3.1).
    attempt.fail = attempt.pass = attempt.redirect = () => decide(ProblemError.from('UNAUTHENTICATED', token ? { challenge: INVALID_TOKEN_CHALLENGE } : undefined));
    attempt.error = (err) => decide(err);
    try {
      attempt.authenticate(req, {});
    } catch (err) {
      // jsonwebtoken throws (instead of reporting) on some signed-but-absurd tokens, e.g. a payload
      // of JSON `null` (TypeError reading `nbf`): a token the verifier chokes on is a bad token.
      if (!decided) decide(ProblemError.from('UNAUTHENTICATED', { challenge: INVALID_TOKEN_CHALLENGE, cause: err }));
      else throw err;
    }
  };
}

/**
 * The challenge of a 401 for a token that was sent but is not accepted (RFC 6750 §3.1 `invalid_token`): expired,
 * malformed, badly signed, or for another issuer or audience. Without a token the challenge is a bare `Bearer`.
 */
/**
 * RFC 6750 §2.1: `Bearer`, spaces, the token: all the rest of the field (Node strips its outer whitespace), so that
 * `Bearer <token> junk` is one invalid token, not the token with the junk ignored.
 */
const BEARER = /^bearer +(.+)$/i;

/** 400 `invalid_request` (RFC 6750 §3.1) for an Authorization field that is repeated. */
function invalidRequest(detail: string): ProblemError {
  return ProblemError.invalid('(header) Authorization', 'format', detail, { challenge: `Bearer error="invalid_request", error_description="${detail.replaceAll('"', "'")}"` });
}

/**
 * The request's Bearer token; `undefined` when it sends none (no Authorization field, another scheme, `Bearer` alone).
 * Throws the 400 above when the field is repeated (RFC 9110 §5.3: it is no list; Node would keep the first, a proxy
 * may read the last: two parties would see two callers).
 */
export function bearerToken(req: Request): string | undefined {
  const field = req.headers.authorization;
  if (field === undefined) return undefined;
  let seen = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.length === 13 && req.rawHeaders[i]!.toLowerCase() === 'authorization') seen++;
  if (seen > 1) throw invalidRequest('Send one Authorization header field, with one Bearer token.');
  // RFC 6750 §2: a client sends the token one way; beside the header, an access_token in the URI (§2.3) is refused
  // rather than ignored (§3.1 invalid_request): it ends up in logs, and whichever of the two a proxy reads decides.
  const question = req.url.indexOf('?');
  if (question !== -1 && ACCESS_TOKEN_PARAMETER.test(req.url.slice(question + 1))) {
    throw invalidRequest('Send the token one way: in the Authorization header, not also as access_token in the URL.');
  }
  return BEARER.exec(field)?.[1];
}

/** RFC 6750 §2.3's query parameter, as its name may be spelt in a query (any case, `_` percent-encoded). */
const ACCESS_TOKEN_PARAMETER = /(?:^|&)access(?:_|%5f)token(?:=|&|$)/i;

export const INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token", error_description="The access token is invalid or expired"';

/** Longest a verified token is taken as verified without checking its signature again. */
const VERIFIED_TOKEN_TTL_MS = 30_000;
/** Most tokens remembered at once (emptied when full). */
const VERIFIED_TOKENS_MAX = 4096;

/**
 * Tokens this middleware verified, by their exact text (signature included), with their claims, as Envoy's
 * `jwt_authn` keeps a cache of verified JWTs: a user's requests carry the same token again and again, and its
 * HMAC or signature check, with jsonwebtoken's parsing around it, is the costliest step of authenticating one.
 * Only a token that passed every check (signature, algorithm, issuer, audience, `exp`, `nbf`) is remembered, for
 * at most VERIFIED_TOKEN_TTL_MS and never past its `exp` (with the clock tolerance, as jsonwebtoken reads it); any
 * other text, a single character changed, is verified in full. Each request gets its own copy of the claims.
 */
function verifiedTokens(clockToleranceSeconds: number) {
  const entries = new Map<string, { claims: unknown; until: number }>();
  return {
    get(token: string): unknown {
      const entry = entries.get(token);
      if (entry === undefined) return undefined;
      if (Date.now() < entry.until) return structuredClone(entry.claims);
      entries.delete(token);
      return undefined;
    },
    remember(token: string, claims: unknown): void {
      if (typeof claims !== 'object' || claims === null) return;
      const exp = (claims as { exp?: unknown }).exp;
      const until = Math.min(Date.now() + VERIFIED_TOKEN_TTL_MS, typeof exp === 'number' ? (exp + clockToleranceSeconds) * 1000 : Infinity);
      let copy: unknown;
      try {
        copy = structuredClone(claims);
      } catch {
        return; // claims nested too deep to copy (a signed token may hold anything): verified in full each time
      }
      if (entries.size >= VERIFIED_TOKENS_MAX) entries.clear();
      entries.set(token, { claims: copy, until });
    },
  };
}

/** What passport gives a strategy to report with (passport's `authenticate()` does the same per request). */
interface StrategyOutcome {
  success(user: unknown, info?: unknown): void;
  fail(challenge?: unknown, status?: number): void;
  pass(): void;
  redirect(url: string, status?: number): void;
  error(err: unknown): void;
}

/**
 * Builds the authentication chain for a user router: authenticate, then set `req.mfa.userId`
 * and `req.mfa.tenantId` from the claims (401 without a user id claim, 400 for a malformed one, 400 / 403 for the tenant).
 */
export function userAuth(factory: string, options: UserAuthOptions): RequestHandler[] {
  if (options.authenticate === undefined && options.jwt === undefined) {
    throw new TypeError(`express-mfa-kit: ${factory}() needs 'jwt' (e.g. jwt: { secret: process.env.JWT_SECRET }) or your own 'authenticate' middleware`);
  }
  if (options.authenticate !== undefined && options.jwt !== undefined) {
    throw new TypeError(`express-mfa-kit: ${factory}() takes 'jwt' or 'authenticate', not both: with your own authenticate, the kit verifies no token itself`);
  }
  if (options.authenticate !== undefined && typeof options.authenticate !== 'function') {
    throw new TypeError(`express-mfa-kit: ${factory}() option 'authenticate' must be an Express middleware (req, res, next)`);
  }
  for (const name of ['userClaim', 'tenantClaim'] as const) {
    const value: unknown = options[name];
    if (value !== undefined && (typeof value !== 'string' || value === '')) {
      throw new TypeError(`express-mfa-kit: ${factory}() option '${name}' must be the name of a claim, e.g. ${name}: '${name === 'userClaim' ? DEFAULT_USER_CLAIM : DEFAULT_TENANT_CLAIM}'`);
    }
  }
  const header: unknown = options.tenantHeader;
  if (header !== undefined && (typeof header !== 'string' || !HTTP_TOKEN.test(header.toLowerCase()))) {
    throw new TypeError(`express-mfa-kit: ${factory}() option 'tenantHeader' must be an HTTP header name, e.g. tenantHeader: 'X-Tenant-ID'`);
  }
  const authenticate = options.authenticate ?? jwtMiddleware(factory, options.jwt!);
  const userClaim = options.userClaim ?? DEFAULT_USER_CLAIM;
  const setUser: RequestHandler = (req: Request, _res, next) => {
    const user = (req as { user?: unknown }).user;
    const id = claimsOf(req)[userClaim];
    if (typeof id !== 'string') {
      // A host's `authenticate` that let the request on without a user: no credentials, as for a missing token.
      const challenge = user === undefined || user === null || user === false ? undefined : INVALID_TOKEN_CHALLENGE;
      next(ProblemError.from('UNAUTHENTICATED', { detail: `The token has no usable '${userClaim}' claim.`, ...(challenge && { challenge }) }));
      return;
    }
    // A valid token whose user id the kit cannot store: a field violation, as for the tenant claim (CONTRACT.md §1).
    if (!isUserId(id)) {
      const detail = `${userClaim} ${USER_ID_RULE}`;
      next(ProblemError.invalid(userClaim, 'format', detail));
      return;
    }
    contextOf(req).userId = id;
    next();
  };
  const byTenant = tenant({ from: tenantFrom.claim(options.tenantClaim ?? DEFAULT_TENANT_CLAIM), mustMatch: tenantFrom.header(options.tenantHeader ?? 'X-Tenant-ID') });
  return [authenticate, setUser, byTenant];
}

/** Query parameters a host's own authentication may read a credential from (RFC 6750 §2.3): never a route's parameter. */
export const URL_CREDENTIALS: readonly string[] = ['access_token'];

/** The token claims (or the host's user object) on `req.user` as a record; `{}` when there is none. */
export function claimsOf(req: Request): Record<string, unknown> {
  const user = (req as { user?: unknown }).user;
  return typeof user === 'object' && user !== null ? (user as Record<string, unknown>) : {};
}
