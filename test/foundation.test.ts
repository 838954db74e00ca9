/** The foundation's middleware and helpers: Problem formats, body errors, request ids, key ring, set-up checks. */
import { createHmac } from 'node:crypto';
import { expect } from 'chai';
import express, { type Express, type RequestHandler } from 'express';
import request from 'supertest';
import { pino } from 'pino';
import { pinoHttp } from 'pino-http';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { ProblemError, aad, deviceSyncRouter, generateKey, internalRouter, jsonBody, keyRing, mfaDevicesRouter, notFound, problemClientError, problemJson, requestId, silentLogger, tenant, tenantFrom, type ErrorFormat, type ProblemClientErrorOptions, type RateLimitRedisClient, type TrustedDeviceCache } from '../index.js';
import type { KnexStorage } from '../index.js';
import { KEY_A } from './support/fixtures.js';
import { sendJson } from '../lib/send-json.js';
import { summarizeError } from '../lib/problem.js';
import { keyInQueryFor } from '../lib/internal-auth.js';
import { brotliCompressSync, gzipSync } from 'node:zlib';

/** An app whose one route throws what the test asks for, formatted by problemJson(format). */
function appWith(format: ErrorFormat, thrower: () => unknown = () => ProblemError.from('DEVICE_NOT_FOUND')): Express {
  const app = express();
  app.use(requestId());
  app.post('/echo', ...jsonBody('1kb'), (req, res) => {
    res.json({ got: req.body as unknown });
  });
  app.get('/boom', () => {
    throw thrower();
  });
  app.use(problemJson({ format, logger: silentLogger }));
  return app;
}

describe('problemJson()', () => {
  it('writes an RFC 9457 Problem with the catalogue fields, request id echo and trace id', async () => {
    const res = await request(appWith('problem'))
      .get('/boom?user_id=u1&api_key=secret-value')
      .set('X-Request-ID', 'req_abc-123')
      .set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(res.status).to.equal(404);
    expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
    expect(res.headers['x-request-id']).to.equal('req_abc-123');
    expect(res.body).to.include({
      type: 'https://express-mfa-kit.dev/errors/device-not-found',
      title: 'Device Not Found',
      status: 404,
      code: 40400002,
      i18n_key: 'error.device_not_found',
      request_id: 'req_abc-123',
      trace_id: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      span_id: 'b7ad6b7169203331',
      service: 'mfa-kit',
    });
    expect(res.body.message).to.equal(res.body.detail);
    expect(res.body.instance).to.equal('/boom?user_id=u1&api_key=%5Bredacted%5D');
    // Other names a credential goes by in a URL: not repeated either.
    const names = ['authorization', 'auth', 'session', 'sessionid', 'passwd', 'pwd', 'bearer', 'cookie', 'sig', 'signature', 'credentials', 'X-Amz-Credential', 'oauth_signature', 'otp', 'pin', 'user_pass', 'jsessionid', 'JSESSIONID', 'aspsessionid', 'passphrase', 'userpass', 'xauth', 'basicauth', 'sign', 'requestSig', 'smsOtp', 'userPin', 'sms_otp', 'sid'];
    for (const name of names) {
      const other = await request(appWith('problem')).get(`/boom?page=2&${name}=s3cr3t`);
      expect(other.body.instance, name).to.equal(`/boom?page=2&${name}=%5Bredacted%5D`);
    }
    // Ordinary names with those letters in them are left as they are.
    const ordinary = ['spinner', 'inside', 'hotpot', 'mapping', 'page_size', 'include_expired', 'user_id', 'device_fingerprint', 'page', 'method'];
    const kept = await request(appWith('problem')).get(`/boom?${ordinary.map((n) => `${n}=v`).join('&')}`);
    expect(kept.body.instance).to.equal(`/boom?${ordinary.map((n) => `${n}=v`).join('&')}`);
  });

  it("keeps a request id the host gave the request already (its response header, or pino-http's req.id): the kit's answers name the host's log line's id", async () => {
    for (const [what, hostLayer] of [
      ['the response header', ((_req, res, next) => {
        res.setHeader('X-Request-Id', 'host-abc-1');
        next();
      }) as RequestHandler],
      ['req.id (pino-http genReqId)', ((req, _res, next) => {
        (req as { id?: unknown }).id = 'host-abc-1';
        next();
      }) as RequestHandler],
    ] as const) {
      const app = express();
      app.use(hostLayer);
      app.use(requestId());
      app.get('/ok', (req, res) => {
        res.json({ id: req.mfa?.requestId });
      });
      app.use(notFound());
      app.use(problemJson({ logger: silentLogger }));
      const ok = await request(app).get('/ok').set('X-Request-ID', 'req_client');
      expect(ok.body, what).to.deep.equal({ id: 'host-abc-1' });
      expect(ok.headers['x-request-id'], what).to.equal('host-abc-1');
      const missing = await request(app).get('/nope');
      expect(missing.body, what).to.include({ request_id: 'host-abc-1' });
    }
    // pino-http's default genReqId numbers requests (1, 2, …): its log line writes req.id as that number, and so do the answers.
    const pinoApp = express();
    pinoApp.use(pinoHttp({ logger: pino({ level: 'silent' }) }));
    pinoApp.use(requestId());
    pinoApp.get('/ok', (req, res) => {
      res.json({ id: req.mfa?.requestId, logged: (req as { id?: unknown }).id });
    });
    const numbered = await request(pinoApp).get('/ok');
    expect(numbered.body.logged).to.be.a('number');
    expect(numbered.body.id).to.equal(String(numbered.body.logged));
    expect(numbered.headers['x-request-id']).to.equal(String(numbered.body.logged));
    // A client's own id is echoed before that counter (CONTRACT.md §2).
    const echoed = await request(pinoApp).get('/ok').set('X-Request-ID', 'client-abc-123');
    expect(echoed.body.id).to.equal('client-abc-123');
    expect(echoed.headers['x-request-id']).to.equal('client-abc-123');
    // An id the host set that is not of safe characters is not taken, and the header names the id the kit uses.
    const app = express();
    app.use((req, res, next) => {
      (req as { id?: unknown }).id = 'two words';
      res.setHeader('X-Request-Id', 'two words');
      next();
    });
    app.use(requestId());
    app.get('/ok', (req, res) => {
      res.json({ id: req.mfa?.requestId });
    });
    const unsafe = await request(app).get('/ok').set('X-Request-ID', 'req_client');
    expect(unsafe.body).to.deep.equal({ id: 'req_client' });
    expect(unsafe.headers['x-request-id']).to.equal('req_client');
  });

  it('in a host app with no requestId() layer, still echoes a well-formed X-Request-ID (or makes one) in the body and the header', async () => {
    const app = express();
    app.use(express.json());
    app.get('/boom', () => {
      throw new Error('the host route failed');
    });
    app.use(notFound());
    app.use(problemJson({ logger: silentLogger }));
    for (const [path, status] of [['/boom', 500], ['/nope', 404]] as const) {
      const echoed = await request(app).get(path).set('X-Request-ID', 'req_mine123');
      expect(echoed.status).to.equal(status);
      expect(echoed.headers['x-request-id']).to.equal('req_mine123');
      expect(echoed.body).to.include({ request_id: 'req_mine123' });
      const made = await request(app).get(path).set('X-Request-ID', 'bad id\u00e9');
      expect(made.body.request_id).to.match(/^req_[0-9a-f-]{36}$/);
      expect(made.headers['x-request-id']).to.equal(made.body.request_id);
    }
    // The host's own body parser refused the body before any layer of the kit ran.
    const malformed = await request(app).post('/nope').set('X-Request-ID', 'req_body1').set('Content-Type', 'application/json').send('{"a":');
    expect(malformed.status).to.equal(400);
    expect(malformed.body).to.include({ request_id: 'req_body1' });
    expect(malformed.headers['x-request-id']).to.equal('req_body1');
  });

  it('takes trace_id (seed 002: the traceparent) and span_id only from a valid traceparent (W3C Trace Context)', async () => {
    const traceOf = async (header: string) => (await request(appWith('problem')).get('/boom').set('traceparent', header)).body as { trace_id?: string; span_id?: string };
    const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
    const PARENT = '00f067aa0ba902b7';
    expect(await traceOf(` 00-${TRACE}-${PARENT}-00 `)).to.deep.include({ trace_id: `00-${TRACE}-${PARENT}-00`, span_id: PARENT });
    // A later version may append fields; the four this version defines are still read.
    expect(await traceOf(`01-${TRACE}-${PARENT}-01-extra`)).to.deep.include({ trace_id: `01-${TRACE}-${PARENT}-01`, span_id: PARENT });
    for (const invalid of [
      `00-${'0'.repeat(32)}-${PARENT}-01`, // all-zero trace-id
      `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero parent-id
      `ff-${TRACE}-${PARENT}-01`, // version ff
      `00-${TRACE}-${PARENT}-01-extra`, // version 00 has exactly four fields
      `00-${TRACE.toUpperCase()}-${PARENT}-01`, // upper-case hex
      'garbage',
    ]) {
      const body = await traceOf(invalid);
      expect(body, invalid).to.not.have.property('trace_id');
      expect(body, invalid).to.not.have.property('span_id');
    }
  });

  it('does not echo a request id with unsafe characters', async () => {
    const res = await request(appWith('problem')).get('/boom').set('X-Request-ID', 'a b\tc');
    expect(res.body.request_id).to.match(/^req_[0-9a-f-]{36}$/);
  });

  it('has the simple and nest presets and takes a function', async () => {
    let res = await request(appWith('simple')).get('/boom');
    expect(Object.keys(res.body).sort()).to.deep.equal(['code', 'message', 'timestamp']);
    expect(res.body.code).to.equal(40400002);
    res = await request(appWith('nest')).get('/boom');
    expect(res.body).to.deep.equal({ statusCode: 404, error: 'Not Found', message: 'The device does not exist.', code: 'DEVICE_NOT_FOUND' });
    res = await request(appWith((p, key) => ({ body: { oops: key, s: p.status } }))).get('/boom');
    expect(res.body).to.deep.equal({ oops: 'DEVICE_NOT_FOUND', s: 404 });
  });

  it('a 401 carries WWW-Authenticate in every format (RFC 9110 §15.5.2): the thrower\'s challenge, else its key\'s default', async () => {
    for (const format of ['problem', 'simple', 'nest'] as const) {
      let res = await request(appWith(format, () => ProblemError.from('UNAUTHENTICATED'))).get('/boom');
      expect(res.status, format).to.equal(401);
      expect(res.headers['www-authenticate'], format).to.equal('Bearer');
      res = await request(appWith(format, () => ProblemError.from('INVALID_INTERNAL_KEY'))).get('/boom');
      expect(res.headers['www-authenticate'], format).to.equal('ApiKey');
      res = await request(appWith(format, () => ProblemError.from('UNAUTHENTICATED', { challenge: 'Bearer error="invalid_token"' }))).get('/boom');
      expect(res.headers['www-authenticate'], format).to.equal('Bearer error="invalid_token"');
    }
    // Only a 401 has one.
    expect((await request(appWith('problem')).get('/boom')).headers['www-authenticate']).to.equal(undefined);
  });

  it('masks unknown errors as a generic 500 with no stack, SQL or message', async () => {
    const res = await request(appWith('problem', () => new Error('select secret from keys - relation "keys" does not exist'))).get('/boom');
    expect(res.status).to.equal(500);
    expect(res.body.detail).to.equal('An unexpected error occurred.');
    expect(res.text).not.to.match(/select|relation|at \w+ \(|stack/i);
  });

  it('logs no SQL: knex\'s "<statement> - <reason>" keeps the reason only, however many lines the statement has', () => {
    const knexError = (sql: string, reason: string) => Object.assign(new Error(`${sql} - ${reason}`), { code: '25006' });
    const multi = knexError('insert into trusted_device_generations (tenant_id, user_id, generation) values ($1, $2, 1)\n     on conflict (tenant_id, user_id) do update set generation = 2', 'cannot execute INSERT in a read-only transaction');
    expect(summarizeError(multi)).to.deep.equal({ name: 'Error', code: '25006', message: 'cannot execute INSERT in a read-only transaction' });
    expect(summarizeError(new Error('insert into trusted_devices (tenant_id, id)\nvalues ($1, $2)'))).to.deep.equal({ name: 'Error', message: '(SQL left out)' });
    expect(summarizeError(new Error('select secret from keys'))).to.deep.equal({ name: 'Error', message: '(SQL left out)' });
    expect(summarizeError(new Error('connect ECONNREFUSED 127.0.0.1:5432'))).to.deep.equal({ name: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:5432' });
    const compile = new Error('Undefined binding(s) detected when compiling SELECT. Undefined column(s): [id] query: select * from "mfa_devices" where "id" = ?');
    expect(summarizeError(compile)).to.deep.equal({ name: 'Error', message: 'Undefined binding(s) detected when compiling SELECT. Undefined column(s): [id]' });
    const data = knexError('select 1 from mfa_devices where id = $1', 'invalid input syntax for type uuid: "alice@example.com"');
    expect(summarizeError(Object.assign(data, { code: '22P02' }))).to.deep.equal({ name: 'Error', code: '22P02', message: '(data exception: the value is left out)' });
  });

  it("a host's own http-errors error keeps its status and, for a client error, its message; a kit entry of the same status is not put on it (a 403 is no tenant mismatch)", async () => {
    const httpError = (status: number, message: string, extra: object = {}) => Object.assign(new Error(message), { status, statusCode: status, expose: status < 500, ...extra });
    const cases: Array<[Error, number, number, string, string]> = [
      [httpError(403, 'Account suspended'), 403, 40300000, 'Forbidden', 'Account suspended'],
      [httpError(410, 'This invitation has expired'), 410, 41000000, 'Gone', 'This invitation has expired'],
      [httpError(422, 'Unprocessable'), 422, 42200000, 'Unprocessable Entity', 'Unprocessable'],
      [httpError(451, 'Blocked here'), 451, 45100000, 'Unavailable For Legal Reasons', 'Blocked here'],
      [httpError(401, 'Session expired'), 401, 40100001, 'Unauthorized', 'Session expired'],
      [httpError(404, 'No such order'), 404, 40400001, 'Not Found', 'No such order'],
      // A 5xx says its status, never its message (http-errors does not expose it).
      [httpError(503, 'pool of db-7 exhausted', { headers: { 'Retry-After': '30' } }), 503, 50300000, 'Service Unavailable', 'Service Unavailable.'],
      [httpError(502, 'upstream at 10.0.0.7 refused'), 502, 50200000, 'Bad Gateway', 'Bad Gateway.'],
    ];
    for (const [err, status, code, title, detail] of cases) {
      const res = await request(appWith('problem', () => err)).get('/boom');
      expect(res.status, err.message).to.equal(status);
      expect(res.headers['content-type'], err.message).to.match(/^application\/problem\+json/);
      expect(res.body, err.message).to.include({ status, code, title, detail });
      expect(res.text, err.message).not.to.contain('Tenant');
      if (status >= 500) expect(res.text).not.to.contain(err.message);
    }
    const unavailable = await request(appWith('problem', () => cases[6]![0])).get('/boom');
    expect(unavailable.headers['retry-after']).to.equal('30');
    const nest = await request(appWith('nest', () => httpError(403, 'Account suspended'))).get('/boom');
    expect(nest.body).to.deep.include({ statusCode: 403, error: 'Forbidden', message: 'Account suspended', code: 'HTTP_ERROR' });
    // Not an http-errors error (no `expose`: an HTTP client's error carrying the status of another service's answer): a 500.
    const upstream = await request(appWith('problem', () => Object.assign(new Error('GET https://api.example/x: 404'), { status: 404 }))).get('/boom');
    expect(upstream.status).to.equal(500);
    expect(upstream.text).not.to.contain('api.example');
  });

  it('a write refused by a read-only database (25006: a standby during a fail-over) is a 503 to retry, not a 500', async () => {
    const res = await request(appWith('problem', () => Object.assign(new Error('insert into x - cannot execute INSERT in a read-only transaction'), { code: '25006' }))).get('/boom');
    expect(res.status).to.equal(503);
    expect(res.headers['retry-after']).to.equal('5');
  });

  it('answers 503 with Retry-After for an unreachable database', async () => {
    const res = await request(appWith('problem', () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).get('/boom');
    expect(res.status).to.equal(503);
    expect(res.headers['retry-after']).to.equal('5');
    expect(res.body.retry_after).to.equal(5);
  });

  it('answers malformed JSON 400, a body over the limit 413, a non-JSON body 415 — as Problems', async () => {
    const app = appWith('problem');
    let res = await request(app).post('/echo').set('Content-Type', 'application/json').send('{"a":');
    expect(res.status).to.equal(400);
    expect(res.body.code).to.equal(40000002);
    res = await request(app).post('/echo').set('Content-Type', 'application/json').send(JSON.stringify({ a: 'x'.repeat(2000) }));
    expect(res.status).to.equal(413);
    expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
    res = await request(app).post('/echo').set('Content-Type', 'text/plain').send('hello');
    expect(res.status).to.equal(415);
    res = await request(app).post('/echo').set('Content-Type', 'application/merge-patch+json').send('{"a":1}');
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ got: { a: 1 } });
  });

  it('an empty chunked body is no body, whatever its type (as Content-Length: 0); a chunked body with content that is not JSON → 415', async () => {
    const server = createServer(appWith('problem')).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    /** One request on its own connection, the bytes as written; the status line's code. */
    const send = (headers: string, body: string, to: Server = server): Promise<number> =>
      new Promise((resolve, reject) => {
        const socket = connect((to.address() as AddressInfo).port, '127.0.0.1');
        let answer = '';
        socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
        socket.on('end', () => resolve(Number(answer.split(' ', 2)[1])));
        socket.on('error', reject);
        socket.write(`POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n${headers}\r\n${body}`);
      });
    try {
      expect(await send('', '0\r\n\r\n'), 'empty, no type').to.equal(200);
      expect(await send('Content-Type: text/plain\r\n', '0\r\n\r\n'), 'empty, text/plain').to.equal(200);
      expect(await send('', '5\r\nhello\r\n0\r\n\r\n'), 'content, no type').to.equal(415);
      expect(await send('Content-Type: text/plain\r\n', '5\r\nhello\r\n0\r\n\r\n'), 'content, text/plain').to.equal(415);
      expect(await send('Content-Type: application/json\r\n', '7\r\n{"a":1}\r\n0\r\n\r\n'), 'JSON').to.equal(200);
    } finally {
      server.close();
    }
    // A host's own parser in front has read the body already (README: it is taken as it is): 415 at once, as before,
    // not a wait for a body that will not come.
    const host = express();
    host.use(express.text({ type: 'text/plain' }));
    host.post('/echo', ...jsonBody('1kb'), (req, res) => {
      res.json({ got: req.body as unknown });
    });
    host.use(problemJson({ logger: silentLogger }));
    const hostServer = createServer(host).listen(0, '127.0.0.1');
    await new Promise((resolve) => hostServer.once('listening', resolve));
    try {
      expect(await send('Content-Type: text/plain\r\n', '5\r\nhello\r\n0\r\n\r\n', hostServer), 'read by the host').to.equal(415);
    } finally {
      hostServer.close();
    }
  });

  it('a JSON scalar body is a 400 field violation that says so, not "malformed JSON"', async () => {
    const app = appWith('problem');
    for (const body of ['null', '5', '"x"', 'true', ' null ']) {
      const res = await request(app).post('/echo').set('Content-Type', 'application/json').send(body);
      expect(res.status, body).to.equal(400);
      expect(res.body, body).to.include({ code: 40000001, detail: '(body) must be a JSON object' });
      expect(res.body.errors, body).to.deep.equal([{ field: '(body)', code: 'type', description: '(body) must be a JSON object' }]);
    }
  });

  it('a Content-Encoding it cannot decode → 415 saying which it takes, in its detail and Accept-Encoding; a body that is not what its encoding says → 400 saying so', async () => {
    const app = appWith('problem');
    const json = Buffer.from('{"a":1}');
    // The bytes as given (superagent would serialise a Buffer under a JSON type as JSON).
    const post = (coding: string, bytes: Buffer) =>
      request(app).post('/echo').set('Content-Type', 'application/json').set('Content-Encoding', coding).serialize((b: string) => b).send(bytes as unknown as string);
    let res = await post('gzip', gzipSync(json));
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ got: { a: 1 } });
    res = await post('br', brotliCompressSync(json));
    expect(res.status).to.equal(200);
    for (const coding of ['compress', 'x-secret-coding', 'gzip, identity']) {
      res = await post(coding, json);
      expect(res.status, coding).to.equal(415);
      expect(res.body.detail, coding).to.match(/^The request's Content-Encoding is not supported: send the body as identity, gzip, deflate/);
      // RFC 9110 §12.5.3: the codings it takes, in Accept-Encoding.
      expect(res.headers['accept-encoding'], coding).to.match(/^gzip, deflate, br(, zstd)?$/);
      expect(res.text, coding).not.to.contain('secret');
    }
    for (const [coding, bytes] of [
      ['gzip', Buffer.from('not compressed at all')],
      ['deflate', Buffer.from('not compressed at all')],
      ['br', Buffer.from('not compressed at all')],
      ['gzip', gzipSync(json).subarray(0, 12)],
    ] as const) {
      res = await post(coding, bytes);
      expect(res.status, coding).to.equal(400);
      expect(res.body, coding).to.include({ code: 40000001, detail: 'The request body could not be decoded: it is not what its Content-Encoding says.' });
    }
  });

  it('only UTF-8: a body declared in another charset → 415, as the detail says (RFC 8259 §8.1)', async () => {
    const app = appWith('problem');
    // body-parser decodes these (the check is the kit's) …
    for (const charset of ['utf-16', 'UTF-16LE', '"utf-16le"']) {
      const res = await request(app).post('/echo').set('Content-Type', `application/json; charset=${charset}`).send(Buffer.from('{"a":1}', 'utf16le'));
      expect(res.status, charset).to.equal(415);
      expect(res.body.detail, charset).to.equal('The request body must be UTF-8 application/json.');
    }
    // … and refuses these itself, with the same answer.
    for (const charset of ['latin1', 'utf8']) {
      const res = await request(app).post('/echo').set('Content-Type', `application/json; charset=${charset}`).send(Buffer.from('{"a":1}', 'latin1'));
      expect(res.status, charset).to.equal(415);
      expect(res.body.detail, charset).to.equal('The request body must be UTF-8 application/json.');
    }
    for (const params of ['; charset=utf-8', '; charset=UTF-8', '; charset="utf-8"', '; profile="a;charset=x"; charset=utf-8', '; charset=""']) {
      const res = await request(app).post('/echo').set('Content-Type', `application/json${params}`).send('{"a":1}');
      expect(res.status, params).to.equal(200);
    }
  });
});

describe('problemClientError()', () => {
  /** Sends raw bytes to a server with the listener and returns what came back before the server closed. */
  async function raw(format: 'problem' | 'nest' | undefined, bytes: string, headers?: NonNullable<ProblemClientErrorOptions['headers']>): Promise<{ head: string; body: string }> {
    const app = express();
    app.get('/', (_req, res) => {
      res.json({ ok: true });
    });
    const server: Server = createServer(app);
    server.on('clientError', problemClientError({ ...(format && { format }), ...(headers && { headers }) }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
        let got = '';
        socket.on('data', (d: Buffer) => (got += d.toString()));
        socket.on('close', () => resolve(got));
        socket.on('error', reject);
        socket.write(bytes);
      });
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      return { head, body };
    } finally {
      server.close();
    }
  }

  it('answers headers over the limit 431 and bytes that are not HTTP 400, as Problems, then closes', async () => {
    let res = await raw(undefined, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(res.head).to.match(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(res.head).to.match(/\r\nContent-Type: application\/problem\+json; charset=utf-8\r\n/i);
    expect(res.head).to.match(/\r\nConnection: close/i);
    const big = JSON.parse(res.body) as Record<string, unknown>;
    expect(big).to.include({ status: 431, code: 43100001, title: 'Request Header Fields Too Large', type: 'https://express-mfa-kit.dev/errors/request-header-fields-too-large', service: 'mfa-kit' });
    expect(big.request_id).to.match(/^req_[0-9a-f-]{36}$/);
    expect(res.head).to.contain(`\r\nX-Request-ID: ${String(big.request_id)}\r\n`);
    expect(big).to.not.have.property('instance');
    expect(res.body).not.to.contain('aaaa');
    res = await raw(undefined, 'NOT HTTP AT ALL\r\n\r\n');
    expect(res.head).to.match(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(JSON.parse(res.body)).to.include({ status: 400, code: 40000003, detail: 'The request is not valid HTTP.' });
  });

  it("carries the app's headers (security headers its middleware never gets to set), checked at set-up", async () => {
    const res = await raw(undefined, 'NOT HTTP AT ALL\r\n\r\n', [
      ['X-Content-Type-Options', 'nosniff'],
      ['Content-Security-Policy', "default-src 'none'"],
    ]);
    expect(res.head).to.match(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(res.head).to.contain("\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'none'\r\n");
    expect(JSON.parse(res.body)).to.include({ status: 400 });
    for (const [headers, message] of [
      [[['X-Evil', 'a\r\nSet-Cookie: x=1']], /'X-Evil' is not a valid header name, or its value/],
      [[['Bad Name', 'x']], /'Bad Name' is not a valid header name/],
      [[['content-length', '1']], /may not set content-length/],
      [[['X-Name', 'caf\u00e9']], /'X-Name' is not a valid header name, or its value/],
      [[['X-A']], /pairs of strings/],
      [{ 'X-A': 'b' }, /must be a list of \[name, value\] pairs/],
    ] as const) {
      expect(() => problemClientError({ headers: headers as unknown as NonNullable<ProblemClientErrorOptions['headers']> }), JSON.stringify(headers)).to.throw(TypeError, message);
    }
  });

  it('answers a HEAD it refuses with the headers only (RFC 9110 §9.3.2): Content-Length of the body it would have had, no body', async () => {
    const res = await raw(undefined, 'HEAD %2Fhealthz HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(res.head).to.match(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(Number(/\r\nContent-Length: (\d+)/i.exec(res.head)?.[1])).to.be.above(0);
    expect(res.body).to.equal('');
    // A GET refused the same way has its body.
    expect(JSON.parse((await raw(undefined, 'GET %2Fhealthz HTTP/1.1\r\nHost: x\r\n\r\n')).body)).to.include({ status: 400 });
  });

  it('speaks the chosen preset (nest), and a well-formed request is untouched', async () => {
    const res = await raw('nest', `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(JSON.parse(res.body)).to.deep.equal({ statusCode: 431, error: 'Request Header Fields Too Large', message: 'The request line or headers are larger than allowed.', code: 'HEADERS_TOO_LARGE' });
    const ok = await raw(undefined, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(ok.head).to.match(/^HTTP\/1\.1 200 OK/);
    expect(ok.body).to.equal('{"ok":true}');
  });
});

describe('tenant()', () => {
  const app = express();
  app.use((req, _res, next) => {
    const claim = req.headers['x-claim'];
    (req as { user?: unknown }).user = typeof claim === 'string' ? { tenant_id: claim } : {};
    next();
  });
  app.use(requestId(), tenant({ from: tenantFrom.claim('tenant_id'), mustMatch: tenantFrom.header('X-Tenant-ID') }));
  app.get('/t', (req, res) => {
    res.json({ tenant: req.mfa?.tenantId });
  });
  app.use(problemJson({ logger: silentLogger }));

  it('takes the claim, accepts an agreeing header, refuses a different one with 403 and none with 400', async () => {
    expect((await request(app).get('/t').set('x-claim', 'acme')).body).to.deep.equal({ tenant: 'acme' });
    expect((await request(app).get('/t').set('x-claim', 'acme').set('X-Tenant-ID', 'acme')).status).to.equal(200);
    expect((await request(app).get('/t').set('x-claim', 'acme').set('X-Tenant-ID', 'other')).status).to.equal(403);
    const none = await request(app).get('/t');
    expect(none.status).to.equal(400);
    expect(none.body.errors[0]).to.include({ field: 'tenant_id', code: 'required' });
    expect((await request(app).get('/t').set('x-claim', 'a'.repeat(65))).status).to.equal(400);
  });

  it('functions of one\'s own, without a label, for either source: their errors name `tenant`', async () => {
    const own = express();
    own.use(requestId(), tenant({ from: (req) => req.headers['x-org'], mustMatch: (req) => req.headers['x-org-2'] }));
    own.get('/t', (req, res) => void res.json({ tenant: req.mfa?.tenantId }));
    own.use(problemJson({ logger: silentLogger }));
    expect((await request(own).get('/t').set('x-org', 'acme')).body).to.deep.equal({ tenant: 'acme' });
    const bad = await request(own).get('/t').set('x-org', 'acme').set('x-org-2', 'bad value!');
    expect(bad.status).to.equal(400);
    expect(bad.body.errors[0]).to.include({ field: 'tenant', code: 'format' });
    expect(bad.body.detail).to.match(/^tenant /);
    expect((await request(own).get('/t').set('x-org', 'acme').set('x-org-2', 'globex')).status).to.equal(403);
    expect((await request(own).get('/t')).body.errors[0]).to.include({ field: 'tenant', code: 'required' });
  });
});

describe('keyRing()', () => {
  const k1 = generateKey('k1');
  const k2 = generateKey('k2');

  it('seals with the first key, opens with any, binds the associated data', () => {
    const old = keyRing([k1]);
    const sealed = old.seal('JBSWY3DPEHPK3PXP', aad('t', 'u', 'd1'));
    expect(sealed.keyId).to.equal('k1');
    expect(sealed.data.length).to.equal(12 + 16 + 16);
    expect(sealed.data.toString('latin1')).not.to.contain('JBSWY3DP');
    const rotated = keyRing([k2, k1]);
    expect(rotated.activeKeyId).to.equal('k2');
    expect(rotated.openText(sealed, aad('t', 'u', 'd1'))).to.equal('JBSWY3DPEHPK3PXP');
    expect(() => rotated.open(sealed, aad('t', 'other-user', 'd1'))).to.throw(ProblemError);
    expect(() => keyRing([k2]).open(sealed, aad('t', 'u', 'd1'))).to.throw(ProblemError);
  });

  it('uses a fresh nonce each time', () => {
    const ring = keyRing(k1);
    expect(ring.seal('x', 'a').data.equals(ring.seal('x', 'a').data)).to.equal(false);
  });

  it('mac(): HMAC-SHA256 under a key derived per ring key and purpose; another purpose, key or material gives another', () => {
    const kA = generateKey('kA');
    const kB = generateKey('kB');
    const ring = keyRing([kB, kA]);
    const byActive = ring.mac!('otp-code', 'data');
    expect(byActive).to.include({ keyId: 'kB' });
    expect(byActive!.mac).to.have.length(32);
    expect(ring.mac!('otp-code', 'data', 'kB')!.mac.equals(byActive!.mac)).to.equal(true);
    expect(keyRing([kB]).mac!('otp-code', 'data')!.mac.equals(byActive!.mac)).to.equal(true);
    const others = [ring.mac!('otp-code', 'data', 'kA')!, ring.mac!('other', 'data')!, ring.mac!('otp-code', 'datb')!, keyRing([generateKey('kB')]).mac!('otp-code', 'data')!];
    for (const other of others) expect(other.mac.equals(byActive!.mac)).to.equal(false);
    expect(ring.mac!('otp-code', 'data', 'kC')).to.equal(undefined);
    // Not the AES key itself: a plain HMAC under the key's bytes is another value.
    const raw = Buffer.from(kB.slice(3), 'base64');
    expect(createHmac('sha256', raw).update('data').digest().equals(byActive!.mac)).to.equal(false);
  });

  it('rejects keys of the wrong length or form at start-up with the fix in the message', () => {
    expect(() => keyRing(`k1:${Buffer.alloc(16).toString('base64')}`)).to.throw(TypeError, /16 bytes.*32 bytes/);
    expect(() => keyRing('nocolon')).to.throw(TypeError, /kid:base64/);
    const key = Buffer.alloc(32, 0xfb).toString('base64');
    expect(key).to.match(/[+/]/);
    const url = key.replaceAll('+', '-').replaceAll('/', '_');
    expect(() => keyRing(`k1:${url}`)).to.throw(TypeError, /'k1' is not standard base64 .*not base64url/);
    expect(() => keyRing(`k1:${key}\nk2:${key}`)).to.throw(TypeError, /'k1' is not standard base64 .*separated by a comma/);
    expect(() => keyRing([k1, k1])).to.throw(TypeError, /twice/);
    // The active key again under an older id: a rotation to it would retire nothing. Two older ids of one key are let
    // be (a ring that has them is left by a new active key: refused, it could not even be re-encrypted).
    const again = `kX:${k1.slice(k1.indexOf(':') + 1)}`;
    expect(() => keyRing([again, k1])).to.throw(TypeError, /'k1' is the same key as the active \(first\) one/);
    expect(keyRing([k2, again, k1]).keyIds).to.deep.equal(['k2', 'kX', 'k1']);
    try {
      keyRing([again, k1]);
    } catch (err) {
      expect((err as Error).message).not.to.contain(k1.slice(k1.indexOf(':') + 1));
    }
    expect(() => keyRing('')).to.throw(TypeError, /MFA_ENCRYPTION_KEYS/);
  });
});

describe('router set-up checks', () => {
  const none = () => Promise.resolve(null);
  const trustedDevices = { upsert: none, find: none, list: none, revoke: none, revokeAll: none, cacheEpoch: none, bumpCacheEpoch: none };
  const storage = { ping: () => Promise.resolve(), mfaDevices: { list: none, get: none, remove: none }, recoveryCodes: { replace: none, consume: none, countRemaining: none }, trustedDevices, users: { erase: none } } as unknown as KnexStorage;

  it('names a misspelt option and suggests the right one', () => {
    expect(() => internalRouter({ storage, internalKeys: KEY_A, maxPagesize: 10 } as never)).to.throw(TypeError, /unknown option 'maxPagesize'.*Did you mean 'maxPageSize'/);
  });

  it('says how to fix a missing storage and missing keys', () => {
    expect(() => internalRouter({ internalKeys: KEY_A } as never)).to.throw(TypeError, /needs 'storage'.*knexStorage/);
    expect(() => internalRouter({ storage } as never)).to.throw(TypeError, /internalKeys/);
    expect(() => internalRouter({ storage, internalKeys: 'short' })).to.throw(TypeError, /shorter than 16/);
    expect(() => internalRouter({ storage, internalKeys: KEY_A, keyHeader: 'x-api key' })).to.throw(TypeError, /not a valid HTTP header name/);
    expect(() => internalRouter({ storage, internalKeys: KEY_A, keyHeader: 'x-"api"' })).to.throw(TypeError, /not a valid HTTP header name/);
    // Found by an operator review: a header's name as the tenant was a 500 on every request; a bad bodyLimit, body-parser's words.
    expect(() => internalRouter({ storage, internalKeys: KEY_A, tenant: 'X-Tenant-ID' } as never)).to.throw(TypeError, /tenantFrom\.header\('X-Tenant-ID'\)/);
    expect(() => internalRouter({ storage, internalKeys: KEY_A, bodyLimit: 'lots' })).to.throw(TypeError, /express-mfa-kit: option 'bodyLimit' must be a number of bytes or a size such as '100kb'/);
    expect(() => internalRouter({ storage, internalKeys: KEY_A, bodyLimit: '64kb', tenant: tenantFrom.header('X-Org') })).not.to.throw();
    // A function of one's own without a label still works (its errors name `tenant`); a mustMatch that is no function is refused.
    expect(() => internalRouter({ storage, internalKeys: KEY_A, tenant: (req: express.Request) => req.headers['x-org'] })).not.to.throw();
    expect(() => tenant({ mustMatch: 'tenant_id' as never })).to.throw(TypeError, /option 'mustMatch' must be tenantFrom/);
  });

  it('the 401 of a missing or wrong key names the configured key header in its challenge', async () => {
    const app = express();
    app.use('/internal', internalRouter({ storage, internalKeys: KEY_A, keyHeader: 'X-Service-Key', logger: silentLogger }));
    for (const key of [undefined, 'wrong-wrong-wrong-wrong']) {
      const req = request(app).get('/internal/mfa/totp/devices?user_id=u').set('X-Tenant-ID', 't');
      const res = await (key === undefined ? req : req.set('X-Service-Key', key));
      expect(res.status).to.equal(401);
      expect(res.headers['www-authenticate']).to.equal('ApiKey header="x-service-key"');
    }
  });

  it('keyInQueryFor(header): a parameter named like a key or like the configured header, however spelt; nothing else', () => {
    const inQuery = keyInQueryFor('x-service-token');
    for (const q of ['x-service-token=abc', 'a=1&X_Service_Token=abc', 'xservicetoken=1', 'x%2Dservice%2Dtoken=1', 'x+service+token=1', 'api_key=1', 'KEY', 'a=1&%6B%65%79=2', 'x.service.token=1', 'api.key=1', 'api%00key=1', '%2Bapi_key=1', 'internal_key=1', 'x.internal.api.key=1']) expect(inQuery(q), q).to.equal(true);
    for (const q of ['user_id=alice&device_fingerprint=fp', 'user_id=monkey&device_fingerprint=keyboard', 'token=1', 'service=1', 'user_id=%E2%82%AC', 'user_id=%zz', 'keys=1']) expect(inQuery(q), q).to.equal(false);
  });

  it('explains app.use(internalRouter) without ()', async () => {
    const app = express();
    const errors: string[] = [];
    app.use('/internal', internalRouter as unknown as express.RequestHandler);
    app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(err.message);
      res.status(500).end();
    });
    await request(app).get('/internal/x');
    expect(errors[0]).to.match(/mounted without being called: use app\.use\(path, internalRouter\(/);
  });

  it('notFound and problemJson mounted without () answer with the fix instead of leaving the request hanging', async () => {
    for (const [name, misuse] of [
      ['notFound', notFound],
      ['problemJson', problemJson],
    ] as const) {
      const app = express();
      const errors: string[] = [];
      app.use(misuse as unknown as express.RequestHandler);
      app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        errors.push(err.message);
        res.status(500).end();
      });
      const res = await request(app).get('/anything').timeout(5000);
      expect(res.status, name).to.equal(500);
      expect(errors[0], name).to.equal(`express-mfa-kit: ${name} was mounted without being called: use app.use(${name}()), not app.use(${name})`);
    }
  });

  it('nested options are checked too: a misspelt member would otherwise leave a default (the lockout!) in force', () => {
    const none = () => Promise.resolve(null);
    const mfaStorage = {
      ...storage,
      mfaDevices: { list: none, get: none, create: none, recordTotpStep: none, remove: none },
      verificationThrottle: { charge: none },
      otpCodes: { put: none },
    } as unknown as KnexStorage;
    const base = { storage: mfaStorage, keyRing: keyRing(`k1:${Buffer.alloc(32, 1).toString('base64')}`), jwt: { secret: 'nested-options-secret-0123456789' } };
    const refused: Array<[object, RegExp]> = [
      [{ lockout: { maxAttempts: 3 } }, /mfaDevicesRouter\(\) option 'lockout' has an unknown option 'maxAttempts'\. Known options: maxFailures, cooldownSeconds\./],
      [{ rateLimit: { max: 5 } }, /option 'rateLimit' has an unknown option 'max'/],
      [{ rateLimit: 10 }, /option 'rateLimit' must be an object/],
      [{ totp: { digit: 8 } }, /option 'totp' has an unknown option 'digit'\. Did you mean 'digits'\?/],
      [{ errors: 'nest' }, /option 'errors' must be an object, e\.g\. errors: \{ format: 'nest' \}/],
      [{ errors: { fromat: 'nest' } }, /option 'errors' has an unknown option 'fromat'\. Did you mean 'format'\?/],
      [{ stepUp: { amr: ['mfa'], maxAge: 60 } }, /option 'stepUp' has an unknown option 'maxAge'/],
      [{ trustedDevices: { defaultTtl: 60 } }, /option 'trustedDevices' has an unknown option 'defaultTtl'/],
      [{ authenticate: (_req: unknown, _res: unknown, next: () => void) => next() }, /takes 'jwt' or 'authenticate', not both/],
      [{ jwt: { secret: undefined } }, /option 'jwt' needs 'secret' or 'publicKey' \(is JWT_SECRET set\?\)/],
      [{ jwt: { secret: 'nested-options-secret-0123456789', publicKey: 'x' } }, /option 'jwt' takes 'secret' \(HS256\) or 'publicKey' \(RS256 \/ ES256\), not both/],
      // A misspelt audience or issuer would leave the token's aud / iss unchecked.
      [{ jwt: { secret: 'nested-options-secret-0123456789', audiance: 'mfa-kit' } }, /option 'jwt' has an unknown option 'audiance'\. Did you mean 'audience'\?/],
      [{ jwt: { secret: 'nested-options-secret-0123456789', isuer: 'https://idp' } }, /option 'jwt' has an unknown option 'isuer'\. Did you mean 'issuer'\?/],
      // An empty claim name finds no tenant in any token (every request a 400), a header name with a space none in any request.
      [{ tenantClaim: '' }, /option 'tenantClaim' must be the name of a claim/],
      [{ userClaim: 7 }, /option 'userClaim' must be the name of a claim/],
      [{ tenantHeader: 'X Tenant' }, /option 'tenantHeader' must be an HTTP header name/],
      [{ tenantHeader: 42 }, /option 'tenantHeader' must be an HTTP header name/],
    ];
    for (const [extra, message] of refused) expect(() => mfaDevicesRouter({ ...base, ...extra }), JSON.stringify(extra)).to.throw(TypeError, message);
    expect(() => problemJson({ fromat: 'nest' } as never)).to.throw(TypeError, /unknown option 'fromat'\. Did you mean 'format'\?/);
    // What was taken before still is: one errors object shared with problemJson() (with its logger), an empty prefix.
    const shared = { format: 'nest' as const, logger: silentLogger };
    expect(() => problemJson(shared)).not.to.throw();
    expect(() => internalRouter({ storage, internalKeys: KEY_A, errors: shared, logger: silentLogger })).not.to.throw();
    expect(() => mfaDevicesRouter({ ...base, rateLimit: { prefix: '' }, logger: silentLogger })).not.to.throw();
    expect(() => internalRouter({ storage, internalKeys: KEY_A, lockout: { cooldown: 5 } } as never)).to.throw(TypeError, /internalRouter\(\) option 'lockout' has an unknown option 'cooldown'/);
  });

  it("errors.report gets each unexpected error with its request, after the log line (an error tracker), also a host layer's inside a router; never a 4xx; a throwing report changes no answer", async () => {
    const reported: Array<[unknown, string]> = [];
    const report = (err: unknown, req: express.Request) => void reported.push([err, req.originalUrl]);
    const boom = new Error('select secret from keys - relation does not exist');
    // problemJson() of the host's app.
    const host = express();
    host.get('/boom', () => {
      throw boom;
    });
    host.get('/client', () => {
      throw Object.assign(new Error('nope'), { status: 403, statusCode: 403, expose: true });
    });
    host.use(problemJson({ logger: silentLogger, report }));
    expect((await request(host).get('/boom')).status).to.equal(500);
    expect((await request(host).get('/client')).status).to.equal(403);
    expect(reported).to.deep.equal([[boom, '/boom']]);
    // A router's own: the host's `authenticate` that fails inside it.
    reported.length = 0;
    const none = () => Promise.resolve(null);
    const fullStorage = new Proxy({}, { get: () => new Proxy({}, { get: () => none }) }) as KnexStorage;
    const failing = new Error('session store down');
    const app = express();
    app.use('/auth/mfa', mfaDevicesRouter({ storage: fullStorage, keyRing: keyRing(`k1:${Buffer.alloc(32, 3).toString('base64')}`), authenticate: (_req, _res, next) => next(failing), logger: silentLogger, errors: { report } }));
    const res = await request(app).get('/auth/mfa/devices');
    expect(res.status).to.equal(500);
    expect(res.text).not.to.contain('session store');
    expect(reported).to.deep.equal([[failing, '/auth/mfa/devices']]);
    // A report that throws: the same 500, and the throw is logged.
    const lines: string[] = [];
    const logger = { ...silentLogger, error: (_o: object, m?: string) => void lines.push(m ?? '') };
    const throwing = express();
    throwing.get('/boom', () => {
      throw boom;
    });
    throwing.use(problemJson({ logger, report: () => {
      throw new Error('tracker down');
    } }));
    expect((await request(throwing).get('/boom')).status).to.equal(500);
    expect(lines).to.deep.equal(['unhandled error', "the errors option 'report' threw"]);
    expect(() => problemJson({ report: 'sentry' as never })).to.throw(TypeError, /'report' must be a function/);
  });

  it('takes undefined for an optional dependency a deployment may not have (a Redis client, a cache, a sender), as if left out', async () => {
    // Every store method there is (none is called: each request ends at the 401).
    const fullStorage = new Proxy({}, { get: () => new Proxy({}, { get: () => none }) }) as KnexStorage;
    const maybe = <T>(value?: T): T | undefined => value;
    const optional = { logger: maybe(silentLogger), errors: undefined, lockout: undefined, trustedDevices: undefined, events: undefined, cache: maybe<TrustedDeviceCache>(), redis: maybe<RateLimitRedisClient>() };
    const app = express();
    app.use('/internal', internalRouter({ storage, internalKeys: KEY_A, keyRing: undefined, ...optional }));
    app.use('/auth/mfa', mfaDevicesRouter({ storage: fullStorage, keyRing: keyRing(`k1:${Buffer.alloc(32, 3).toString('base64')}`), jwt: { secret: 'optional-deps-secret-0123456789ab' }, sender: undefined, stepUp: undefined, onVerified: undefined, ...optional }));
    app.use('/sync', deviceSyncRouter({ storage: fullStorage, keyRing: keyRing(`k1:${Buffer.alloc(32, 3).toString('base64')}`), jwt: { secret: 'optional-deps-secret-0123456789ab' }, logger: undefined, stepUp: undefined, errors: undefined }));
    for (const path of ['/internal/mfa/totp/devices', '/auth/mfa/devices', '/sync']) {
      const res = await request(app).get(path);
      expect(res.status, path).to.equal(401);
      expect(res.headers['content-type'], path).to.match(/^application\/problem\+json/);
    }
  });

  it('an unset environment variable passed as it is (undefined) type-checks and fails at set-up naming it', () => {
    expect(() => keyRing(process.env.MFA_KIT_UNSET_VARIABLE)).to.throw(TypeError, /no encryption key: set MFA_ENCRYPTION_KEYS=k1:/);
    expect(() => keyRing('nokid')).to.throw(TypeError, /e\.g\. k1:\$\(openssl rand -base64 32\)/);
    expect(() => internalRouter({ storage, internalKeys: process.env.MFA_KIT_UNSET_VARIABLE })).to.throw(TypeError, /needs 'internalKeys' \(is INTERNAL_API_KEYS set\?\)/);
  });
});

describe('sendJson (the routers\' answer writer) against res.json()', () => {
  const body = { name: 'a <b> & c', list: [1, 2], nested: { at: '2026-12-06T09:00:00Z', none: null } };
  /** One app answering `answer` both ways, with the JSON settings given, behind `first` when there is one. */
  const appWithSettings = (settings: Record<string, unknown>, answer: unknown = body, first?: RequestHandler): Express => {
    const app = express();
    for (const [name, value] of Object.entries(settings)) app.set(name, value);
    if (first) app.use(first);
    app.get('/express', (_req, res) => {
      res.json(answer);
    });
    app.get('/kit', (req, res) => {
      sendJson(req, res, answer);
    });
    return app;
  };
  const replacer = (key: string, value: unknown) => (key === 'none' ? 'was null' : value);

  for (const [label, settings] of [
    ['no settings', {}],
    ['json spaces 2', { 'json spaces': 2 }],
    ['json escape', { 'json escape': true }],
    ['json replacer', { 'json replacer': replacer }],
    ['all three', { 'json spaces': '\t', 'json escape': true, 'json replacer': replacer }],
  ] as Array<[string, Record<string, unknown>]>) {
    it(`writes the same bytes, Content-Type and Content-Length as res.json() (${label})`, async () => {
      const app = appWithSettings(settings);
      // `.text`: the body as written, not as parsed.
      const [ours, theirs] = await Promise.all([request(app).get('/kit'), request(app).get('/express')]);
      expect(ours.status).to.equal(200);
      expect(ours.text).to.be.a('string').and.equal(theirs.text);
      expect(ours.headers['content-type']).to.equal(theirs.headers['content-type']);
      expect(ours.headers['content-length']).to.equal(theirs.headers['content-length']);
      if (settings['json escape']) expect(ours.text).to.include('\\u003cb\\u003e \\u0026 c').and.not.include('<');
      if (settings['json spaces']) expect(ours.text).to.include('\n');
    });
  }

  it('keeps a Content-Type the app set before, as res.json() does', async () => {
    const app = appWithSettings({}, body, (_req, res, next) => {
      res.setHeader('Content-Type', 'application/vnd.example+json');
      next();
    });
    const [ours, theirs] = await Promise.all([request(app).get('/kit'), request(app).get('/express')]);
    expect(ours.headers['content-type']).to.equal('application/vnd.example+json; charset=utf-8').and.equal(theirs.headers['content-type']);
    expect(ours.text).to.equal(theirs.text);
  });

  it('answers HEAD with the Content-Type and Content-Length of the GET', async () => {
    const app = appWithSettings({});
    const [head, get] = await Promise.all([request(app).head('/kit'), request(app).get('/kit')]);
    expect(head.status).to.equal(200);
    expect(head.headers['content-length']).to.equal(String(Buffer.byteLength(get.text))).and.equal(get.headers['content-length']);
    expect(head.headers['content-type']).to.equal('application/json; charset=utf-8');
  });

  it('sends no ETag (and never a 304) even when the app has ETags on: the answers are no-store', async () => {
    const app = appWithSettings({ etag: 'weak' });
    const theirs = await request(app).get('/express');
    expect(theirs.headers.etag, "Express's own answer has one").to.be.a('string');
    const ours = await request(app).get('/kit').set('If-None-Match', theirs.headers.etag as string);
    expect(ours.status).to.equal(200);
    expect(ours.headers).not.to.have.property('etag');
    expect(ours.text).to.equal(theirs.text);
  });

  it('leaves what JSON has no text for to res.json(): undefined, or a replacer that drops the whole body', async () => {
    const dropAll = (key: string, value: unknown) => (key === '' ? undefined : value);
    for (const [settings, answer] of [
      [{}, undefined],
      [{ 'json replacer': dropAll }, body],
    ] as Array<[Record<string, unknown>, unknown]>) {
      const app = appWithSettings(settings, answer);
      const [ours, theirs] = await Promise.all([request(app).get('/kit'), request(app).get('/express')]);
      expect(theirs.status).to.equal(200);
      expect(ours.status).to.equal(200);
      expect(ours.text).to.equal(theirs.text);
      expect(ours.headers['content-type']).to.equal(theirs.headers['content-type']);
    }
  });

  it('sends no Content-Length beside a Transfer-Encoding the app set (res.json() sends both before Express 5.3)', async () => {
    const app = appWithSettings({}, body, (_req, res, next) => {
      res.setHeader('Transfer-Encoding', 'chunked');
      next();
    });
    const ours = await request(app).get('/kit');
    expect(ours.status).to.equal(200);
    expect(ours.headers).not.to.have.property('content-length');
    expect(ours.headers['transfer-encoding']).to.equal('chunked');
    expect(ours.headers['content-type']).to.equal('application/json; charset=utf-8');
    expect(JSON.parse(ours.text)).to.deep.equal(body);
  });
});
