/**
 * Authentication edge cases: the internal API key (length, case, whitespace, repeated header, query
 * string, …) and user JWTs (alg none, wrong algorithm, key confusion, issuer/audience, expiry,
 * not-before, tampering, garbage) → 401 Problem, never a 500, never an echo of what was sent.
 */
import { createHmac, generateKeyPairSync } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { once } from 'node:events';
import { expect } from 'chai';
import express from 'express';
import jwt from 'jsonwebtoken';
import { pino } from 'pino';
import request from 'supertest';
import passportModule from 'passport';
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt';
import { mfaDevicesRouter, problemJson, silentLogger } from '../index.js';
import { createExampleApp, createExampleServer, REQUEST_TIMEOUT_MS } from '../examples/app.js';
import { contextOf } from '../lib/context.js';
import { INVALID_TOKEN_CHALLENGE, userAuth, type UserAuthOptions } from '../lib/user-auth.js';
import { KEY_A, KEY_B, insertDevice, migratedStorage, ring, type TestDb } from './support/fixtures.js';

const DEVICES = '/internal/mfa/totp/devices?user_id=alice';
const JWT_SECRET = 'auth-edge-test-jwt-secret-0123456789';

/** Sends raw bytes (for what HTTP clients will not send: a repeated header, a body shorter than its length) and returns status + body. */
function rawRequest(port: number, head: string, body = ''): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw request timed out')));
    socket.on('data', (chunk: Buffer) => (data += chunk.toString('utf8')));
    socket.once('error', reject);
    socket.once('end', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1]);
      const end = data.indexOf('\r\n\r\n');
      resolve({ status, head: data.slice(0, end), body: data.slice(end + 4) });
    });
    socket.write(head.replaceAll('\n', '\r\n') + '\r\n\r\n' + body);
  });
}

const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

describe('auth edge cases', function () {
  this.timeout(60_000);
  let db: TestDb;
  let app: express.Express;
  let server: Server;
  let port: number;

  before(async () => {
    db = await migratedStorage();
    await insertDevice(db.knex, { tenantId: 'acme', userId: 'alice' });
    app = createExampleApp({ storage: db.storage, codeSender: { send() {} }, internalKeys: [KEY_A, KEY_B], keyRing: ring, jwtSecret: JWT_SECRET, logger: pino({ level: 'silent' }) });
    server = createExampleServer(app).listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await db?.drop();
  });

  /** A 401 Problem for the internal key that echoes neither the sent value nor a real key. */
  const expectKey401 = (res: { status: number; headers: Record<string, string>; text: string }, sent: string, what: string): void => {
    expect(res.status, `${what}: ${res.text}`).to.equal(401);
    expect(res.headers['content-type'], what).to.match(/^application\/problem\+json/);
    const body = JSON.parse(res.text) as Record<string, unknown>;
    expect(body, what).to.include({ status: 401, code: 40100002 });
    // RFC 9110 §15.5.2: a 401 carries a challenge; this one names the header the key goes in.
    expect(res.headers['www-authenticate'], what).to.equal('ApiKey header="x-internal-api-key"');
    for (const secret of [KEY_A, KEY_B, ...(sent.length >= 8 ? [sent] : [])]) expect(res.text, what).not.to.contain(secret);
  };

  describe('HTTP framing (the example server)', () => {
    it('a request not received in time (a body shorter than its Content-Length) → 408 Problem, and the connection ends', async () => {
      const slow = createExampleServer(app, { requestTimeoutMs: 300, connectionsCheckingIntervalMs: 50 }).listen(0, '127.0.0.1');
      await new Promise<void>((resolve) => slow.once('listening', resolve));
      try {
        const started = performance.now();
        const head = `POST /internal/session/trusted-devices HTTP/1.1\nHost: x\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}\nContent-Type: application/json\nContent-Length: 100`;
        const res = await rawRequest((slow.address() as AddressInfo).port, head, '{"user_id":"alice",');
        expect(res.status, res.head).to.equal(408);
        expect(res.head).to.match(/\r\nContent-Type: application\/problem\+json/i);
        expect(JSON.parse(res.body)).to.include({ status: 408, code: 40800001, detail: 'The request was not received in time.' });
        expect(performance.now() - started).to.be.below(5_000);
      } finally {
        await new Promise<void>((resolve) => slow.close(() => resolve()));
      }
      // Nothing was stored from the half-sent body.
      expect(await db.knex('trusted_devices').where({ tenant_id: 'acme' }).count({ n: '*' }).first()).to.deep.equal({ n: '0' });
    });

    it('the example server waits at most REQUEST_TIMEOUT_MS for a request (Node: 300 s), headers included', () => {
      const server = createExampleServer(app);
      expect(server.requestTimeout).to.equal(REQUEST_TIMEOUT_MS);
      expect(server.headersTimeout).to.be.at.most(REQUEST_TIMEOUT_MS);
      expect(REQUEST_TIMEOUT_MS).to.be.at.most(60_000);
      // 0 turns the request timeout off, not the headers timeout.
      const unlimited = createExampleServer(app, { requestTimeoutMs: 0 });
      expect([unlimited.requestTimeout, unlimited.headersTimeout]).to.deep.equal([0, 60_000]);
    });

    it("an Expect other than 100-continue → 417 Problem with its request id (RFC 9110 §10.1.1), not Node's bare status line; 100-continue is met", async () => {
      for (const expectation of ['200-ok', 'foo=bar']) {
        const res = await rawRequest(port, `GET ${DEVICES} HTTP/1.1\nHost: x\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}\nExpect: ${expectation}\nConnection: close`);
        expect(res.status, expectation).to.equal(417);
        expect(res.head).to.match(/\r\ncontent-type: application\/problem\+json; charset=utf-8\r\n/i);
        const problem = JSON.parse(res.body) as Record<string, unknown>;
        expect(problem, expectation).to.include({ status: 417, code: 41700001 });
        expect(res.head).to.contain(`\r\nx-request-id: ${String(problem.request_id)}\r\n`);
      }
      const body = JSON.stringify({ user_id: 'alice', device_fingerprint: 'expect-fp' });
      const met = await rawRequest(port, `POST /internal/session/trusted-devices HTTP/1.1\nHost: x\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}\nContent-Type: application/json\nContent-Length: ${body.length}\nExpect: 100-continue\nConnection: close`, body);
      // Node meets it: 100 Continue, then the answer; so too when it comes with another expectation, or twice.
      expect(met.status, met.body).to.equal(100);
      expect(met.body).to.match(/^HTTP\/1\.1 201 Created\r\n/);
      for (const head of ['Expect: 100-continue, 200-ok', 'Expect: 100-continue\nExpect: 100-continue']) {
        const again = await rawRequest(port, `POST /internal/session/trusted-devices HTTP/1.1\nHost: x\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}\nContent-Type: application/json\nContent-Length: ${body.length}\n${head}\nConnection: close`, body);
        expect(again.status, head).to.equal(100);
        expect(again.body, head).to.match(/^HTTP\/1\.1 201 Created\r\n/);
      }
      // HTTP/1.0 has no expectations (RFC 9110 §10.1.1: a 1.0 request's Expect is ignored).
      const old = await rawRequest(port, `GET ${DEVICES} HTTP/1.0\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}\nExpect: 200-ok`);
      expect(old.status).to.equal(200);
    });

    it('CONNECT → 400 Problem with the API security headers, then the connection ends (node:http alone would close it without an answer)', async () => {
      // Bytes after the request (a would-be tunnel's first data) are never read as another request.
      const res = await rawRequest(port, `CONNECT 127.0.0.1:${port} HTTP/1.1\nHost: 127.0.0.1:${port}`, `GET ${DEVICES} HTTP/1.1\r\nHost: x\r\n\r\n`);
      expect(res.status, res.head).to.equal(400);
      expect(res.head).to.match(/\r\nContent-Type: application\/problem\+json; charset=utf-8\r\n/i);
      expect(res.head).to.match(/\r\nConnection: close$/im);
      expect(res.head).to.match(/\r\nX-Content-Type-Options: nosniff\r\n/i);
      const problem = JSON.parse(res.body) as Record<string, unknown>;
      expect(problem).to.include({ status: 400, code: 40000003, detail: 'CONNECT asks for a tunnel, and this server is not a proxy.' });
      expect(problem).to.not.have.property('instance');
      expect(res.head).to.contain(`\r\nX-Request-ID: ${String(problem.request_id)}\r\n`);
      // The server still answers the next connection.
      const next = await rawRequest(port, `GET ${DEVICES} HTTP/1.1\nHost: x\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}\nConnection: close`);
      expect(next.status).to.equal(200);
      // Pipelined behind a request still being answered: no 400 that the client would read as that request's answer.
      const pipelined = await rawRequest(port, `GET ${DEVICES} HTTP/1.1\nHost: x\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}\n\nCONNECT 127.0.0.1:${port} HTTP/1.1\nHost: 127.0.0.1:${port}`);
      expect(`${pipelined.head}\r\n\r\n${pipelined.body}`).not.to.contain('400 Bad Request');
    });

    it('an HTTP/1.1 request without Host → 400 Problem with its request id (RFC 9112 §3.2), not Node\'s bare status line; HTTP/1.0 needs none', async () => {
      // No `Connection: close` asked for: the answer closes the connection (rawRequest waits for the end), as Node's did.
      const res = await rawRequest(port, `GET ${DEVICES} HTTP/1.1\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}`);
      expect(res.status).to.equal(400);
      expect(res.head).to.match(/\r\nconnection: close/i);
      expect(res.head).to.match(/\r\ncontent-type: application\/problem\+json; charset=utf-8\r\n/i);
      const problem = JSON.parse(res.body) as Record<string, unknown>;
      expect(problem).to.include({ status: 400, code: 40000003, detail: 'An HTTP/1.1 request needs a Host header.' });
      expect(res.head).to.contain(`\r\nx-request-id: ${String(problem.request_id)}\r\n`);
      const old = await rawRequest(port, `GET ${DEVICES} HTTP/1.0\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}`);
      expect(old.status).to.equal(200);
    });

    it('a target in absolute form with userinfo → 400 (RFC 9110 §4.2.4); no answer or log line repeats the password', async () => {
      const lines: string[] = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
      const logged = createExampleApp({ storage: db.storage, codeSender: { send() {} }, internalKeys: [KEY_A, KEY_B], keyRing: ring, jwtSecret: JWT_SECRET, logger });
      const server = createExampleServer(logged).listen(0, '127.0.0.1');
      await once(server, 'listening');
      const at = (server.address() as AddressInfo).port;
      try {
        const headers = `Host: 127.0.0.1\nX-Tenant-ID: acme\nX-Internal-API-Key: ${KEY_A}`;
        const secret = await rawRequest(at, `GET http://svc:S3cr3tPass@127.0.0.1:${at}${DEVICES} HTTP/1.1\n${headers}`);
        expect(secret.status).to.equal(400);
        expect(JSON.parse(secret.body)).to.include({ status: 400, code: 40000003, instance: DEVICES, detail: 'A request target must not carry user information (user:password@).' });
        // Without userinfo, an absolute-form target is routed (RFC 9112 §3.2.2), and a Problem names its path only.
        const plain = await rawRequest(at, `GET http://127.0.0.1:${at}${DEVICES} HTTP/1.1\n${headers}\nConnection: close`);
        expect(plain.status, plain.body).to.equal(200);
        const missing = await rawRequest(at, `GET http://127.0.0.1:${at}/nope?a=1 HTTP/1.1\n${headers}\nConnection: close`);
        expect(missing.status).to.equal(404);
        expect(JSON.parse(missing.body)).to.include({ instance: '/nope?a=1' });
        // What node:http lets through raw is percent-encoded: `instance` is a URI reference (RFC 9457 §3.1.5).
        const raw = await rawRequest(at, `GET /nope/"<>{}|^\`%zz%41 HTTP/1.1\n${headers}\nConnection: close`);
        expect(raw.status).to.be.oneOf([400, 404]);
        expect(JSON.parse(raw.body)).to.include({ instance: '/nope/%22%3C%3E%7B%7D%7C%5E%60%25zz%41' });
        // Not another host's (`//host/…`), and not cut inside an escape at its 512 characters.
        const hostLike = await rawRequest(at, `GET //evil.example/x HTTP/1.1\n${headers}\nConnection: close`);
        expect(JSON.parse(hostLike.body)).to.include({ instance: '/%2Fevil.example/x' });
        const long = await rawRequest(at, `GET /${'a'.repeat(510)}"bc HTTP/1.1\n${headers}\nConnection: close`);
        const instance = (JSON.parse(long.body) as { instance: string }).instance;
        expect(instance).to.equal(`/${'a'.repeat(510)}`);
        for (const res of [secret, plain, missing]) expect(res.head + res.body).not.to.contain('S3cr3tPass');
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      expect(lines.join('')).not.to.contain('S3cr3tPass').and.not.to.contain('http://');
      expect(lines.map((l) => (JSON.parse(l) as { req?: { path?: string } }).req?.path).filter(Boolean)).to.include.members(['/internal/mfa/totp/devices', '/nope']);
    });

    it('a target over the size limit → 414 URI Too Long (RFC 9110 §15.5.15), a header over it → 431', async () => {
      const long = await rawRequest(port, `GET /internal/mfa/totp/devices?user_id=${'a'.repeat(20_000)} HTTP/1.1\nHost: x\nConnection: close`);
      expect(long.status).to.equal(414);
      expect(JSON.parse(long.body)).to.include({ status: 414, code: 41400001, title: 'URI Too Long' });
      const header = await rawRequest(port, `GET /healthz HTTP/1.1\nHost: x\nX-Big: ${'a'.repeat(20_000)}\nConnection: close`);
      expect(header.status).to.equal(431);
    });

    it("what Node's parser refuses (headers over the limit, bytes that are not HTTP) gets the API's security headers too, as every answer", async () => {
      const routed = await rawRequest(port, `GET /healthz HTTP/1.1\nHost: x\nConnection: close`);
      const security = ['content-security-policy', 'cross-origin-resource-policy', 'strict-transport-security', 'x-content-type-options', 'x-frame-options'];
      const fields = (head: string) => new Map(head.split('\r\n').slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const expected = fields(routed.head);
      for (const [what, head] of [
        ['headers over the limit', `GET /healthz HTTP/1.1\nHost: x\nX-Big: ${'a'.repeat(20_000)}`],
        ['not HTTP', 'NOT HTTP AT ALL'],
      ] as const) {
        const res = await rawRequest(port, head);
        expect(res.status, what).to.be.oneOf([400, 431]);
        const got = fields(res.head);
        for (const name of security) expect(got.get(name), `${what}: ${name}`).to.be.a('string').and.equal(expected.get(name));
      }
    });
  });

  describe('internal API key (X-Internal-API-Key)', () => {
    const variants: Array<[string, string]> = [
      ['shorter than the real key', KEY_A.slice(0, -1)],
      ['longer than the real key', `${KEY_A}a`],
      ['one character changed', `${KEY_A.slice(0, -1)}b`],
      ['a prefix', KEY_A.slice(0, 16)],
      ['1 character', 'x'],
      ['10,000 characters', 'k'.repeat(10_000)],
      ['upper-cased', KEY_A.toUpperCase()],
      ['lower-cased (of KEY_A upper-cased)', KEY_A.toUpperCase().toLowerCase().replace('test', 'Test')],
      ['first letter upper-cased', KEY_A[0]!.toUpperCase() + KEY_A.slice(1)],
      ['with a space inside', `${KEY_A.slice(0, 10)} ${KEY_A.slice(10)}`],
      ['two keys joined by a comma', `${KEY_A},${KEY_B}`],
      ['two keys joined by ", "', `${KEY_A}, ${KEY_B}`],
      ['quoted', `"${KEY_A}"`],
      ['as "Bearer <key>"', `Bearer ${KEY_A}`],
      ['base64 of the key', Buffer.from(KEY_A).toString('base64')],
      ['percent-encoded', encodeURIComponent(KEY_A).replace(/-/g, '%2D')],
      ['latin-1 bytes', '\xe9\xff'.repeat(10)],
      ['the SHA-256 digest of the key', 'b'.repeat(64)],
    ];
    for (const [what, key] of variants) {
      it(`${what} → 401 Problem`, async () => {
        const res = await request(app).get(DEVICES).set('X-Internal-API-Key', key).set('X-Tenant-ID', 'acme');
        expectKey401(res, key, what);
      });
    }

    it('empty, or only whitespace → 401 Problem', async () => {
      for (const key of ['', ' ', '\t']) {
        const res = await rawRequest(port, `GET ${DEVICES} HTTP/1.1\nHost: x\nConnection: close\nX-Tenant-ID: acme\nX-Internal-API-Key: ${key}`);
        expect(res.status, JSON.stringify(key)).to.equal(401);
        expect(JSON.parse(res.body)).to.include({ code: 40100002 });
      }
    });

    it('surrounding whitespace is not part of an HTTP field value (RFC 9110 §5.5): the parser strips it, so the key is the key', async () => {
      for (const key of [` ${KEY_A}`, `${KEY_A} `, `\t${KEY_A}\t`]) {
        const res = await rawRequest(port, `GET ${DEVICES} HTTP/1.1\nHost: x\nConnection: close\nX-Tenant-ID: acme\nX-Internal-API-Key: ${key}`);
        expect(res.status, JSON.stringify(key)).to.equal(200);
      }
    });

    it('the header repeated (even twice the right key) → 401: an ambiguous credential is refused', async () => {
      for (const [a, b] of [
        [KEY_A, KEY_A],
        [KEY_A, KEY_B],
        ['wrong-wrong-wrong-wrong', KEY_A],
        [KEY_A, ''],
      ]) {
        const res = await rawRequest(port, `GET ${DEVICES} HTTP/1.1\nHost: x\nConnection: close\nX-Tenant-ID: acme\nX-Internal-API-Key: ${a}\nX-Internal-API-Key: ${b}`);
        expect(res.status, `${a} + ${b}: ${res.body}`).to.equal(401);
        expect(res.body).not.to.contain(KEY_A);
      }
    });

    it('the key only in the query string, a cookie, Authorization or the body → 401; the key is not echoed in `instance`', async () => {
      for (const q of [`&x-internal-api-key=${KEY_A}`, `&X-Internal-API-Key=${KEY_A}`, `&api_key=${KEY_A}`, `&key=${KEY_A}`, `&internal_api_key=${KEY_A}`]) {
        const res = await request(app).get(`${DEVICES}${q}`).set('X-Tenant-ID', 'acme');
        expectKey401(res, KEY_A, q);
      }
      let res = await request(app).get(DEVICES).set('X-Tenant-ID', 'acme').set('Cookie', `x-internal-api-key=${KEY_A}`);
      expectKey401(res, KEY_A, 'cookie');
      res = await request(app).get(DEVICES).set('X-Tenant-ID', 'acme').set('Authorization', `Bearer ${KEY_A}`);
      expectKey401(res, KEY_A, 'Authorization');
      res = await request(app).post('/internal/mfa/totp/devices').set('X-Tenant-ID', 'acme').send({ 'x-internal-api-key': KEY_A, user_id: 'alice' });
      expectKey401(res, KEY_A, 'body');
    });

    it('a key in the query string is refused even beside the right header (CONTRACT.md §1): 401 that says why, any spelling of the name', async () => {
      // Values without "key" in them: the name alone is refused, however it is spelt or encoded.
      for (const q of ['&x-internal-api-key=x', '&X-Internal-API-Key=x', '&x_internal_api_key=x', '&api_key=x', '&apiKey=x', '&API-KEY=x', '&key=x', '&%6Bey=x', '&api_%6Bey=x', '&api%5Fkey=x', '&api+key=x', '&api_key[]=x', '&internal_api_key', '&access_key=x']) {
        const res = await request(app).get(`${DEVICES}${q}`).set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme');
        expectKey401(res, KEY_A, q);
        expect(res.body.detail, q).to.equal('An API key in the URL is refused (URLs are logged): send it in the x-internal-api-key header only, and rotate the key that was sent.');
      }
      // Names that merely contain "key" are not a key: the request passes.
      for (const q of ['&monkey=1', '&keyboard=1']) {
        const res = await request(app).get(`/internal/session/trusted-devices/check?user_id=alice&device_fingerprint=key${q}`).set('X-Internal-API-Key', KEY_A).set('X-Tenant-ID', 'acme');
        expect(res.status, q).to.not.equal(401);
      }
    });

    it('the same on every internal route (trusted devices, TOTP verify): wrong, empty-ish, case-changed → 401', async () => {
      const routes: Array<[method: 'get' | 'post' | 'delete', path: string]> = [
        ['get', '/internal/session/trusted-devices?user_id=alice'],
        ['post', '/internal/session/trusted-devices'],
        ['get', '/internal/session/trusted-devices/check?user_id=alice&device_fingerprint=x'],
        ['delete', '/internal/session/trusted-devices?user_id=alice'],
        ['delete', '/internal/session/trusted-devices/00000000-0000-4000-8000-000000000000?user_id=alice'],
        ['post', '/internal/mfa/totp/verify'],
      ];
      for (const [method, path] of routes) {
        for (const key of [KEY_A.toUpperCase(), KEY_A.slice(1), `${KEY_A}x`, 'x']) {
          const res = await request(app)[method](path).set('X-Internal-API-Key', key).set('X-Tenant-ID', 'acme').send(method === 'post' ? { user_id: 'alice', code: '123456', device_fingerprint: 'x' } : undefined);
          expectKey401(res, key, `${method} ${path} with ${key.slice(0, 6)}…`);
        }
      }
    });

    it('is checked before the tenant: a wrong key with no or a malformed tenant → 401, not 400', async () => {
      let res = await request(app).get(DEVICES).set('X-Internal-API-Key', 'wrong-wrong-wrong-wrong');
      expectKey401(res, '', 'no tenant');
      res = await request(app).get(DEVICES).set('X-Internal-API-Key', 'wrong-wrong-wrong-wrong').set('X-Tenant-ID', 'bad tenant!');
      expectKey401(res, '', 'bad tenant');
    });

    it('either configured key works, and the header name is case-insensitive (it is HTTP)', async () => {
      for (const [name, key] of [
        ['X-Internal-API-Key', KEY_A],
        ['x-internal-api-key', KEY_B],
        ['X-INTERNAL-API-KEY', KEY_A],
      ] as const) {
        const res = await request(app).get(DEVICES).set(name, key).set('X-Tenant-ID', 'acme');
        expect(res.status, name).to.equal(200);
      }
    });
  });

  describe('user JWT', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    // An `exp` in every token that is not about its expiry: a token without one is refused on that alone (`requireExpiry`).
    const claims = () => ({ sub: 'alice', tenant_id: 'acme', iss: 'https://id.example', aud: 'mfa-kit', exp: now() + 300 });
    const hs = (payload: object, secret: string = JWT_SECRET, options: jwt.SignOptions = {}) => jwt.sign(payload, secret, { algorithm: 'HS256', ...options });
    /** HS256 by hand, for payloads jsonwebtoken refuses to sign (a non-numeric exp, a bare string). */
    const hsRaw = (payload: unknown, key: string | Buffer = JWT_SECRET, header: object = { alg: 'HS256', typ: 'JWT' }) => {
      const input = `${b64url(header)}.${b64url(JSON.stringify(payload))}`;
      return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
    };

    /** A tiny app around `userAuth()` alone, configured with `options`. */
    const tiny = (options: UserAuthOptions) => {
      const a = express();
      a.get('/me', ...userAuth('test', options), (req, res) => {
        const { userId, tenantId } = contextOf(req);
        res.json({ userId, tenantId });
      });
      a.use(problemJson({ logger: silentLogger }));
      return a;
    };
    const hsApp = tiny({ jwt: { secret: JWT_SECRET, issuer: 'https://id.example', audience: 'mfa-kit' } });
    const rsApp = tiny({ jwt: { publicKey: rsa.publicKey, issuer: 'https://id.example', audience: 'mfa-kit' } });

    /** A 401 for a token sent but not accepted carries RFC 6750's `invalid_token` challenge; without a token, a bare `Bearer`. */
    const expect401 = (res: { status: number; headers: Record<string, string>; text: string }, token: string, what: string, challenge = INVALID_TOKEN_CHALLENGE): void => {
      expect(res.status, `${what}: ${res.text}`).to.equal(401);
      expect(res.headers['www-authenticate'], what).to.equal(challenge);
      expect(res.headers['content-type'], what).to.match(/^application\/problem\+json/);
      expect(JSON.parse(res.text), what).to.include({ status: 401, code: 40100001 });
      if (token.length > 10) expect(res.text, what).not.to.contain(token);
      expect(res.text, what).not.to.contain(JWT_SECRET);
    };

    it('a valid token passes (HS256 and RS256), so the refusals below are about the token alone', async () => {
      let res = await request(hsApp).get('/me').set('Authorization', `Bearer ${hs(claims())}`);
      expect(res.status, res.text).to.equal(200);
      expect(res.body).to.deep.equal({ userId: 'alice', tenantId: 'acme' });
      res = await request(rsApp).get('/me').set('Authorization', `Bearer ${jwt.sign(claims(), rsa.privateKey, { algorithm: 'RS256' })}`);
      expect(res.status, res.text).to.equal(200);
    });

    it('requireExpiry: false takes a token without exp (and one with exp is still checked); the default refuses it', async () => {
      const noExp = hs({ sub: 'alice', tenant_id: 'acme' });
      expect401(await request(tiny({ jwt: { secret: JWT_SECRET } })).get('/me').set('Authorization', `Bearer ${noExp}`), noExp, 'default');
      const lax = tiny({ jwt: { secret: JWT_SECRET, requireExpiry: false } });
      const res = await request(lax).get('/me').set('Authorization', `Bearer ${noExp}`);
      expect(res.status, res.text).to.equal(200);
      expect(res.body).to.deep.equal({ userId: 'alice', tenantId: 'acme' });
      const expired = hs({ sub: 'alice', tenant_id: 'acme', exp: now() - 1 });
      expect401(await request(lax).get('/me').set('Authorization', `Bearer ${expired}`), expired, 'expired, requireExpiry false');
      const badExp = hsRaw({ sub: 'alice', tenant_id: 'acme', exp: 'tomorrow' });
      expect401(await request(lax).get('/me').set('Authorization', `Bearer ${badExp}`), badExp, 'exp not a number, requireExpiry false');
    });

    describe('verified tokens remembered (for up to 30 s)', () => {
      it('a token that passed stops passing at its exp, with the clock tolerance, as a token checked in full does', async () => {
        for (const tolerance of [0, 1]) {
          const app = tiny({ jwt: { secret: JWT_SECRET, clockToleranceSeconds: tolerance } });
          const exp = Math.floor(Date.now() / 1000) + 1;
          const token = hs({ sub: 'alice', tenant_id: 'acme', exp });
          for (let i = 0; i < 2; i++) expect((await request(app).get('/me').set('Authorization', `Bearer ${token}`)).status, `tolerance ${tolerance}`).to.equal(200);
          await new Promise((resolve) => setTimeout(resolve, (exp + tolerance) * 1000 - Date.now() + 20));
          expect401(await request(app).get('/me').set('Authorization', `Bearer ${token}`), token, `expired, tolerance ${tolerance}`);
        }
      });

      it('any other text than the one verified is verified in full: one signature character changed → 401', async () => {
        const token = hs(claims());
        expect((await request(hsApp).get('/me').set('Authorization', `Bearer ${token}`)).status).to.equal(200);
        // A character inside the signature (the last one may only carry padding bits).
        const at = token.length - 5;
        const forged = `${token.slice(0, at)}${token[at] === 'A' ? 'B' : 'A'}${token.slice(at + 1)}`;
        expect401(await request(hsApp).get('/me').set('Authorization', `Bearer ${forged}`), forged, 'signature changed');
        expect((await request(hsApp).get('/me').set('Authorization', `Bearer ${token}`)).status).to.equal(200);
      });

      it("each request gets its own claims: what one handler changes in req.user is not the next request's", async () => {
        const a = express();
        a.get('/me', ...userAuth('test', { jwt: { secret: JWT_SECRET } }), (req, res) => {
          const user = (req as unknown as { user: { sub: string; roles: string[] } }).user;
          res.json({ userId: contextOf(req).userId, roles: [...user.roles] });
          user.sub = 'mallory';
          user.roles.push('admin');
        });
        a.use(problemJson({ logger: silentLogger }));
        const token = hs({ sub: 'alice', tenant_id: 'acme', roles: ['user'] }, JWT_SECRET, { expiresIn: 60 });
        for (let i = 0; i < 3; i++) {
          const res = await request(a).get('/me').set('Authorization', `Bearer ${token}`);
          expect(res.body, `request ${i}`).to.deep.equal({ userId: 'alice', roles: ['user'] });
        }
      });
    });

    const signed = hs(claims());
    const [h, p, s] = signed.split('.') as [string, string, string];
    const cases: Array<[string, string]> = [
      ['alg none, no signature', `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims())}.`],
      ['alg none, with the original signature', `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims())}.${s}`],
      ['alg "None"', `${b64url({ alg: 'None', typ: 'JWT' })}.${b64url(claims())}.`],
      ['alg "NONE"', `${b64url({ alg: 'NONE', typ: 'JWT' })}.${b64url(claims())}.`],
      ['HS512 with the right secret (only HS256 accepted)', hs(claims(), JWT_SECRET, { algorithm: 'HS512' })],
      ['HS384 with the right secret', hs(claims(), JWT_SECRET, { algorithm: 'HS384' })],
      ['RS256 with a key of its own', jwt.sign(claims(), otherRsa.privateKey, { algorithm: 'RS256' })],
      ['signed with another secret', hs(claims(), 'another-secret-another-secret-0123')],
      ['wrong issuer', hs({ ...claims(), iss: 'https://evil.example' })],
      ['no issuer', hs({ sub: 'alice', tenant_id: 'acme', aud: 'mfa-kit', exp: now() + 300 })],
      ['wrong audience', hs({ ...claims(), aud: 'another-service' })],
      ['no audience', hs({ sub: 'alice', tenant_id: 'acme', iss: 'https://id.example', exp: now() + 300 })],
      ['no exp (it would never expire)', hs({ sub: 'alice', tenant_id: 'acme', iss: 'https://id.example', aud: 'mfa-kit' })],
      ['exp null', hsRaw({ ...claims(), exp: null })],
      ['expired (exp 1 s ago)', hs({ ...claims(), exp: now() - 1 })],
      ['expired long ago', hs({ ...claims(), exp: 1 })],
      ['not yet valid (nbf in 60 s)', hs({ ...claims(), nbf: now() + 60 })],
      ['exp not a number', hsRaw({ ...claims(), exp: 'tomorrow' })],
      ['nbf not a number', hsRaw({ ...claims(), nbf: [1] })],
      ['iat not a number (RFC 7519 §4.1.6: a NumericDate)', hsRaw({ ...claims(), iat: 'yesterday' })],
      ['iat null', hsRaw({ ...claims(), iat: null })],
      // RFC 7515 §4.1.11: a header whose `crit` names an extension the recipient does not understand MUST be refused.
      ['header crit names an extension (RFC 7515 §4.1.11)', hsRaw(claims(), JWT_SECRET, { alg: 'HS256', typ: 'JWT', crit: ['exp-ext'], 'exp-ext': true })],
      ['header crit with b64 false (RFC 7797: the payload would be read unencoded)', hsRaw(claims(), JWT_SECRET, { alg: 'HS256', b64: false, crit: ['b64'] })],
      ['header crit empty (RFC 7515 §4.1.11: MUST NOT be empty)', hsRaw(claims(), JWT_SECRET, { alg: 'HS256', typ: 'JWT', crit: [] })],
      ['payload tampered (sub changed), signature kept', `${h}.${b64url({ ...claims(), sub: 'bob' })}.${s}`],
      ['payload tampered (tenant changed), signature kept', `${h}.${b64url({ ...claims(), tenant_id: 'other' })}.${s}`],
      ['header tampered (kid added), signature kept', `${b64url({ alg: 'HS256', typ: 'JWT', kid: '../../etc/passwd' })}.${p}.${s}`],
      ['signature tampered', `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`],
      ['signature removed', `${h}.${p}.`],
      ['two segments', `${h}.${p}`],
      ['four segments', `${signed}.${s}`],
      ['not base64url', `${h}.!!!.${s}`],
      ['header is not JSON', `${b64url('not json')}.${p}.${s}`],
      ['payload is a JSON string', hsRaw('just a string')],
      ['payload is JSON null (regression: was a 500)', hsRaw(null)],
      ['payload is an array', hsRaw([claims()])],
      ['header alg missing', hsRaw(claims(), JWT_SECRET, { typ: 'JWT' })],
      ['header with jku/x5u pointing elsewhere, signed by the attacker', hsRaw(claims(), 'attacker-secret-attacker-secret', { alg: 'HS256', jku: 'https://evil.example/jwks', x5u: 'https://evil.example/x5u' })],
      ['garbage', 'garbage'],
      ['8 KB of garbage', 'x'.repeat(8_000)],
      ['sub missing', hs({ tenant_id: 'acme', iss: 'https://id.example', aud: 'mfa-kit', exp: now() + 300 })],
      ['sub not a string', hs({ ...claims(), sub: 42 })],
    ];
    for (const [what, token] of cases) {
      it(`${what} → 401 Problem`, async () => {
        const res = await request(hsApp).get('/me').set('Authorization', `Bearer ${token}`);
        expect401(res, token, what);
      });
    }

    it('the example app with jwtPublicKey (JWT_PUBLIC_KEY): RS256 tokens on both user routers; HS256 and key-confusion tokens → 401', async () => {
      const rsExample = createExampleApp({ storage: db.storage, codeSender: { send() {} }, internalKeys: [KEY_A], keyRing: ring, jwtPublicKey: rsa.publicKey, logger: pino({ level: 'silent' }) });
      const appClaims = { sub: 'alice', tenant_id: 'acme', exp: now() + 300 };
      for (const path of ['/auth/mfa/devices', '/mfa/devices/sync']) {
        const ok = await request(rsExample).get(path).set('Authorization', `Bearer ${jwt.sign(appClaims, rsa.privateKey, { algorithm: 'RS256' })}`);
        expect(ok.status, `${path}: ${ok.text}`).to.equal(200);
        for (const [what, token] of [['HS256 with the app secret', hs(appClaims)], ['HS256 keyed with the public key', hsRaw(appClaims, rsa.publicKey)], ['another RS256 key', jwt.sign(appClaims, otherRsa.privateKey, { algorithm: 'RS256' })]] as const) {
          expect401(await request(rsExample).get(path).set('Authorization', `Bearer ${token}`), token, `${path}: ${what}`);
        }
      }
      // Both at once does not type-check (UserTokenKey); at run time it is refused too.
      expect(() => createExampleApp({ storage: db.storage, internalKeys: [KEY_A], keyRing: ring, jwtSecret: JWT_SECRET, jwtPublicKey: rsa.publicKey, logger: pino({ level: 'silent' }) } as never)).to.throw(TypeError, /one of jwtSecret .* and jwtPublicKey/);
    });

    it('key confusion: an HS256 token whose HMAC key is the RS256 public key → 401 on the RS256 app', async () => {
      const pp = b64url(claims());
      const token = hsRaw(claims(), rsa.publicKey);
      expect401(await request(rsApp).get('/me').set('Authorization', `Bearer ${token}`), token, 'HS256 with public key');
      const none = `${b64url({ alg: 'none' })}.${pp}.`;
      expect401(await request(rsApp).get('/me').set('Authorization', `Bearer ${none}`), none, 'none on RS256 app');
    });

    it('a validly signed token whose exp is 1e400 (Infinity once parsed: it would never expire) → 401', async () => {
      const text = `${JSON.stringify({ ...claims(), exp: 0 }).replace('"exp":0', '"exp":1e400')}`;
      const input = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(text)}`;
      const token = `${input}.${createHmac('sha256', JWT_SECRET).update(input).digest('base64url')}`;
      expect(JSON.parse(text).exp).to.equal(Infinity);
      expect401(await request(hsApp).get('/me').set('Authorization', `Bearer ${token}`), token, 'exp 1e400');
    });

    it('a validly signed token whose claims nest 5,000 levels deep is taken (not a 500): too deep to remember, verified in full each time', async () => {
      // The payload's text by hand: JSON.stringify (and so jsonwebtoken's sign) overflows the stack on it too.
      const text = `${JSON.stringify(claims()).slice(0, -1)},"x":${'['.repeat(5000)}"leaf"${']'.repeat(5000)}}`;
      const input = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(text)}`;
      const token = `${input}.${createHmac('sha256', JWT_SECRET).update(input).digest('base64url')}`;
      for (let i = 0; i < 2; i++) {
        const res = await request(hsApp).get('/me').set('Authorization', `Bearer ${token}`);
        expect(res.status, res.text.slice(0, 200)).to.equal(200);
        expect(res.body).to.deep.equal({ userId: 'alice', tenantId: 'acme' });
      }
    });

    it('two Authorization fields → 400 invalid_request, whichever is good (a proxy may read the other one)', async () => {
      const good = hs(claims());
      for (const pair of [[`Bearer ${good}`, `Bearer ${good}`], [`Bearer ${good}`, 'Bearer garbage'], ['Bearer garbage', `Bearer ${good}`], [`Bearer ${good}`, 'Basic YWxpY2U6cHc=']]) {
        // superagent hands the array to Node's setHeader, which sends one field per value.
        const res = await request(hsApp).get('/me').set('Authorization', pair as unknown as string);
        expect(res.status, `${pair.join(' | ').slice(0, 40)}: ${res.text}`).to.equal(400);
        expect(res.headers['www-authenticate']).to.equal('Bearer error="invalid_request", error_description="Send one Authorization header field, with one Bearer token."');
        expect(res.body).to.include({ status: 400, code: 40000001 });
        expect(res.body.errors).to.deep.equal([{ field: '(header) Authorization', code: 'format', description: 'Send one Authorization header field, with one Bearer token.' }]);
        expect(res.text).not.to.contain(good);
      }
    });

    it('the token in the header and as access_token in the URL → 400 invalid_request (RFC 6750 §2: one way only); other parameters pass', async () => {
      const good = hs(claims());
      for (const query of ['access_token=x', `access_token=${good}`, 'a=1&ACCESS_TOKEN=', 'access%5Ftoken=x', 'x=1&access_token']) {
        const res = await request(hsApp).get(`/me?${query}`).set('Authorization', `Bearer ${good}`);
        expect(res.status, `${query.slice(0, 30)}: ${res.text}`).to.equal(400);
        expect(res.headers['www-authenticate']).to.match(/^Bearer error="invalid_request", error_description="Send the token one way/);
        expect(res.text).not.to.contain(good);
      }
      for (const query of ['access_token_hint=x', 'my_access_token=x', 'a=access_token']) {
        expect((await request(hsApp).get(`/me?${query}`).set('Authorization', `Bearer ${good}`)).status, query).to.equal(200);
      }
    });

    it('a good token with anything after it is one invalid token (RFC 6750 §2.1), not the token with the rest ignored', async () => {
      const good = hs(claims());
      for (const header of [`Bearer ${good} x`, `Bearer ${good} ${good}`, `Bearer ${good}\tx`]) {
        expect401(await request(hsApp).get('/me').set('Authorization', header), good, header.slice(-12));
      }
      expect((await request(hsApp).get('/me').set('Authorization', `bearer   ${good}`)).status).to.equal(200);
    });

    it('no Authorization, another scheme, an empty bearer → 401 Problem', async () => {
      for (const header of [undefined, '', `Basic ${Buffer.from('alice:pw').toString('base64')}`, 'Bearer', 'Bearer ', `Token ${signed}`, signed, `Bearer${signed}`]) {
        const req = request(hsApp).get('/me');
        if (header !== undefined) void req.set('Authorization', header);
        expect401(await req, signed, String(header), 'Bearer');
      }
    });

    it("a host's passport with failWithError: its refusal is a 401 Problem (nest too) with the strategy's challenge, not a 500 logged as a fault", async () => {
      const passport = new passportModule.Passport();
      passport.use(new JwtStrategy({ jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(), secretOrKey: JWT_SECRET, algorithms: ['HS256'] }, (claims: unknown, done: (e: null, u: unknown) => void) => done(null, claims)));
      passport.use('with-challenge', new (class extends passportModule.Strategy {
        override authenticate() {
          this.fail('Bearer realm="host"', 401);
        }
      })());
      const lines: Array<{ level: number; msg: string }> = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) });
      const host = (authenticate: express.RequestHandler, format?: 'nest') => {
        const hostApp = express();
        hostApp.use('/auth/mfa', mfaDevicesRouter({ storage: db.storage, keyRing: ring, authenticate, logger, ...(format && { errors: { format } }) }));
        return hostApp;
      };
      const failing = host(passport.authenticate('jwt', { session: false, failWithError: true }) as express.RequestHandler);
      for (const header of [undefined, 'Bearer nonsense', `Bearer ${jwt.sign({ sub: 'alice', tenant_id: 'acme' }, 'another-secret-another-secret-00')}`]) {
        const req = request(failing).get('/auth/mfa/devices');
        if (header !== undefined) void req.set('Authorization', header);
        const res = await req;
        expect(res.status, String(header)).to.equal(401);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(res.body).to.include({ status: 401, code: 40100001 });
        expect(res.headers['www-authenticate']).to.equal('Bearer');
      }
      const good = await request(failing).get('/auth/mfa/devices').set('Authorization', `Bearer ${jwt.sign({ sub: 'alice', tenant_id: 'acme' }, JWT_SECRET)}`);
      expect(good.status, good.text).to.equal(200);
      const nest = await request(host(passport.authenticate('jwt', { session: false, failWithError: true }) as express.RequestHandler, 'nest')).get('/auth/mfa/devices');
      expect(nest.status).to.equal(401);
      expect(nest.body).to.include({ statusCode: 401 });
      const challenged = await request(host(passport.authenticate('with-challenge', { session: false, failWithError: true }) as express.RequestHandler)).get('/auth/mfa/devices');
      expect(challenged.status).to.equal(401);
      expect(challenged.headers['www-authenticate']).to.equal('Bearer realm="host"');
      expect(lines.filter((l) => l.level >= 50), JSON.stringify(lines)).to.deep.equal([]);
      // A challenge another layer left on the response is not the kit's 401's: its own is sent.
      const stale = host(((_req, res, next) => {
        res.setHeader('WWW-Authenticate', 'Basic realm="elsewhere"');
        next();
      }) as express.RequestHandler);
      const own = await request(stale).get('/auth/mfa/devices');
      expect(own.status).to.equal(401);
      expect(own.headers['www-authenticate']).to.equal('Bearer');
      // Another library's error of that name (its own message) is not passport's refusal: a fault, 500.
      const sdk = await request(host(((_req, _res, next) => next(Object.assign(new Error('gateway credentials rejected'), { name: 'AuthenticationError', status: 401 }))) as express.RequestHandler)).get('/auth/mfa/devices');
      expect(sdk.status).to.equal(500);
    });

    it("a DELETE through a host's authentication that reads access_token from the URL, behind a host's express.text(): not refused for either", async () => {
      const hostApp = express();
      hostApp.use(express.text({ type: '*/*' }));
      // The host's own rule: the token in the query (RFC 6750 §2.3), which the kit's own jwt option never reads.
      const fromQuery: express.RequestHandler = (req, _res, next) => {
        const claims = jwt.verify(typeof req.query.access_token === 'string' ? req.query.access_token : '', JWT_SECRET) as { sub: string; tenant_id: string };
        (req as { user?: unknown }).user = claims;
        next();
      };
      hostApp.use('/auth/mfa', mfaDevicesRouter({ storage: db.storage, keyRing: ring, authenticate: fromQuery, logger: silentLogger }));
      const t = jwt.sign({ sub: 'url-token-user', tenant_id: 'acme' }, JWT_SECRET);
      const res = await request(hostApp).delete(`/auth/mfa/trusted-devices?access_token=${t}`).set('Content-Type', 'text/plain').set('Content-Length', '0');
      expect(res.status, res.text).to.equal(200);
      expect(res.body).to.deep.equal({ revoked: 0 });
      // Another parameter beside it is still refused.
      expect((await request(hostApp).delete(`/auth/mfa/trusted-devices?access_token=${t}&id=x`)).status).to.equal(400);
    });

    it('a good token with no tenant claim → 400; with an X-Tenant-ID header that differs → 403, that is malformed → 400', async () => {
      let res = await request(hsApp).get('/me').set('Authorization', `Bearer ${hs({ sub: 'alice', iss: 'https://id.example', aud: 'mfa-kit', exp: now() + 300 })}`);
      expect(res.status, res.text).to.equal(400);
      res = await request(hsApp).get('/me').set('Authorization', `Bearer ${hs(claims())}`).set('X-Tenant-ID', 'other');
      expect(res.status, res.text).to.equal(403);
      for (const header of ['bad tenant!', 'a'.repeat(65), 'acme, acme']) {
        res = await request(hsApp).get('/me').set('Authorization', `Bearer ${hs(claims())}`).set('X-Tenant-ID', header);
        expect(res.status, header).to.equal(400);
        expect(res.body.errors, header).to.deep.equal([{ field: 'X-Tenant-ID', code: 'format', description: 'X-Tenant-ID must be 1-64 characters of A-Z a-z 0-9 _ . -' }]);
      }
    });

    it('a good token whose sub is not a storable user id → 400 with a field violation (as the tenant claim)', async () => {
      for (const [what, sub] of [
        ['a control character', 'ali\u0000ce'],
        ['empty', ''],
        ['129 characters', 'a'.repeat(129)],
        ['a lone surrogate', 'ali\ud800ce'],
        ['a line separator', 'alice\u2028Trusted: all'],
        ['a paragraph separator', 'alice\u2029'],
        ['a right-to-left override', 'admin\u202Enimda'],
        ['a right-to-left isolate', 'a\u2067b'],
      ] as const) {
        const res = await request(hsApp).get('/me').set('Authorization', `Bearer ${hs({ ...claims(), sub })}`);
        expect(res.status, what).to.equal(400);
        expect(res.headers['content-type'], what).to.match(/^application\/problem\+json/);
        expect(res.body.errors, what).to.deep.equal([{ field: 'sub', code: 'format', description: 'sub must be 1-128 characters without control characters, line separators or bidirectional controls' }]);
      }
    });

    it('the same refusals on both mounted user routers of the example app (/mfa/devices/sync, /auth/mfa)', async () => {
      const appClaims = { sub: 'alice', tenant_id: 'acme', exp: now() + 300 };
      const good = hs(appClaims);
      for (const path of ['/mfa/devices/sync', '/auth/mfa/devices']) expect((await request(app).get(path).set('Authorization', `Bearer ${good}`)).status, path).to.equal(200);
      const [gh, gp, gs] = good.split('.') as [string, string, string];
      const refused: Array<[string, string]> = [
        ['alg none', `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(appClaims)}.`],
        ['HS512', hs(appClaims, JWT_SECRET, { algorithm: 'HS512' })],
        ['RS256', jwt.sign(appClaims, otherRsa.privateKey, { algorithm: 'RS256' })],
        ['expired', hs({ ...appClaims, exp: now() - 1 })],
        ['not yet valid', hs({ ...appClaims, nbf: now() + 60 })],
        ['no exp', hs({ sub: 'alice', tenant_id: 'acme' })],
        ['tampered payload', `${gh}.${b64url({ ...appClaims, sub: 'bob' })}.${gs}`],
        ['tampered signature', `${gh}.${gp}.${gs.slice(0, -2)}${gs.endsWith('AA') ? 'BB' : 'AA'}`],
        ['another secret', hs(appClaims, 'another-secret-another-secret-0123')],
        ['garbage', 'x.y.z'],
        // Regression: jsonwebtoken threw a TypeError on this one, which was answered 500.
        ['validly signed JSON null payload', hsRaw(null)],
      ];
      for (const [what, token] of refused) {
        for (const [method, path] of [
          ['get', '/mfa/devices/sync'],
          ['get', '/auth/mfa/devices'],
          ['post', '/auth/mfa/verify'],
          ['post', '/auth/mfa/recovery-codes'],
        ] as const) {
          const res = await request(app)[method](path).set('Authorization', `Bearer ${token}`).send(method === 'post' ? { code: '123456' } : undefined);
          expect401(res, token, `${method} ${path}: ${what}`);
        }
      }
    });
  });
});
