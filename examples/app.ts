/**
 * The example server's Express app, assembled from injected parts so tests can build it too:
 * helmet, one JSON log line per request, health and readiness, the kit's routers, Problem errors.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import express, { type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import swaggerUi from 'swagger-ui-express';
import { openApiDocument } from '../lib/openapi.js';
import type { Logger as PinoLogger } from 'pino';
import {
  demoSender,
  deviceSyncRouter,
  internalRouter,
  mfaDevicesRouter,
  notFound,
  ProblemError,
  problemClientError,
  problemConnectRefusal,
  problemJson,
  requestId,
  type JwtOptions,
  type KeyRing,
  type KnexStorage,
  type MfaCodeSender,
  type MfaEventName,
  type RateLimitRedisClient,
  type StepUpOptions,
  type TrustedDeviceCache,
} from '../index.js';
import { chain } from '../lib/chain.js';
import { methodNotAllowed } from '../lib/method-not-allowed.js';
import { apiSecurityHeaderList, apiSecurityHeaders } from './security-headers.js';
import { contextOf } from '../lib/context.js';
import { hasUserinfo, requestTarget } from '../lib/problem.js';

/** How user tokens are verified: exactly one of the two. */
export type UserTokenKey =
  | { /** HS256 key of user JWTs (claims `sub`, `tenant_id`). */ jwtSecret: string; jwtPublicKey?: never }
  | { /** The PEM public key of RS256 / ES256 user JWTs (`JWT_PUBLIC_KEY`): the identity provider keeps the private one. */ jwtPublicKey: string; jwtSecret?: never };

export type ExampleAppDeps = ExampleAppOptions & UserTokenKey;

export interface ExampleAppOptions {
  storage: KnexStorage;
  /** Reports whether the cache answers; `undefined` when the in-process cache is used. */
  cachePing?: () => Promise<boolean>;
  /** The trusted-device cache (`redisCache()` or `memoryCache()`); none: checks read Postgres. */
  cache?: TrustedDeviceCache;
  internalKeys: string[];
  /** Seals secrets at rest (device-sync vaults, …). */
  keyRing: KeyRing;
  logger: PinoLogger;
  // [3/7] MFA devices
  /** Delivers sms/email codes. @default demoSender(logger): writes the code to stdout, sends nothing */
  codeSender?: MfaCodeSender;
  /** Redis client for the verify routes' rate-limit counters, shared by every instance; none: in-process counters. */
  rateLimitRedis?: RateLimitRedisClient;
  /**
   * One line per request (`accessLog`). `false` when a proxy in front logs requests: 5xx errors (problemJson) and
   * MFA events are logged all the same.
   * @default true
   */
  requestLog?: boolean;
  /**
   * Whether `GET /readyz` needs the cache (`cachePing`) as well as Postgres (CONTRACT.md §7: ready when storage and cache
   * are reachable). `'optional'`: a cache outage is reported (`cache: 'down'`) but leaves the instance ready; the checks
   * then answer from Postgres, slower. Choose it when every instance shares the one Redis, so that an orchestrator does
   * not take them all out of service at once for a cache outage.
   * @default 'required'
   */
  readyzCache?: 'required' | 'optional';
  /**
   * Step-up (RFC 9470) for both user routers: changes to a user's factors (`mfaDevicesRouter`) and every vault request
   * (`deviceSyncRouter`) need a token whose `amr` / `acr` shows a second factor. Off unless set (`STEP_UP_AMR`).
   */
  stepUp?: StepUpOptions;
}

/** How the user routers verify tokens: HS256 with the secret, or RS256 / ES256 with the public key. */
function userTokens(deps: UserTokenKey): JwtOptions {
  if ((deps.jwtSecret === undefined) === (deps.jwtPublicKey === undefined)) {
    throw new TypeError('createExampleApp() needs one of jwtSecret (HS256) and jwtPublicKey (RS256 / ES256), not both');
  }
  return deps.jwtPublicKey !== undefined ? { publicKey: deps.jwtPublicKey } : { secret: deps.jwtSecret };
}

/** A readiness probe must answer fast even when a dependency hangs (frozen host): give up after this. */
export const READY_PROBE_TIMEOUT_MS = 2000;

/** 'up' / 'down' for a check, 'down' when it fails or has not answered within READY_PROBE_TIMEOUT_MS. */
async function probe(check: () => Promise<boolean>): Promise<'up' | 'down'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), READY_PROBE_TIMEOUT_MS);
  });
  try {
    return (await Promise.race([check().catch(() => false), late])) ? 'up' : 'down';
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One JSON line per request, written when the response is done (or the client went away first): method, path
 * (never the query string: it may carry ids), status, duration, request id and tenant; never a header or a
 * body. One `close` listener and one log call per request: pino-http's child logger, listeners and wrapped
 * serializers cost the hot path more than the whole kit does (BENCHMARKS.md).
 */
function accessLog(logger: PinoLogger): RequestHandler {
  // The line is built from the fields above only, so the logger's redaction (headers) has nothing to find in it:
  // skip it, it would clone the line's req and res on every request (BENCHMARKS.md).
  const log = logger.child({}, { redact: [] });
  return (req, res, next) => {
    // A child keeps the level it was made with: follow the parent's, should it be changed at run time.
    if (log.level !== logger.level) log.level = logger.level;
    // Skipped only when not even a 5xx line (`error`) could be written.
    if (!logger.isLevelEnabled('error')) {
      next();
      return;
    }
    const started = performance.now();
    // `on`, not `once`: node:http emits a response's 'close' once, and `once` would wrap the listener in a bound
    // function and remove it again (an object change per request) for nothing (BENCHMARKS.md, thirteenth round).
    res.on('close', () => {
      const status = res.statusCode;
      const line = {
        req: { method: req.method, path: requestTarget(req).split('?', 1)[0] },
        // A request aborted before its answer began has no status (statusCode is the 200 every response starts with).
        res: { status: res.headersSent ? status : undefined },
        responseTime: Math.round(performance.now() - started),
        request_id: req.mfa?.requestId,
        tenant_id: req.mfa?.tenantId,
      };
      if (!res.writableFinished) log.warn(line, 'request aborted');
      else if (status >= 500) log.error(line, 'request failed');
      else log.info(line, 'request completed');
    });
    next();
  };
}

/** Requests node:http passed on as `checkExpectation` (an `Expect` it does not meet): createExampleServer marks them. */
const unmetExpectations = new WeakSet<IncomingMessage>();

/**
 * RFC 9112 §3.2: an HTTP/1.1 request without `Host` is a 400. Node answers it itself with a bare status line
 * unless the server is made with `requireHostHeader: false` (`createExampleServer`): then it is a Problem here.
 * Also a 400: a target with userinfo (RFC 9110 §4.2.4); and a 417: an `Expect` Node does not meet (§10.1.1).
 */
const hostRequired: RequestHandler = (req, res, next) => {
  // A target in absolute form with userinfo (`http://user:pass@host/…`): an error (RFC 9110 §4.2.4), and the
  // credentials in it are never repeated (the Problem's instance and the log line name the path only).
  const userinfo = hasUserinfo(req.url);
  if (!userinfo && (req.httpVersion !== '1.1' || req.headers.host !== undefined)) {
    // An expectation Node does not meet itself (it passes the request on as `checkExpectation`, createExampleServer):
    // 417 (RFC 9110 §10.1.1), as a Problem. One with 100-continue in it Node has answered `100 Continue` already.
    if (unmetExpectations.has(req)) next(ProblemError.from('EXPECTATION_FAILED'));
    else next();
    return;
  }
  // As Node's own refusal: the connection ends with the answer.
  res.setHeader('Connection', 'close');
  next(ProblemError.from('BAD_HTTP_REQUEST', userinfo ? 'A request target must not carry user information (user:password@).' : 'An HTTP/1.1 request needs a Host header.'));
};

/**
 * Longest a client may take to send a whole request (headers and body; Node's default is 300 s): a JSON request
 * of at most a megabyte arrives well within it, and a client that sends less than its Content-Length no longer
 * holds a connection for five minutes. Node checks every `connectionsCheckingInterval` (30 s by default), so a
 * request is cut off between this and this plus the interval.
 */
export const REQUEST_TIMEOUT_MS = 30_000;

export interface ExampleServerOptions {
  /** Longest a client may take to send a request; 0: no limit (Node's headers timeout still applies). @default REQUEST_TIMEOUT_MS */
  requestTimeoutMs?: number;
  /** How often Node looks for requests past their time (node:http `connectionsCheckingInterval`). @default 30000 */
  connectionsCheckingIntervalMs?: number;
}

/**
 * The example app's http server: what Node's HTTP parser refuses before Express runs (oversized headers, bytes
 * that are not HTTP, a request not received within `requestTimeoutMs`: 408) is answered as a Problem
 * (`problemClientError`), and a request without `Host` is left to the app (`createExampleApp`'s, which refuses
 * it): give it no other.
 */
export function createExampleServer(app: Express, options: ExampleServerOptions = {}): Server {
  const requestTimeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const server = createServer(
    {
      requireHostHeader: false,
      requestTimeout,
      // Node refuses a headers timeout longer than the request's (its default is 60 s); 0 turns the request's off only.
      headersTimeout: requestTimeout > 0 ? Math.min(60_000, requestTimeout) : 60_000,
      ...(options.connectionsCheckingIntervalMs !== undefined && { connectionsCheckingInterval: options.connectionsCheckingIntervalMs }),
    },
    app,
  );
  // Node's parser answers before the app's first layer runs: the API's security headers are given here too.
  server.on('clientError', problemClientError({ headers: apiSecurityHeaderList() }));
  // CONNECT: node:http never passes it to the app, and with no listener closes the connection without a word.
  server.on('connect', problemConnectRefusal({ headers: apiSecurityHeaderList() }));
  // A request whose Expect is not 100-continue: Node answers a bare 417 itself unless this is listened to. The app's
  // first layer refuses it (417 Problem), with the headers, request id and log line of any answer.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    unmetExpectations.add(req);
    app(req, res);
  });
  return server;
}

/**
 * What a stopping server does to its connections (`stopping()`, right after `server.close()`): each one ends once the
 * answer it is writing has gone out. New requests get `Connection: close`; an answer still to start gets it too; one
 * whose headers went out keep-alive ends its connection on `finish`, when it is written out, not before. Without this a
 * request in flight at the signal kept its connection, idle, for Node's keep-alive timeout (5 s), and the exit that
 * long. (`server.close()` itself closes the connections Node deems idle, among them one whose answer has ended but is
 * still being written to a slow reader: a limit of node:http that this does not lift.) Connections are tracked from
 * `connection` to `close`: nothing is done per request until stopping.
 */
export function drainOnStop(server: Server): { stopping(): void } {
  const sockets = new Set<Socket>();
  let draining = false;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.prependListener('request', (_req, res: ServerResponse) => {
    if (draining && !res.headersSent) res.setHeader('Connection', 'close');
  });
  return {
    stopping() {
      if (draining) return;
      draining = true;
      for (const socket of sockets) {
        // node:http keeps the answer a connection is writing on the socket (what closeIdleConnections reads too).
        const res = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
        if (!res || res.writableFinished) continue;
        if (!res.headersSent) res.setHeader('Connection', 'close');
        else res.once('finish', () => socket.end());
      }
    },
  };
}

/** Every event of the MFA routers, logged as one line each (they never carry a code or secret); a new event fails to compile until it is here. */
const MFA_EVENTS = Object.keys({
  'device.enrolled': true,
  'device.verified': true,
  'device.updated': true,
  'device.removed': true,
  'mfa.succeeded': true,
  'mfa.failed': true,
  'replay.refused': true,
  lockout: true,
  'trusted_device.created': true,
  'trusted_device.revoked': true,
  'recovery_codes.generated': true,
  'recovery_codes.revoked': true,
  'user.erased': true,
} satisfies Record<MfaEventName, true>) as MfaEventName[];

/** `readyzCache` as given, or its default; a set-up error names the two values. */
function readyzCacheOption(value: unknown): 'required' | 'optional' {
  if (value === undefined) return 'required';
  if (value === 'required' || value === 'optional') return value;
  throw new TypeError(`createExampleApp(): readyzCache must be 'required' or 'optional', not ${JSON.stringify(value)?.slice(0, 40) ?? typeof value}`);
}

export function createExampleApp(deps: ExampleAppDeps): Express {
  const { storage, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  // A JSON API nobody revalidates: an ETag would cost a SHA-1 of every response body for nothing.
  app.set('etag', false);
  // One layer for what every request gets first: security headers, request id, the log line.
  app.use(chain([apiSecurityHeaders(), requestId(), ...(deps.requestLog === false ? [] : [accessLog(logger)]), hostRequired]));

  // The routers first: a login's check walks past no other layer (Express tries each in turn).
  // [3/7] MFA devices: one emitter for both routers' events, one Redis for both rate limiters.
  const redis = deps.rateLimitRedis && { redis: deps.rateLimitRedis };
  const jwt = userTokens(deps);
  const mfa = mfaDevicesRouter({
    storage,
    keyRing: deps.keyRing,
    jwt,
    issuer: 'express-mfa-kit example',
    sender: deps.codeSender ?? demoSender(logger),
    // The same cache as the internal router: a device remembered here is trusted there at once.
    ...(deps.cache && { cache: deps.cache }),
    logger,
    ...redis,
    ...(deps.stepUp && { stepUp: deps.stepUp }),
  });
  for (const name of MFA_EVENTS) {
    mfa.events.on(name, (payload: { tenantId: string; userId: string; requestId: string }) => {
      const { tenantId, userId, requestId: request_id, ...rest } = payload;
      logger.info({ event: name, tenant_id: tenantId, user_id: userId, request_id, ...rest }, `mfa event ${name}`);
    });
  }
  app.use('/internal', internalRouter({ storage, internalKeys: deps.internalKeys, logger, ...(deps.cache && { cache: deps.cache }), keyRing: deps.keyRing, events: mfa.events, ...redis }));
  app.use('/auth/mfa', mfa);
  app.use('/mfa/devices/sync', deviceSyncRouter({ storage, keyRing: deps.keyRing, jwt, logger, ...(deps.stepUp && { stepUp: deps.stepUp }) }));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  const openapi = openApiDocument();
  app.get('/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  // The one HTML page: helmet's full default set (its CSP, COOP, Referrer-Policy, …) replaces the API's.
  // swagger-ui-express refuses a path ending in /package.json with a text/plain 404 of its own: a Problem here instead.
  const noPackageJson: RequestHandler = (req, _res, next) => {
    next(req.path.endsWith('/package.json') ? ProblemError.from('NOT_FOUND', 'No route matches this path.') : undefined);
  };
  app.use('/docs', helmet(), noPackageJson, swaggerUi.serve, swaggerUi.setup(openapi, { customSiteTitle: 'express-mfa-kit API', customCss: '' }));

  const cacheRequired = readyzCacheOption(deps.readyzCache) === 'required';
  app.get('/readyz', async (req, res) => {
    const [db, cache] = await Promise.all([
      probe(() => storage.ping().then(() => true)),
      deps.cachePing ? probe(deps.cachePing) : Promise.resolve('in-process' as const),
    ]);
    // Storage and cache reachable (CONTRACT.md §7); with `readyzCache: 'optional'` the database alone decides.
    const ready = db === 'up' && (cache !== 'down' || !cacheRequired);
    if (!ready) res.setHeader('Retry-After', '5');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', storage: db, cache, request_id: contextOf(req).requestId });
  });

  // /healthz, /readyz, /openapi.json with another method: 405 with Allow (RFC 9110 §15.5.6), and OPTIONS: 200 with
  // Allow, as the routers' paths (Express's own OPTIONS answer comes only after the catch-all 404 below).
  app.use(methodNotAllowed(app.router, { answerOptions: true }));
  app.use(notFound());
  app.use(problemJson({ logger }));
  return app;
}
