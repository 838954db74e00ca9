/**
 * An existing app mounts the kit: it keeps its own passport set-up (passport-jwt on its own Passport
 * instance) and hands the kit its `authenticate`, and it answers every error, its own included, in the
 * `nest` format (`{ statusCode, error, message, code }`) its clients already parse.
 *
 * The host issues two kinds of token: after the password, a user with MFA gets a "pending" token
 * (`mfa: 'pending'`) that may only pass the second factor (`SECOND_FACTOR_ROUTES`); `POST /auth/mfa/verify`'s
 * `onVerified` hook returns a full token. A pending token must never enrol or remove devices: whoever knows the
 * password could otherwise add their own authenticator. test/examples.test.ts mounts `createHostApp`.
 */
import { createSecretKey } from 'node:crypto';
import express, { type Express, type RequestHandler } from 'express';
import jwt from 'jsonwebtoken';
import passportModule from 'passport';
import { Strategy as JwtStrategy } from 'passport-jwt';
import {
  bearerToken,
  deviceSyncRouter,
  internalAuth,
  internalRouter,
  jsonBody,
  keyRing,
  mfaDevicesRouter,
  notFound,
  ProblemError,
  problemJson,
  requestId,
  tenant,
  tenantFrom,
  type KnexStorage,
  type Logger,
  type MfaCodeSender,
} from 'express-mfa-kit';

export interface HostAppDeps {
  /** `knexStorage({ knex })` on a database migrated with `migrate(knex)`. */
  storage: KnexStorage;
  /** The host's own HS256 key for its user tokens. */
  jwtSecret: string;
  /** `MFA_ENCRYPTION_KEYS`: `kid:base64`, first one encrypts. */
  encryptionKeys: string;
  /** `INTERNAL_API_KEYS` of the sibling services. */
  internalKeys: string;
  /** Where the kit logs (pino-compatible). */
  logger: Logger;
  /** The host's sms / email gateway; none: TOTP only. */
  codeSender?: MfaCodeSender | undefined;
}

/** The claims of the host's tokens. */
export interface HostClaims {
  sub: string;
  tenant_id: string;
  /** `pending`: the password was right, the second factor is still due. */
  mfa: 'pending' | 'done' | 'not_enrolled';
}

/**
 * How the host signs its tokens (15 minutes, HS256), with what the login proved (RFC 8176 `amr`: the password, and
 * `mfa` once the second factor passed) and when (`auth_time`): the kit's `stepUp` reads them.
 */
export function issueToken(secret: string, claims: HostClaims): string {
  const amr = claims.mfa === 'done' ? ['pwd', 'mfa'] : ['pwd'];
  return jwt.sign({ ...claims, amr, auth_time: Math.floor(Date.now() / 1000) }, secret, { algorithm: 'HS256', expiresIn: '15m' });
}

/** The refusal of a token that was sent and is not valid (RFC 6750 §3.1), as the kit's own `jwt` option answers. */
const INVALID_TOKEN = 'Bearer error="invalid_token", error_description="The access token is invalid or expired"';

/** Claims the host's routes can rely on: jsonwebtoken checks an `exp` that is there, but lets a token without one pass. */
const isHostClaims = (claims: unknown): claims is HostClaims & { exp: number } => {
  const c = claims as Partial<HostClaims> & { exp?: unknown } | null;
  return typeof c?.exp === 'number' && typeof c.sub === 'string' && c.sub !== '' && typeof c.tenant_id === 'string' && c.tenant_id !== '';
};

/** The refusal of a pending token: RFC 9470's challenge, as the kit's own step-up answers. */
const SECOND_FACTOR_DUE = 'Bearer error="insufficient_user_authentication", error_description="Finish the second factor first"';

/**
 * What a pending token may call on `mfaDevicesRouter`: the login second factor, and for an sms or email device what
 * comes first, the user's devices (to pick one) and the code sent to one. The code of an enrolment still pending is not
 * a login's: the kit's `stepUp` refuses it to a token without a second factor once the user has one (all pending users
 * do). Paths relative to wherever the router is mounted (`req.path` inside it), exact and case-sensitive: anything
 * else Express would route the same way is refused, not let through.
 */
const SECOND_FACTOR_ROUTES: ReadonlyArray<readonly [method: string, path: RegExp]> = [
  ['POST', /^\/verify$/],
  ['GET', /^\/devices$/],
  ['POST', /^\/devices\/[^/]+\/challenge$/],
];

/**
 * The host's authentication: its own passport instance and strategy, and the rule for pending tokens, which may call
 * `pendingMay` (paths relative to the router it is given to) and nothing else.
 */
function hostAuthentication(secret: string, pendingMay: ReadonlyArray<readonly [method: string, path: RegExp]> = []): RequestHandler {
  const passport = new passportModule.Passport();
  // A KeyObject made once: given the string, jsonwebtoken 9 tries createPublicKey() on it for every token and
  // catches the exception that throws (~0.7 ms a request here; ~25 µs with the KeyObject). @types/passport-jwt
  // predates KeyObject; passport-jwt hands it to jsonwebtoken as it is.
  const key = createSecretKey(Buffer.from(secret, 'utf8'));
  passport.use('host-jwt', new JwtStrategy({ jwtFromRequest: (req: express.Request) => bearerToken(req) ?? null, secretOrKey: key as unknown as Buffer, algorithms: ['HS256'] }, (claims: unknown, done: (err: null, user: HostClaims | false) => void) => done(null, isHostClaims(claims) && claims)));
  return (req, res, next) => {
    // The kit's reading of the header: two Authorization fields are a 400 (a proxy may read the other one), and all
    // after `Bearer ` is the token.
    try {
      bearerToken(req);
    } catch (err) {
      next(err);
      return;
    }
    const authenticate = passport.authenticate('host-jwt', { session: false }, (err: unknown, claims: HostClaims | false) => {
      if (err) return next(err);
      if (!claims) return next(ProblemError.from('UNAUTHENTICATED', /^bearer +\S/i.test(req.headers.authorization ?? '') ? { challenge: INVALID_TOKEN } : undefined));
      const secondFactor = pendingMay.some(([method, route]) => req.method === method && route.test(req.path));
      if (claims.mfa === 'pending' && !secondFactor) return next(ProblemError.from('UNAUTHENTICATED', { detail: 'Finish the second factor first: POST /auth/mfa/verify (for an sms or email code, first POST /auth/mfa/devices/{id}/challenge).', challenge: SECOND_FACTOR_DUE }));
      req.user = claims;
      next();
    }) as RequestHandler;
    void authenticate(req, res, next);
  };
}

/** The host app with the kit mounted. */
export function createHostApp(deps: HostAppDeps): Express {
  const { storage, logger } = deps;
  const app = express();
  app.use(requestId());
  const requireLogin = hostAuthentication(deps.jwtSecret);
  // For the MFA router: a pending token may also pass the second factor, wherever the router is mounted.
  const requireLoginOrSecondFactor = hostAuthentication(deps.jwtSecret, SECOND_FACTOR_ROUTES);

  // The host's own routes use the same authentication.
  app.get('/api/me', requireLogin, (req, res) => {
    const { sub, tenant_id } = req.user as HostClaims;
    res.json({ userId: sub, tenantId: tenant_id });
  });

  // #region readme-middleware
  // The kit's middleware on a service-to-service route of the host's own: same keys, tenant rule and errors.
  app.post(
    '/ops/notes',
    internalAuth({ keys: deps.internalKeys }), // 401 unless X-Internal-API-Key is one of the keys
    tenant({ from: tenantFrom.header('X-Tenant-ID') }), // 400 when missing or malformed
    ...jsonBody('10kb'), // 415 not JSON, 413 too large, 400 malformed
    (req, res) => {
      res.status(202).json({ tenantId: req.mfa?.tenantId, requestId: req.mfa?.requestId, note: (req.body as { note?: unknown }).note });
    },
  );
  // #endregion

  // #region readme-mount
  const ring = keyRing(deps.encryptionKeys);
  const errors = { format: 'nest' } as const; // { statusCode, error, message, code: 'UPPER_SNAKE' }
  const mfa = mfaDevicesRouter({
    storage, // knexStorage({ knex }), after migrate(knex)
    keyRing: ring,
    authenticate: requireLoginOrSecondFactor, // your passport set-up: req.user = { sub, tenant_id, … }
    errors,
    logger,
    sender: deps.codeSender, // sms / email codes: your gateway (none: TOTP only)
    // Once the user has a factor, changing one needs a token from a second factor in the last 15 minutes (else 401).
    stepUp: { amr: ['mfa'], maxAgeSeconds: 900 },
    // The second factor passed: a full token, with the `amr: ['pwd', 'mfa']` and `auth_time` that stepUp reads.
    onVerified: ({ userId, tenantId }) => ({ accessToken: issueToken(deps.jwtSecret, { sub: userId, tenant_id: tenantId, mfa: 'done' }) }),
  });
  mfa.events.on('lockout', (e) => logger.warn({ tenant_id: e.tenantId, user_id: e.userId, request_id: e.requestId }, 'MFA locked'));
  app.use('/auth/mfa', mfa);
  app.use('/mfa/devices/sync', deviceSyncRouter({ storage, keyRing: ring, authenticate: requireLogin, errors, logger, stepUp: { amr: ['mfa'] } }));
  app.use('/internal', internalRouter({ storage, internalKeys: deps.internalKeys, keyRing: ring, events: mfa.events, errors, logger }));
  app.use(notFound()); // unknown paths: 404 in the same format
  app.use(problemJson({ ...errors, logger })); // the host's own errors too
  // #endregion
  return app;
}
