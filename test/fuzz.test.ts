/**
 * Hostile input, property-based (fast-check), over every route of the example app on real
 * Postgres: each answer is a 4xx Problem JSON or a success where the input was valid, never a 5xx;
 * Object.prototype stays clean; the server keeps serving after every batch.
 *
 * `npm test` runs a short pass (FUZZ_RUNS, default 300 cases in all); `npm run fuzz` runs ≥ 10,000.
 * FUZZ_SEED replays a failing run (fast-check prints the seed and the shrunk case).
 *
 * Routes are one table entry each: a route that lands adds one entry to ROUTES below.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import fc from 'fast-check';
import jwt from 'jsonwebtoken';
import { pino } from 'pino';
import { memoryCache } from '../index.js';
import { createExampleApp } from '../examples/app.js';
import { OPERATIONS, operationPath } from '../lib/openapi.js';
import { KEY_A, insertDevice, migratedStorage, ring, type TestDb } from './support/fixtures.js';
import {
  PROTO_KEYS,
  contentTypes,
  encodeLoose,
  extraQuery,
  headerValue,
  hostileJson,
  hugeJsonText,
  queryString,
  rawComponent,
  rawJsonText,
  type RawBody,
  type RawQuery,
} from './support/hostile.js';

const TOTAL_RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const JWT_SECRET = 'fuzz-test-jwt-secret-0123456789abcdef';
const INTERNAL_BODY_LIMIT = 100 * 1024;
const SYNC_BODY_LIMIT = 1024 * 1024;
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:@-]{1,128}$/;
/** Members a Problem body may have (RFC 9457 + the contract's extensions). */
const PROBLEM_KEYS = new Set(['type', 'title', 'status', 'detail', 'instance', 'code', 'i18n_key', 'message', 'timestamp', 'request_id', 'trace_id', 'span_id', 'service', 'errors', 'retry_after', 'sync_token', 'id']);
const STACK_OR_SOURCE = /\n\s+at\s|\.ts:\d+:\d+|\.js:\d+:\d+|node_modules/;

// ---------------------------------------------------------------------------------------------
// The route table
// ---------------------------------------------------------------------------------------------

type Auth = 'internal' | 'user' | 'none';

/** One generated request. */
interface Case {
  method: string;
  path: string;
  query: RawQuery;
  headers: Record<string, string>;
  body?: RawBody;
}

interface RouteSpec {
  /** Shown in failures and in the summary. */
  name: string;
  method: string | fc.Arbitrary<string>;
  /** The path (raw, already encoded), e.g. built from a template and generated parameters. */
  path: fc.Arbitrary<string>;
  auth: Auth;
  query?: fc.Arbitrary<RawQuery>;
  body?: fc.Arbitrary<RawBody>;
  /** Statuses a valid input may be answered with (every other answer must be a 4xx Problem). */
  success: readonly number[];
  /** Share of the cases. */
  weight: number;
}

/** `name` → arbitraries of one query parameter: valid values, and the route's sense of "valid". */
type QueryFields = Record<string, { valid: fc.Arbitrary<string>; required?: boolean }>;

/** Each field valid, hostile, missing or repeated; plus odd extra parameters. */
function queryOf(fields: QueryFields): fc.Arbitrary<RawQuery> {
  const perField = Object.entries(fields).map(([name, { valid, required }]) =>
    fc
      .oneof(
        { weight: 6, arbitrary: valid.map((v) => [encodeLoose(v)]) },
        { weight: 2, arbitrary: rawComponent().map((v) => [v]) },
        { weight: required ? 1 : 3, arbitrary: fc.constant([] as string[]) },
        { weight: 1, arbitrary: fc.tuple(valid, rawComponent()).map(([a, b]) => [encodeLoose(a), b]) },
        { weight: 1, arbitrary: fc.constant(['']) },
      )
      .map((values): RawQuery => values.map((v) => [name, v])),
  );
  return fc.tuple(fc.tuple(...perField), fc.oneof({ weight: 3, arbitrary: fc.constant([] as RawQuery) }, { weight: 1, arbitrary: extraQuery() }), fc.boolean()).map(([parts, extra, shuffle]) => {
    const all = [...parts.flat(), ...extra];
    return shuffle ? all.reverse() : all;
  });
}

const json = (value: unknown, contentType: string | undefined = 'application/json'): RawBody => ({ text: JSON.stringify(value) ?? 'null', contentType });

/**
 * A body built from a valid one: unchanged, a member dropped, a member replaced with a hostile
 * value, extra members (prototype keys among them), the whole body replaced; raw malformed or deeply
 * nested JSON; over the limit; with odd content types.
 */
function bodyOf(valid: fc.Arbitrary<Record<string, unknown>>, limit: number): fc.Arbitrary<RawBody> {
  const mutated = fc
    .tuple(valid, fc.nat(), hostileJson(), fc.constantFrom('keep', 'drop', 'replace', 'extra', 'proto', 'whole', 'wrap'))
    .map(([body, n, hostile, how]): unknown => {
      const keys = Object.keys(body);
      const key = keys[n % Math.max(1, keys.length)];
      switch (how) {
        case 'keep':
          return body;
        case 'drop':
          return key === undefined ? body : Object.fromEntries(Object.entries(body).filter(([k]) => k !== key));
        case 'replace':
          return key === undefined ? body : { ...body, [key]: hostile };
        case 'extra':
          return { ...body, [`extra_${n % 7}`]: hostile };
        case 'proto':
          // Own members named like prototype keys, as JSON.parse on the server makes them.
          return JSON.parse(`{${[...Object.entries(body).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`), `${JSON.stringify(PROTO_KEYS[n % PROTO_KEYS.length])}:{"polluted":"yes","prototype":{"polluted":"yes"}}`].join(',')}}`) as unknown;
        case 'whole':
          return hostile;
        case 'wrap':
          return [body];
        default:
          return body;
      }
    });
  return fc.oneof(
    { weight: 10, arbitrary: fc.tuple(mutated, contentTypes()).map(([value, type]) => json(value, type)) },
    { weight: 3, arbitrary: fc.tuple(rawJsonText(), contentTypes()).map(([text, contentType]) => ({ text, contentType })) },
    { weight: 1, arbitrary: hugeJsonText(limit + 1024).map((text) => ({ text, contentType: 'application/json' })) },
  );
}

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const base32 = (min: number, max: number) => fc.array(fc.constantFrom(...B32), { minLength: min, maxLength: max }).map((a) => a.join(''));
const plainText = (min: number, max: number) => fc.string({ minLength: min, maxLength: max }).filter((s) => !s.includes('\u0000'));
/** Mostly users of a large pool, so per-user rate limits and lockouts do not answer every case. */
const userId = fc.oneof({ weight: 1, arbitrary: fc.constantFrom('alice', 'bob', 'carol') }, { weight: 3, arbitrary: fc.nat({ max: 3000 }).map((n) => `fz${n}`) });
const pageParam = fc.oneof(fc.integer({ min: 1, max: 5 }).map(String), fc.constantFrom('0', '-1', '101', '1.5', '1e2'));
const pageSizeParam = fc.oneof(fc.integer({ min: 1, max: 100 }).map(String), fc.constantFrom('0', '101', '1000', '-5'));

/** A vault entry, mostly valid. */
const vaultEntry = fc.record(
  {
    secret: base32(16, 64),
    issuer: plainText(0, 30),
    account: plainText(0, 30),
    digits: fc.constantFrom(6, 7, 8),
    period: fc.constantFrom(15, 30, 60, 120),
    algorithm: fc.constantFrom('SHA1', 'SHA256', 'SHA512'),
  },
  { requiredKeys: ['secret'] },
);

const syncWriteBody = fc.record(
  {
    device_fingerprint: fc.oneof(fc.constantFrom('fp-phone', 'fp-tablet'), plainText(1, 64)),
    device_name: plainText(1, 40),
    totp_devices: fc.oneof(fc.array(vaultEntry, { maxLength: 4 }), fc.array(vaultEntry, { maxLength: 4 }).map((a) => JSON.stringify(a))),
    sync_token: fc.oneof(fc.constant(null), fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 32, maxLength: 32 })),
  },
  { requiredKeys: ['device_fingerprint', 'device_name', 'totp_devices'] },
);

const fingerprint = fc.oneof(fc.constantFrom('fp-laptop', 'fp-phone'), plainText(1, 64));
const trustBody = fc.record(
  {
    user_id: userId,
    device_fingerprint: fingerprint,
    device_name: fc.oneof(plainText(1, 40), fc.constant(null)),
    device_type: fc.constantFrom('desktop', 'mobile', 'tablet'),
    browser: plainText(1, 20),
    os: plainText(1, 20),
    ip: fc.oneof(fc.ipV4(), fc.ipV6(), fc.constant(null)),
    ttl_seconds: fc.oneof(fc.integer({ min: 1, max: 2_592_000 }), fc.constant(null)),
  },
  { requiredKeys: ['user_id', 'device_fingerprint'] },
);

/** Ids a route may be called with: an existing one, a well-formed unknown one, hostile ones. */
const existingSyncIds: string[] = [];
/**
 * A hostile path segment, but no dot-segment: the client's URL parser removes `.` and `..` (RFC 3986 §5.2.4; the
 * WHATWG URL standard `%2e` too), so `…/sync/.` is sent as the list's path, not as an id.
 */
const pathSegment = (): fc.Arbitrary<string> => rawComponent().filter((s) => !/^(?:\.|%2e){1,2}$/i.test(s));

const syncId = fc.oneof(
  { weight: 2, arbitrary: fc.constant(null).map(() => existingSyncIds[0] ?? 'devsync_00000000000000000000000000000000') },
  { weight: 2, arbitrary: fc.constant(null).map(() => `devsync_${randomBytes(16).toString('hex')}`) },
  { weight: 4, arbitrary: pathSegment() },
);

const existingTrustedIds: string[] = [];
const trustedId = fc.oneof(
  { weight: 2, arbitrary: fc.constant(null).map(() => existingTrustedIds[0] ?? randomUUID()) },
  { weight: 2, arbitrary: fc.uuid() },
  // Empty too: `…/trusted-devices/` names no device (404), it does not revoke them all.
  { weight: 4, arbitrary: pathSegment() },
);

const deviceName = plainText(1, 40);
/** Six digits now and then (the likely-valid shape), or the spaced/dashed forms apps show, or junk. */
const otpCode = fc.oneof(fc.integer({ min: 0, max: 999_999 }).map((n) => String(n).padStart(6, '0')), fc.constantFrom('123 456', '123-456', '12345678', '1234567'), plainText(0, 12));
const existingDeviceIds: string[] = [];
const deviceId = fc.oneof(
  { weight: 2, arbitrary: fc.constant(null).map(() => existingDeviceIds[0] ?? randomUUID()) },
  { weight: 2, arbitrary: fc.uuid() },
  { weight: 4, arbitrary: pathSegment().filter((id) => id !== '') },
);

const ROUTES: RouteSpec[] = [
  // ---- main: internal router (seed 000)
  {
    name: 'GET /internal/mfa/totp/devices',
    method: 'GET',
    path: fc.constant('/internal/mfa/totp/devices'),
    auth: 'internal',
    query: queryOf({ user_id: { valid: userId, required: true }, page: { valid: pageParam }, page_size: { valid: pageSizeParam } }),
    success: [200],
    weight: 3,
  },
  // ---- issue 5: device sync router (seed 001)
  {
    name: 'GET /mfa/devices/sync',
    method: 'GET',
    path: fc.constant('/mfa/devices/sync'),
    auth: 'user',
    query: queryOf({ page: { valid: pageParam }, page_size: { valid: pageSizeParam } }),
    success: [200],
    weight: 2,
  },
  {
    name: 'POST /mfa/devices/sync',
    method: 'POST',
    path: fc.constant('/mfa/devices/sync'),
    auth: 'user',
    body: bodyOf(syncWriteBody, SYNC_BODY_LIMIT),
    success: [200, 201],
    weight: 5,
  },
  {
    name: 'GET /mfa/devices/sync/:id',
    method: 'GET',
    path: syncId.map((id) => `/mfa/devices/sync/${id}`),
    auth: 'user',
    success: [200],
    weight: 2,
  },
  {
    name: 'DELETE /mfa/devices/sync/:id',
    method: 'DELETE',
    path: syncId.map((id) => `/mfa/devices/sync/${id}`),
    auth: 'user',
    // A token no record holds is a 409; a hostile one (a NUL: was a 500) a 400.
    query: queryOf({ sync_token: { valid: fc.oneof(fc.constant('0'.repeat(32)), plainText(1, 64)) } }),
    success: [204],
    weight: 1,
  },
  // ---- issue 3: trusted devices on the internal router (seed 002)
  {
    name: 'GET /internal/session/trusted-devices',
    method: 'GET',
    path: fc.constant('/internal/session/trusted-devices'),
    auth: 'internal',
    query: queryOf({ user_id: { valid: userId, required: true }, page: { valid: pageParam }, page_size: { valid: pageSizeParam }, include_expired: { valid: fc.constantFrom('true', 'false', '1', '0', 'yes') } }),
    success: [200],
    weight: 2,
  },
  {
    name: 'POST /internal/session/trusted-devices',
    method: 'POST',
    path: fc.constant('/internal/session/trusted-devices'),
    auth: 'internal',
    body: bodyOf(trustBody, INTERNAL_BODY_LIMIT),
    success: [201],
    weight: 4,
  },
  {
    name: 'GET /internal/session/trusted-devices/check',
    method: 'GET',
    path: fc.constant('/internal/session/trusted-devices/check'),
    auth: 'internal',
    query: queryOf({ user_id: { valid: userId, required: true }, device_fingerprint: { valid: fingerprint, required: true } }),
    success: [200],
    weight: 3,
  },
  {
    name: 'DELETE /internal/session/trusted-devices/:id',
    method: 'DELETE',
    path: trustedId.map((id) => `/internal/session/trusted-devices/${id}`),
    auth: 'internal',
    query: queryOf({ user_id: { valid: userId, required: true } }),
    success: [204],
    weight: 2,
  },
  {
    name: 'DELETE /internal/session/trusted-devices',
    method: 'DELETE',
    path: fc.constant('/internal/session/trusted-devices'),
    auth: 'internal',
    query: queryOf({ user_id: { valid: userId, required: true } }),
    success: [200],
    weight: 1,
  },
  {
    name: 'DELETE /internal/mfa/totp/devices/:id',
    method: 'DELETE',
    path: deviceId.map((id) => `/internal/mfa/totp/devices/${id}`),
    auth: 'internal',
    query: queryOf({ user_id: { valid: userId, required: true } }),
    success: [204],
    weight: 1,
  },
  {
    name: 'DELETE /internal/mfa/devices',
    method: 'DELETE',
    path: fc.constant('/internal/mfa/devices'),
    auth: 'internal',
    query: queryOf({ user_id: { valid: userId, required: true } }),
    success: [200],
    weight: 1,
  },
  {
    name: 'DELETE /internal/mfa/user-data',
    method: 'DELETE',
    path: fc.constant('/internal/mfa/user-data'),
    auth: 'internal',
    query: queryOf({ user_id: { valid: userId, required: true } }),
    success: [200],
    weight: 1,
  },
  // ---- issue 4: MFA devices router (seed 003) and internal TOTP verification
  { name: 'GET /auth/mfa/devices', method: 'GET', path: fc.constant('/auth/mfa/devices'), auth: 'user', query: extraQuery(), success: [200], weight: 1 },
  { name: 'POST /auth/mfa/devices/totp', method: 'POST', path: fc.constant('/auth/mfa/devices/totp'), auth: 'user', body: bodyOf(fc.record({ deviceName }), INTERNAL_BODY_LIMIT), success: [201], weight: 2 },
  {
    name: 'POST /auth/mfa/devices/sms',
    method: 'POST',
    path: fc.constant('/auth/mfa/devices/sms'),
    auth: 'user',
    body: bodyOf(fc.record({ deviceName, phoneNumber: fc.oneof(fc.constantFrom('+14155550123', '+44 20 7946 0958', '+49 (30) 123456'), plainText(1, 20)) }), INTERNAL_BODY_LIMIT),
    success: [201],
    weight: 2,
  },
  {
    name: 'POST /auth/mfa/devices/email',
    method: 'POST',
    path: fc.constant('/auth/mfa/devices/email'),
    auth: 'user',
    body: bodyOf(fc.record({ deviceName, email: fc.oneof(fc.emailAddress(), plainText(1, 40)) }), INTERNAL_BODY_LIMIT),
    success: [201],
    weight: 2,
  },
  {
    name: 'POST /auth/mfa/devices/:id/verify',
    method: 'POST',
    path: deviceId.map((id) => `/auth/mfa/devices/${id}/verify`),
    auth: 'user',
    body: bodyOf(fc.record({ code: otpCode }), INTERNAL_BODY_LIMIT),
    success: [200],
    weight: 2,
  },
  { name: 'POST /auth/mfa/devices/:id/challenge', method: 'POST', path: deviceId.map((id) => `/auth/mfa/devices/${id}/challenge`), auth: 'user', success: [202], weight: 1 },
  {
    name: 'PATCH /auth/mfa/devices/:id',
    method: 'PATCH',
    path: deviceId.map((id) => `/auth/mfa/devices/${id}`),
    auth: 'user',
    body: bodyOf(fc.record({ deviceName, enabled: fc.boolean() }, { requiredKeys: [] }), INTERNAL_BODY_LIMIT),
    success: [200],
    weight: 2,
  },
  { name: 'DELETE /auth/mfa/devices/:id', method: 'DELETE', path: deviceId.map((id) => `/auth/mfa/devices/${id}`), auth: 'user', success: [204], weight: 1 },
  {
    name: 'POST /auth/mfa/verify',
    method: 'POST',
    path: fc.constant('/auth/mfa/verify'),
    auth: 'user',
    body: bodyOf(
      fc.record(
        {
          code: otpCode,
          recoveryCode: fc.oneof(fc.constantFrom('abcd-efgh-jkmn', '0000-0000-0000'), plainText(1, 20)),
          deviceId: fc.oneof(fc.uuid(), fc.constant(null).map(() => existingDeviceIds[0] ?? randomUUID())),
          rememberDevice: fc.boolean(),
          device: fc.record({ fingerprint, name: plainText(1, 20), type: fc.constantFrom('desktop', 'mobile'), browser: plainText(1, 20), os: plainText(1, 20) }, { requiredKeys: ['fingerprint'] }),
        },
        { requiredKeys: [] },
      ),
      INTERNAL_BODY_LIMIT,
    ),
    success: [200],
    weight: 4,
  },
  { name: 'POST /auth/mfa/recovery-codes', method: 'POST', path: fc.constant('/auth/mfa/recovery-codes'), auth: 'user', success: [201], weight: 1 },
  { name: 'GET /auth/mfa/recovery-codes', method: 'GET', path: fc.constant('/auth/mfa/recovery-codes'), auth: 'user', query: extraQuery(), success: [200], weight: 1 },
  { name: 'GET /auth/mfa/trusted-devices', method: 'GET', path: fc.constant('/auth/mfa/trusted-devices'), auth: 'user', query: extraQuery(), success: [200], weight: 1 },
  { name: 'DELETE /auth/mfa/trusted-devices/:id', method: 'DELETE', path: trustedId.map((id) => `/auth/mfa/trusted-devices/${id}`), auth: 'user', success: [204], weight: 1 },
  { name: 'DELETE /auth/mfa/trusted-devices', method: 'DELETE', path: fc.constant('/auth/mfa/trusted-devices'), auth: 'user', success: [200], weight: 1 },
  {
    name: 'POST /internal/mfa/totp/verify',
    method: 'POST',
    path: fc.constant('/internal/mfa/totp/verify'),
    auth: 'internal',
    body: bodyOf(fc.record({ user_id: userId, code: otpCode }), INTERNAL_BODY_LIMIT),
    success: [200],
    weight: 3,
  },

  // ---- example server
  { name: 'GET /healthz', method: 'GET', path: fc.constant('/healthz'), auth: 'none', query: extraQuery(), success: [200], weight: 1 },
  { name: 'GET /readyz', method: 'GET', path: fc.constant('/readyz'), auth: 'none', query: extraQuery(), success: [200], weight: 1 },
  { name: 'GET /openapi.json', method: 'GET', path: fc.constant('/openapi.json'), auth: 'none', query: extraQuery(), success: [200], weight: 1 },
  {
    name: 'GET /docs/*',
    method: 'GET',
    path: fc.option(rawComponent(), { nil: undefined }).map((p) => (p === undefined ? '/docs' : `/docs/${p}`)),
    auth: 'none',
    query: extraQuery(),
    // swagger-ui-express redirects /docs to /docs/ and serves its page and assets.
    success: [200, 301, 302, 304],
    weight: 1,
  },
  // ---- anything else: unknown paths and methods under every mount point, with or without a body
  {
    name: 'any method, any path',
    method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'),
    path: fc
      .tuple(fc.constantFrom('/internal', '/internal/mfa/totp', '/internal/session', '/mfa/devices/sync', '/auth/mfa', '', '/%2e%2e', '//'), fc.array(rawComponent(), { maxLength: 3 }))
      .map(([prefix, parts]) => `${prefix}/${parts.join('/')}`),
    auth: 'internal',
    query: extraQuery(),
    body: bodyOf(fc.dictionary(fc.string({ maxLength: 8 }), hostileJson(), { maxKeys: 3 }), INTERNAL_BODY_LIMIT),
    // A generated path can land on a real list route, and OPTIONS is answered by Express itself.
    success: [200, 201, 204],
    weight: 3,
  },
];

// ---------------------------------------------------------------------------------------------
// Authentication headers: mostly valid (to reach the handlers), sometimes hostile
// ---------------------------------------------------------------------------------------------

const bearer = (claims: Record<string, unknown>) => `Bearer ${jwt.sign(claims, JWT_SECRET, { algorithm: 'HS256', expiresIn: '1h' })}`;
/** A correctly signed HS256 token around any JSON payload (jsonwebtoken only signs objects). */
const signedAny = (payload: unknown) => {
  const input = `${Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify(payload) ?? 'null').toString('base64url')}`;
  return `Bearer ${input}.${createHmac('sha256', JWT_SECRET).update(input).digest('base64url')}`;
};

function authHeaders(auth: Auth): fc.Arbitrary<Record<string, string>> {
  const tenant = fc.oneof({ weight: 8, arbitrary: fc.constant('acme') }, { weight: 1, arbitrary: headerValue() });
  switch (auth) {
    case 'none':
      return fc.constant({});
    case 'internal':
      return fc.oneof(
        { weight: 8, arbitrary: tenant.map((t) => ({ 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': t })) },
        { weight: 1, arbitrary: fc.constant({ 'X-Internal-API-Key': KEY_A }) },
        { weight: 1, arbitrary: headerValue().map((k) => ({ 'X-Internal-API-Key': k, 'X-Tenant-ID': 'acme' })) },
      );
    case 'user':
      return fc.oneof(
        { weight: 8, arbitrary: userId.map((sub) => ({ Authorization: bearer({ sub, tenant_id: 'acme' }) })) },
        // Hostile claims in a validly signed token.
        { weight: 1, arbitrary: fc.tuple(hostileJson(), hostileJson()).map(([sub, t]) => ({ Authorization: bearer({ sub, tenant_id: t }) })) },
        { weight: 1, arbitrary: fc.tuple(userId, headerValue()).map(([sub, t]) => ({ Authorization: bearer({ sub, tenant_id: 'acme' }), 'X-Tenant-ID': t })) },
        { weight: 1, arbitrary: headerValue().map((v) => ({ Authorization: `Bearer ${v}` })) },
        // A validly signed token whose payload is anything at all (null, a number, an array, odd claims).
        { weight: 1, arbitrary: hostileJson().map((payload) => ({ Authorization: signedAny(payload) })) },
      );
  }
}

/** One odd extra header now and then (request id, trace context, cookies, accept…). */
const extraHeaders: fc.Arbitrary<Record<string, string>> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({}) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('X-Request-ID', 'traceparent', 'Cookie', 'Accept', 'Accept-Encoding', 'Accept-Charset', 'X-Forwarded-For', 'Origin', 'X-HTTP-Method-Override', 'Content-Encoding'), headerValue()).map(([k, v]) => ({ [k]: v })) },
);

function caseOf(route: RouteSpec): fc.Arbitrary<Case> {
  const method = typeof route.method === 'string' ? fc.constant(route.method) : route.method;
  return fc
    .record({
      method,
      path: route.path,
      query: route.query ?? fc.constant([] as RawQuery),
      auth: authHeaders(route.auth),
      extra: extraHeaders,
      body: route.body ? route.body.map((b): RawBody | undefined => b) : fc.constant(undefined),
    })
    .map(({ method: m, path, query, auth, extra, body }) => ({ method: m, path, query, headers: { ...extra, ...auth }, ...(body !== undefined && { body }) }));
}

// ---------------------------------------------------------------------------------------------
// Sending and judging
// ---------------------------------------------------------------------------------------------

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

function send(agent: http.Agent, base: string, c: Case): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...c.headers };
    let payload: Buffer | undefined;
    if (c.body !== undefined) {
      payload = Buffer.from(c.body.text, 'utf8');
      headers['Content-Length'] = payload.length;
      if (c.body.contentType !== undefined) headers['Content-Type'] = c.body.contentType;
    }
    const req = http.request(`${base}${c.path}${queryString(c.query)}`, { method: c.method, agent, headers, timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.once('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error('no answer within 15 s')));
    req.once('error', reject);
    req.end(payload);
  });
}

const statusCounts = new Map<number, number>();
let casesRun = 0;
const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort().join(',');

function expectCleanPrototypes(): void {
  expect(Object.getOwnPropertyNames(Object.prototype).sort().join(','), 'Object.prototype was changed').to.equal(protoBefore);
  const probe = {} as Record<string, unknown>;
  for (const k of ['polluted', 'isAdmin', 'prototype']) expect(probe[k], `({}).${k}`).to.equal(undefined);
  expect(typeof probe.toString).to.equal('function');
}

/**
 * The OpenAPI document's operations by the names ROUTES gives them (`POST /mfa/devices/sync/:id`), with the paths that
 * are theirs: `/mfa/devices/sync/` (an empty id) is the list's.
 */
const DOCUMENTED = new Map(
  OPERATIONS.map((op) => {
    const path = operationPath(op);
    const name = `${op.method.toUpperCase()} ${path.replaceAll(/\{(\w+)\}/g, ':$1')}`;
    const pattern = new RegExp(`^${path.split(/\{\w+\}/).map((part) => part.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^/]+')}$`);
    return [name, { op, pattern }];
  }),
);

function judge(route: RouteSpec, c: Case, a: Answer): void {
  const what = `${c.method} ${c.path}${queryString(c.query)} → ${a.status} ${a.text.slice(0, 300)}`;
  expect(a.status, `5xx: ${what}`).to.be.below(500);
  expect(a.headers['set-cookie'], what).to.equal(undefined);
  expect(a.headers['x-injected'], what).to.equal(undefined);
  const rid = a.headers['x-request-id'];
  if (rid !== undefined) expect(rid, what).to.match(SAFE_REQUEST_ID);
  if (a.status >= 400) {
    expect(a.headers['content-type'], what).to.match(/^application\/problem\+json/);
    const body = JSON.parse(a.text) as Record<string, unknown>;
    expect(body.status, what).to.equal(a.status);
    expect(body.code, what).to.be.a('number');
    expect(Object.keys(body).filter((k) => !PROBLEM_KEYS.has(k)), what).to.deep.equal([]);
    expect(a.text, what).not.to.match(STACK_OR_SOURCE);
  } else {
    expect(route.success, `unexpected success: ${what}`).to.include(a.status);
    // A success body is what the OpenAPI document says it is (e.g. no null where it types a string).
    const documented = typeof route.method === 'string' ? DOCUMENTED.get(route.name) : undefined;
    const schema = documented?.pattern.test(c.path) ? documented.op.responses[a.status] : undefined;
    if (schema) {
      const parsed = schema.safeParse(JSON.parse(a.text));
      expect(parsed.success, `not the documented body: ${what}\n${parsed.error?.message ?? ''}`).to.equal(true);
    }
  }
}

describe('hostile input fuzz (fast-check) over every route of the example app', function () {
  this.timeout(process.env.FUZZ_RUNS === undefined ? 120_000 : 0);
  let db: TestDb;
  let server: Server;
  let base: string;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const logLines: string[] = [];

  before(async () => {
    db = await migratedStorage();
    await insertDevice(db.knex, { tenantId: 'acme', userId: 'alice' });
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(...chunk.toString('utf8').split('\n').filter((l) => l.includes('"level":50') || l.includes('"level":60')));
        done();
      },
    });
    const app = createExampleApp({ storage: db.storage, cache: memoryCache(), codeSender: { send() {} }, internalKeys: [KEY_A], keyRing: ring, jwtSecret: JWT_SECRET, logger: pino({ level: 'warn' }, sink) });
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // One existing sync record, so id routes can reach the found path.
    const created = await send(agent, base, {
      method: 'POST',
      path: '/mfa/devices/sync',
      query: [],
      headers: { Authorization: bearer({ sub: 'alice', tenant_id: 'acme' }) },
      body: json({ device_fingerprint: 'fp-seed', device_name: 'Seed', totp_devices: [{ secret: 'JBSWY3DPEHPK3PXP' }] }),
    });
    expect(created.status, created.text).to.equal(201);
    existingSyncIds.push((JSON.parse(created.text) as { id: string }).id);
    const trusted = await send(agent, base, {
      method: 'POST',
      path: '/internal/session/trusted-devices',
      query: [],
      headers: { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' },
      body: json({ user_id: 'alice', device_fingerprint: 'fp-seed' }),
    });
    expect(trusted.status, trusted.text).to.equal(201);
    existingTrustedIds.push((JSON.parse(trusted.text) as { id: string }).id);
    const enrolled = await send(agent, base, {
      method: 'POST',
      path: '/auth/mfa/devices/totp',
      query: [],
      headers: { Authorization: bearer({ sub: 'alice', tenant_id: 'acme' }) },
      body: json({ deviceName: 'Seed phone' }),
    });
    expect(enrolled.status, enrolled.text).to.equal(201);
    existingDeviceIds.push((JSON.parse(enrolled.text) as { device: { id: string } }).device.id);
  });

  after(async () => {
    agent.destroy();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await db?.drop();
    const statuses = [...statusCounts.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${n}×${s}`).join(', ');
    console.log(`      [fuzz] ${casesRun} cases over ${ROUTES.length} route entries; answers: ${statuses}`);
  });

  /** The server keeps serving: health, and a valid call on each router. */
  async function expectStillServing(): Promise<void> {
    const health = await send(agent, base, { method: 'GET', path: '/healthz', query: [], headers: {} });
    expect(health.status).to.equal(200);
    const internal = await send(agent, base, { method: 'GET', path: '/internal/mfa/totp/devices', query: [['user_id', 'alice']], headers: { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' } });
    expect(internal.status, internal.text).to.equal(200);
    const sync = await send(agent, base, { method: 'GET', path: '/mfa/devices/sync', query: [], headers: { Authorization: bearer({ sub: 'alice', tenant_id: 'acme' }) } });
    expect(sync.status, sync.text).to.equal(200);
  }

  // Regressions: cases the fuzz found, kept as plain tests.
  it('regression: a path parameter with broken percent-encoding (/sync/%, /sync/%zz, /sync/%E0%A4%A) is a 400 Problem, not a 500', async () => {
    for (const method of ['GET', 'DELETE']) {
      for (const id of ['%', '%zz', '%E0%A4%A', 'a%']) {
        const a = await send(agent, base, { method, path: `/mfa/devices/sync/${id}`, query: [], headers: { Authorization: bearer({ sub: 'alice', tenant_id: 'acme' }) } });
        expect(a.status, `${method} ${id}: ${a.text}`).to.equal(400);
        const body = JSON.parse(a.text) as { errors: unknown[]; detail: string };
        expect(body.errors).to.deep.equal([{ field: '(path)', code: 'format', description: 'The URL path has malformed percent-encoding.' }]);
        // The broken value itself is not echoed back.
        expect(body.detail).not.to.contain(id);
      }
    }
  });

  it('prototype-pollution payloads in bodies and queries change nothing global', async () => {
    const auth = { Authorization: bearer({ sub: 'alice', tenant_id: 'acme' }) };
    for (const text of [
      '{"__proto__":{"polluted":"yes"},"device_fingerprint":"fp-proto","device_name":"P","totp_devices":[]}',
      '{"constructor":{"prototype":{"polluted":"yes"}},"device_fingerprint":"fp-proto","device_name":"P","totp_devices":[]}',
      '{"device_fingerprint":"fp-proto","device_name":"P","totp_devices":[{"secret":"JBSWY3DPEHPK3PXP","__proto__":{"polluted":"yes"}}]}',
      '{"device_fingerprint":"fp-proto","device_name":"P","totp_devices":"[{\\"secret\\":\\"JBSWY3DPEHPK3PXP\\",\\"constructor\\":{\\"prototype\\":{\\"polluted\\":1}}}]"}',
    ]) {
      const a = await send(agent, base, { method: 'POST', path: '/mfa/devices/sync', query: [], headers: auth, body: { text, contentType: 'application/json' } });
      expect(a.status, `${text} → ${a.text}`).to.be.oneOf([200, 201, 400, 409]);
      expectCleanPrototypes();
    }
    const q = await send(agent, base, { method: 'GET', path: '/internal/mfa/totp/devices', query: [['user_id', 'alice'], ['__proto__[polluted]', 'yes'], ['constructor[prototype][polluted]', 'yes']], headers: { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' } });
    expect(q.status).to.equal(200);
    expectCleanPrototypes();
  });

  it('fuzzes every operation of the OpenAPI document (whose success bodies the cases are checked against)', () => {
    const named = new Set(ROUTES.map((r) => r.name));
    expect([...DOCUMENTED.keys()].filter((name) => !named.has(name))).to.deep.equal([]);
  });

  const weights = ROUTES.reduce((sum, r) => sum + r.weight, 0);
  for (const route of ROUTES) {
    // Rounded up, so the run is never short of FUZZ_RUNS.
    const runs = Math.max(5, Math.ceil((TOTAL_RUNS * route.weight) / weights));
    it(`${route.name}: ${runs} hostile cases → 4xx Problem or valid success, never 5xx`, async () => {
      await fc.assert(
        fc.asyncProperty(caseOf(route), async (c) => {
          const a = await send(agent, base, c);
          casesRun++;
          statusCounts.set(a.status, (statusCounts.get(a.status) ?? 0) + 1);
          judge(route, c, a);
          expectCleanPrototypes();
        }),
        { numRuns: runs, ...(SEED !== undefined && { seed: SEED }) },
      );
      await expectStillServing();
    });
  }

  it('logged no unexpected error (level ≥ 50) during the whole run', () => {
    expect(logLines).to.deep.equal([]);
  });
});
