/** The OpenAPI document against the real thing: every operation is called on the example app and its answer checked against the documented schema. */
import { expect } from 'chai';
import type { Express } from 'express';
import { pino } from 'pino';
import request from 'supertest';
import express from 'express';
import { internalRouter, memoryCache, tenantFrom, type MfaCodeSender } from '../index.js';
import { createExampleApp } from '../examples/app.js';
import { OPERATIONS, ProblemSchema, openApiDocument, operationPath, type OpenApiOptions } from '../lib/openapi.js';
import { KEY_A, migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { JWT_SECRET, oathtool, token } from './support/mfa.js';

type Op = (typeof OPERATIONS)[number];

/** The parts of the generated document these tests read. */
interface JsonSchema {
  type?: string;
  $ref?: string;
  anyOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  format?: string;
}
interface HeaderDoc {
  $ref?: string;
  required?: boolean;
  description?: string;
}
interface ResponseDoc {
  headers?: Record<string, HeaderDoc>;
}
interface OperationDoc {
  parameters: Array<{ name: string; in: string; required: boolean; schema: JsonSchema }>;
  responses: Record<string, ResponseDoc>;
  requestBody?: { content: { 'application/json': { schema: JsonSchema } } };
}
interface Doc {
  paths: Record<string, Record<string, OperationDoc>>;
  components: { schemas: Record<string, JsonSchema>; headers: Record<string, HeaderDoc> };
}
const doc = openApiDocument() as unknown as Doc;
const docOf = (op: Op): OperationDoc => doc.paths[operationPath(op)]![op.method]!;
/** A header as documented, its `$ref` to `components.headers` followed. */
const headerDoc = (h: HeaderDoc): HeaderDoc => (h.$ref ? doc.components.headers[h.$ref.replace('#/components/headers/', '')]! : h);
/** A schema, its `$ref` to `components.schemas` followed. */
const schemaDoc = (s: JsonSchema): JsonSchema => (s.$ref ? doc.components.schemas[s.$ref.replace('#/components/schemas/', '')]! : s);
const acceptsNull = (s: JsonSchema): boolean => s.type === 'null' || (s.anyOf ?? []).some(acceptsNull);
/** The non-null branch of a nullable schema (the schema itself otherwise). */
const nonNull = (s: JsonSchema): JsonSchema => (s.anyOf?.length === 2 && s.anyOf.some((b) => b.type === 'null') ? s.anyOf.find((b) => b.type !== 'null')! : s);
/** A path of the document with each `{param}` filled, as the route takes it (a well-formed id that names nothing). */
const urlOf = (op: Op): string =>
  operationPath(op).replaceAll(/\{[^}]+\}/g, op.router === 'deviceSync' ? 'devsync_00000000000000000000000000000000' : '00000000-0000-4000-8000-000000000000');

describe('OpenAPI document', () => {
  let db: TestDb;
  let app: Express;
  const covered = new Set<Op>();
  const sent: string[] = [];

  before(async () => {
    db = await migratedStorage();
    const codeSender: MfaCodeSender = { send: (m) => void sent.push(m.code) };
    app = createExampleApp({ storage: db.storage, cache: memoryCache(), internalKeys: [KEY_A], keyRing: ring, jwtSecret: JWT_SECRET, logger: pino({ level: 'silent' }), codeSender });
  });
  after(async () => {
    await db.drop();
  });

  /** Finds the operation, checks the status is documented with every header it says is sent, and the body matches its schema. */
  function conforms(router: Op['router'], method: Op['method'], path: string, res: request.Response): void {
    const op = OPERATIONS.find((o) => o.router === router && o.method === method && o.path === path);
    expect(op, `${method} ${path} is documented`).to.exist;
    conformsTo(op!, res);
  }

  function conformsTo(op: Op, res: request.Response): void {
    const what = `${op.method} ${operationPath(op)} → ${res.status}`;
    const response = docOf(op).responses[String(res.status)];
    expect(response, `${what} documented (body ${res.text.slice(0, 200)})`).to.exist;
    for (const [name, header] of Object.entries(response!.headers ?? {})) {
      if (headerDoc(header).required) expect(res.headers[name.toLowerCase()], `${what}: ${name}, which the document says is sent`).to.be.a('string').that.is.not.empty;
    }
    const documented = op.responses[res.status];
    if (documented === undefined) {
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      ProblemSchema.parse(res.body);
      return;
    }
    if (documented === null) expect(res.text).to.equal('');
    else documented.parse(res.body);
    covered.add(op);
  }

  const user = (id: string) => ({ Authorization: `Bearer ${token(id)}` });
  const internal = { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' };

  it('mfaDevicesRouter: every route answers what the document says', async () => {
    const H = user('oas-alice');
    let res = await request(app).post('/auth/mfa/devices/totp').set(H).send({ deviceName: 'Phone' });
    conforms('mfaDevices', 'post', '/devices/totp', res);
    const { device, secret } = res.body as { device: { id: string }; secret: string };
    const now = Date.now();
    res = await request(app).post(`/auth/mfa/devices/${device.id}/verify`).set(H).send({ code: oathtool(secret, now) });
    conforms('mfaDevices', 'post', '/devices/{id}/verify', res);
    res = await request(app).patch(`/auth/mfa/devices/${device.id}`).set(H).send({ deviceName: 'Renamed' });
    conforms('mfaDevices', 'patch', '/devices/{id}', res);
    res = await request(app).post('/auth/mfa/devices/sms').set(H).send({ deviceName: 'SMS', phoneNumber: '+44 7700 900123' });
    conforms('mfaDevices', 'post', '/devices/sms', res);
    const smsId = (res.body as { device: { id: string } }).device.id;
    res = await request(app).post(`/auth/mfa/devices/${smsId}/challenge`).set(H);
    conforms('mfaDevices', 'post', '/devices/{id}/challenge', res);
    res = await request(app).post('/auth/mfa/devices/email').set(H).send({ deviceName: 'Mail', email: 'ada@example.com' });
    conforms('mfaDevices', 'post', '/devices/email', res);
    const emailId = (res.body as { device: { id: string } }).device.id;
    res = await request(app).get('/auth/mfa/devices').set(H);
    conforms('mfaDevices', 'get', '/devices', res);
    expect(res.body).to.have.length(3);
    res = await request(app)
      .post('/auth/mfa/verify')
      .set(H)
      .send({ code: oathtool(secret, now + 30_000), rememberDevice: true, device: { fingerprint: 'fp-oas', name: 'Laptop', browser: 'Firefox' } });
    conforms('mfaDevices', 'post', '/verify', res);
    expect(res.body.trustedDevice).to.exist;
    res = await request(app).post('/auth/mfa/recovery-codes').set(H);
    conforms('mfaDevices', 'post', '/recovery-codes', res);
    const recoveryCodes = (res.body as { codes: string[] }).codes;
    res = await request(app).get('/auth/mfa/recovery-codes').set(H);
    conforms('mfaDevices', 'get', '/recovery-codes', res);
    res = await request(app).post('/auth/mfa/verify').set(H).send({ recoveryCode: recoveryCodes[0] });
    conforms('mfaDevices', 'post', '/verify', res);
    expect(res.body).to.deep.equal({ verified: true, method: 'recovery_code', recoveryCodesRemaining: 9 });
    res = await request(app).get('/auth/mfa/trusted-devices').set(H);
    conforms('mfaDevices', 'get', '/trusted-devices', res);
    const trustedId = (res.body as Array<{ id: string }>)[0]!.id;
    res = await request(app).delete(`/auth/mfa/trusted-devices/${trustedId}`).set(H);
    conforms('mfaDevices', 'delete', '/trusted-devices/{id}', res);
    res = await request(app).delete('/auth/mfa/trusted-devices').set(H);
    conforms('mfaDevices', 'delete', '/trusted-devices', res);
    res = await request(app).delete(`/auth/mfa/devices/${emailId}`).set(H);
    conforms('mfaDevices', 'delete', '/devices/{id}', res);
    // Problems are documented too.
    conforms('mfaDevices', 'post', '/verify', await request(app).post('/auth/mfa/verify').set(H).send({ code: 'x' }));
    conforms('mfaDevices', 'get', '/devices', await request(app).get('/auth/mfa/devices'));
  });

  it('internalRouter: every route answers what the document says', async () => {
    // A second user with a verified TOTP device, for the internal verify route.
    const H = user('oas-bob');
    const enrol = await request(app).post('/auth/mfa/devices/totp').set(H).send({ deviceName: 'Phone' });
    const { device, secret } = enrol.body as { device: { id: string }; secret: string };
    const now = Date.now();
    expect((await request(app).post(`/auth/mfa/devices/${device.id}/verify`).set(H).send({ code: oathtool(secret, now) })).status).to.equal(200);

    let res = await request(app).get('/internal/mfa/totp/devices?user_id=oas-bob').set(internal);
    conforms('internal', 'get', '/mfa/totp/devices', res);
    res = await request(app).post('/internal/mfa/totp/verify').set(internal).send({ user_id: 'oas-bob', code: oathtool(secret, now + 30_000) });
    conforms('internal', 'post', '/mfa/totp/verify', res);
    res = await request(app).post('/internal/session/trusted-devices').set(internal).send({ user_id: 'oas-bob', device_fingerprint: 'fp-1', device_name: 'Mac', ip: '203.0.113.7', ttl_seconds: 3600 });
    conforms('internal', 'post', '/session/trusted-devices', res);
    const id = (res.body as { id: string }).id;
    // Details not given, or given as null: left out of the answer, which the document types string, not nullable.
    res = await request(app).post('/internal/session/trusted-devices').set(internal).send({ user_id: 'oas-bob', device_fingerprint: 'fp-2', device_name: null, ip: null, ttl_seconds: null });
    conforms('internal', 'post', '/session/trusted-devices', res);
    expect(res.body).not.to.have.any.keys('device_name', 'device_type', 'browser', 'os', 'ip');
    res = await request(app).get('/internal/session/trusted-devices?user_id=oas-bob').set(internal);
    conforms('internal', 'get', '/session/trusted-devices', res);
    expect(res.body.items).to.have.length(2);
    res = await request(app).get('/internal/session/trusted-devices/check?user_id=oas-bob&device_fingerprint=fp-1').set(internal);
    conforms('internal', 'get', '/session/trusted-devices/check', res);
    expect(res.body.trusted).to.equal(true);
    res = await request(app).delete(`/internal/session/trusted-devices/${id}?user_id=oas-bob`).set(internal);
    conforms('internal', 'delete', '/session/trusted-devices/{id}', res);
    conforms('internal', 'delete', '/session/trusted-devices', await request(app).delete('/internal/session/trusted-devices/?user_id=oas-bob').set(internal));
    res = await request(app).delete('/internal/session/trusted-devices?user_id=oas-bob').set(internal);
    conforms('internal', 'delete', '/session/trusted-devices', res);
    expect(res.body).to.deep.equal({ revoked: 1 });
    conforms('internal', 'get', '/mfa/totp/devices', await request(app).get('/internal/mfa/totp/devices').set(internal));
    // A second device, removed by id; then the reset removes the first.
    const second = await request(app).post('/auth/mfa/devices/totp').set(H).send({ deviceName: 'Tablet' });
    res = await request(app).delete(`/internal/mfa/totp/devices/${(second.body as { device: { id: string } }).device.id}?user_id=oas-bob`).set(internal);
    conforms('internal', 'delete', '/mfa/totp/devices/{id}', res);
    conforms('internal', 'delete', '/mfa/totp/devices/{id}', await request(app).delete(`/internal/mfa/totp/devices/${device.id}?user_id=someone-else`).set(internal));
    res = await request(app).delete('/internal/mfa/devices?user_id=oas-bob').set(internal);
    conforms('internal', 'delete', '/mfa/devices', res);
    expect(res.body).to.deep.equal({ removed: 1 });
    res = await request(app).delete('/internal/mfa/user-data?user_id=oas-bob').set(internal);
    conforms('internal', 'delete', '/mfa/user-data', res);
    expect(res.body).to.deep.include({ erased: { mfa_devices: 0, recovery_codes: 0, trusted_devices: 0, sync_records: 0 } });
    conforms('internal', 'delete', '/mfa/user-data', await request(app).delete('/internal/mfa/user-data').set(internal));
  });

  it('deviceSyncRouter: every route answers what the document says', async () => {
    const H = user('oas-carol');
    let res = await request(app).post('/mfa/devices/sync').set(H).send({ device_fingerprint: 'fp-a', device_name: 'Phone A', totp_devices: [{ secret: 'JBSWY3DPEHPK3PXP', issuer: 'Example' }] });
    conforms('deviceSync', 'post', '/', res);
    const { id, sync_token } = res.body as { id: string; sync_token: string };
    res = await request(app).post('/mfa/devices/sync').set(H).send({ device_fingerprint: 'fp-a', device_name: 'Phone A', totp_devices: '[]', sync_token });
    conforms('deviceSync', 'post', '/', res);
    conforms('deviceSync', 'post', '/', await request(app).post('/mfa/devices/sync').set(H).send({ device_fingerprint: 'fp-a', device_name: 'Phone A', totp_devices: '[]', sync_token }));
    res = await request(app).get('/mfa/devices/sync').set(H);
    conforms('deviceSync', 'get', '/', res);
    // A record whose vault does not open (a damaged row) is listed without it: a documented item too.
    const damaged = await request(app).post('/mfa/devices/sync').set(H).send({ device_fingerprint: 'fp-b', device_name: 'Phone B', totp_devices: [] });
    const row = (await db.knex('sync_records').where({ id: damaged.body.id }).first()) as { vault_ciphertext: Buffer };
    await db.knex('sync_records').where({ id: damaged.body.id }).update({ vault_ciphertext: Buffer.from(row.vault_ciphertext.map((b, i) => (i === 0 ? b ^ 1 : b))) });
    res = await request(app).get('/mfa/devices/sync').set(H);
    conforms('deviceSync', 'get', '/', res);
    expect((res.body.items as Array<{ id: string }>).find((i) => i.id === damaged.body.id)).to.include({ vault_unreadable: true });
    await request(app).delete(`/mfa/devices/sync/${damaged.body.id}`).set(H);
    res = await request(app).get(`/mfa/devices/sync/${id}`).set(H);
    conforms('deviceSync', 'get', '/{id}', res);
    res = await request(app).delete(`/mfa/devices/sync/${id}`).set(H);
    conforms('deviceSync', 'delete', '/{id}', res);
  });

  it("types the list envelopes' code as the seeds do: an integer, always 0", () => {
    const envelopes = Object.entries(doc.components.schemas).filter(([name]) => name.endsWith('ListResponse'));
    expect(envelopes.map(([name]) => name)).to.include.members(['TOTPDeviceListResponse', 'TrustedDeviceListResponse', 'DeviceSyncListResponse']);
    for (const [name, schema] of envelopes) expect(schema.properties?.code, name).to.include({ type: 'integer', const: 0 });
  });

  it('every documented operation was exercised with a documented success', () => {
    const missing = OPERATIONS.filter((op) => !covered.has(op)).map((op) => `${op.method} ${operationPath(op)}`);
    expect(missing).to.deep.equal([]);
  });

  it('every operation answers 401 without credentials with the WWW-Authenticate challenge its document names', async () => {
    const doc = openApiDocument() as { paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, { description: string }> }> }>> };
    for (const op of OPERATIONS) {
      const path = operationPath(op);
      const challenge = doc.paths[path]![op.method]!.responses['401']!.headers?.['WWW-Authenticate']?.description;
      expect(challenge, `${op.method} ${path}`).to.be.a('string');
      const url = path.replaceAll(/\{[^}]+\}/g, '00000000-0000-4000-8000-000000000000');
      const res = await request(app)[op.method](url).set('X-Tenant-ID', 'acme');
      expect(res.status, `${op.method} ${path}`).to.equal(401);
      const sent = res.headers['www-authenticate'] as string;
      expect(sent, `${op.method} ${path}`).to.equal(op.router === 'internal' ? 'ApiKey header="x-internal-api-key"' : 'Bearer');
      expect(challenge, `${op.method} ${path}`).to.contain(`\`${sent}`);
    }
  });

  it('documents by rule what every operation answers: 400, 401, 405 with Allow, 500, 503 with Retry-After; 403 on the user routers; 413 and 415 wherever a body is read', () => {
    for (const op of OPERATIONS) {
      const what = `${op.method} ${operationPath(op)}`;
      const responses = docOf(op).responses;
      const readsBody = op.method === 'post' || op.method === 'patch';
      if (docOf(op).requestBody) expect(readsBody, `${what} takes a body`).to.equal(true);
      const expected = [400, 401, 405, 500, 503, ...(op.router === 'internal' ? [] : [403]), ...(readsBody ? [413, 415] : [])];
      expect(Object.keys(responses).map(Number), what).to.include.members(expected);
      for (const [status, response] of Object.entries(responses)) {
        const headers = Object.fromEntries(Object.entries(response.headers ?? {}).map(([name, h]) => [name, headerDoc(h)]));
        const must = ['X-Request-ID', 'Cache-Control', ...(status === '401' ? ['WWW-Authenticate'] : []), ...(status === '405' ? ['Allow'] : []), ...(status === '429' || status === '503' ? ['Retry-After'] : [])];
        expect(headers, `${what} ${status}`).to.include.keys(must);
        for (const name of must) expect(headers[name]!.required, `${what} ${status} ${name}`).to.equal(true);
      }
    }
    expect(doc.paths['/mfa/devices/sync']!.post!.responses['201']!.headers).to.have.property('Location');
    expect(doc.paths['/mfa/devices/sync']!.post!.responses['200']!.headers).not.to.have.property('Location');
  });

  it('every operation answers what its rules document: 405 with Allow for a method its path has not, 415 and 413 for a body it cannot read, 400 for a malformed tenant', async () => {
    const tooLarge = JSON.stringify({ pad: 'x'.repeat(1_100_000) }); // over every router's default limit (sync: 1 MiB)
    const badTenant = { 'X-Tenant-ID': 'not a tenant!' };
    for (const op of OPERATIONS) {
      const url = urlOf(op);
      const auth = op.router === 'internal' ? internal : user('oas-rules');
      // No route of the kit takes PUT.
      let res = await request(app).put(url).set(auth);
      expect(res.status, `PUT ${url}`).to.equal(405);
      conformsTo(op, res);
      expect(res.headers.allow, `PUT ${url}`).to.contain(op.method.toUpperCase());
      if (op.method === 'post' || op.method === 'patch') {
        res = await request(app)[op.method](url).set(auth).set('Content-Type', 'text/plain').send('hello');
        expect(res.status, `${op.method} ${url} text/plain`).to.equal(415);
        conformsTo(op, res);
        res = await request(app)[op.method](url).set(auth).set('Content-Type', 'application/json').send(tooLarge);
        expect(res.status, `${op.method} ${url} too large`).to.equal(413);
        conformsTo(op, res);
      }
      res = await request(app)[op.method](url).set({ ...auth, ...badTenant });
      expect(res.status, `${op.method} ${url} malformed tenant`).to.equal(400);
      conformsTo(op, res);
    }
  });

  describe('the documented inputs are what the routes take', () => {
    let n = 0;
    const fresh = () => `oas-in-${n++}`;
    /** A body each operation with one takes, new each time (a new user or fingerprint: no throttle, no conflict). */
    const bases: Record<string, () => Record<string, unknown>> = {
      'post /auth/mfa/devices/totp': () => ({ deviceName: 'Phone' }),
      'post /auth/mfa/devices/sms': () => ({ deviceName: 'SMS', phoneNumber: '+447700900123' }),
      'post /auth/mfa/devices/email': () => ({ deviceName: 'Mail', email: 'ada@example.com' }),
      'post /auth/mfa/devices/{id}/verify': () => ({ code: '123456' }),
      'patch /auth/mfa/devices/{id}': () => ({ deviceName: 'Renamed' }),
      'post /auth/mfa/verify': () => ({ code: '123456', device: { fingerprint: 'fp-oas' } }),
      'post /internal/mfa/totp/verify': () => ({ user_id: fresh(), code: '123456' }),
      'post /internal/session/trusted-devices': () => ({ user_id: fresh(), device_fingerprint: fresh() }),
      'post /mfa/devices/sync': () => ({ device_fingerprint: fresh(), device_name: 'Phone', totp_devices: [] }),
    };
    /** Required query parameters: a value each takes. */
    const queryBases: Record<string, () => string> = { user_id: fresh, device_fingerprint: () => 'fp-oas' };

    const call = async (op: Op, query: Record<string, string>, body?: Record<string, unknown>): Promise<request.Response> => {
      const auth = op.router === 'internal' ? internal : user(fresh());
      let req = request(app)[op.method](urlOf(op)).query(query).set(auth);
      if (body !== undefined) req = req.send(body);
      const res = await req;
      expect(res.status, `${op.method} ${operationPath(op)}: ${res.text.slice(0, 200)}`).to.be.below(500).and.not.equal(429);
      conformsTo(op, res);
      return res;
    };
    /** The violations of the answer that name `field` (none unless it is a 400). */
    const violations = (res: request.Response, field: string): Array<{ field: string; code: string }> =>
      res.status === 400 ? ((res.body as { errors?: Array<{ field: string; code: string }> }).errors ?? []).filter((e) => e.field === field) : [];

    /** Checks one documented value's bounds against the route: at each bound taken (no `range` violation), past it refused. */
    async function checkBounds(what: string, field: string, schema: JsonSchema, send: (value: unknown) => Promise<request.Response>): Promise<number> {
      const cases: Array<[unknown, boolean, string]> = [];
      if (schema.type === 'string') {
        if (schema.maxLength !== undefined) cases.push(['x'.repeat(schema.maxLength), true, 'maxLength'], ['x'.repeat(schema.maxLength + 1), false, 'maxLength + 1']);
        if (schema.minLength) cases.push(['x'.repeat(schema.minLength - 1), false, 'minLength - 1']);
      }
      if (schema.type === 'integer') {
        if (schema.maximum !== undefined) cases.push([schema.maximum, true, 'maximum'], [schema.maximum + 1, false, 'maximum + 1']);
        if (schema.minimum !== undefined) cases.push([schema.minimum, true, 'minimum'], [schema.minimum - 1, false, 'minimum - 1']);
      }
      for (const [value, taken, bound] of cases) {
        const res = await send(value);
        const found = violations(res, field);
        if (taken) expect(found.filter((v) => v.code === 'range'), `${what}: ${field} at its documented ${bound} → ${res.status} ${res.text.slice(0, 200)}`).to.deep.equal([]);
        else expect(found, `${what}: ${field} at its documented ${bound} → ${res.status} ${res.text.slice(0, 200)}`).not.to.be.empty;
      }
      return cases.length;
    }

    /** Every string and integer input has its bounds in the document (the route has some for each): a length, or a format (uuid). */
    const expectBounded = (what: string, field: string, schema: JsonSchema): void => {
      if (schema.type === 'string') expect(schema.maxLength ?? schema.format, `${what}: ${field} has a maxLength or a format`).not.to.equal(undefined);
      if (schema.type === 'integer') expect([schema.minimum, schema.maximum], `${what}: ${field} has a minimum and a maximum`).to.satisfy((b: unknown[]) => b.every((x) => typeof x === 'number'));
    };

    it('a body member is nullable in the document exactly where its route takes null, and its documented bounds are the route\'s', async () => {
      let checked = 0;
      let nullable = 0;
      async function members(op: Op, schema: JsonSchema, base: () => Record<string, unknown>, at: string[]): Promise<void> {
        const what = `${op.method} ${operationPath(op)}`;
        for (const [name, raw] of Object.entries(schema.properties ?? {})) {
          const path = [...at, name];
          const field = path.join('.');
          const prop = schemaDoc(raw);
          const withValue = (value: unknown): Record<string, unknown> => {
            const body = base();
            let parent = body;
            for (const key of path.slice(0, -1)) parent = parent[key] as Record<string, unknown>;
            parent[name] = value;
            return body;
          };
          const res = await call(op, {}, withValue(null));
          const refused = violations(res, field).length > 0;
          expect(acceptsNull(prop), `${what}: ${field}: null is ${refused ? 'refused' : 'taken'} (${res.status} ${res.text.slice(0, 200)}), the document must say so`).to.equal(!refused);
          if (!refused) nullable++;
          const value = nonNull(prop);
          expectBounded(what, field, value);
          checked += await checkBounds(what, field, value, async (v) => call(op, {}, withValue(v)));
          if (value.type === 'object' && value.properties) await members(op, value, base, path);
        }
      }
      for (const op of OPERATIONS) {
        const body = docOf(op).requestBody?.content['application/json'].schema;
        if (!body) continue;
        const key = `${op.method} ${operationPath(op)}`;
        const base = bases[key];
        expect(base, `a body ${key} takes, in this test`).to.be.a('function');
        await members(op, schemaDoc(body), base!, []);
      }
      // TrustDeviceRequest's five details and ttl_seconds, DeviceSyncRequest's sync_token.
      expect(nullable).to.equal(7);
      expect(checked).to.be.greaterThan(40);
    });

    it("a query parameter's bounds are documented, and they are the route's (page, page_size, user_id, device_fingerprint)", async () => {
      let checked = 0;
      for (const op of OPERATIONS) {
        const what = `${op.method} ${operationPath(op)}`;
        const params = docOf(op).parameters.filter((p) => p.in === 'query');
        const base = () => Object.fromEntries(params.filter((p) => p.required).map((p) => [p.name, queryBases[p.name]!()]));
        for (const p of params) {
          expectBounded(what, p.name, p.schema);
          checked += await checkBounds(what, p.name, p.schema, async (v) => call(op, { ...base(), [p.name]: String(v) }));
        }
      }
      expect(checked).to.be.greaterThan(40);
    });
  });

  it('checks its options: a misspelt option or router, a mount path that is not one OpenAPI can write → TypeError with the fix', () => {
    const refused: Array<[unknown, RegExp]> = [
      [{ mount: { internal: '/x' } }, /unknown option 'mount'\. Did you mean 'mounts'\?/],
      [{ mounts: { mfa: '/x' } }, /option 'mounts' has an unknown option 'mfa'/],
      [{ mounts: { internal: 'internal' } }, /'mounts\.internal' must be a path that begins with '\/'/],
      [{ mounts: { mfaDevices: '/t/:tenant/mfa' } }, /'mounts\.mfaDevices' must be a path .* no parameters/],
      [{ mounts: { deviceSync: 42 } }, /'mounts\.deviceSync' must be a path/],
      // What Express 5's path-to-regexp reserves: app.use() throws on it, so no router is mounted there.
      [{ mounts: { internal: '/a(b)' } }, /'mounts\.internal' must be a path/],
      [{ mounts: { internal: '/a+b!' } }, /'mounts\.internal' must be a path/],
      [{ servers: 'http://x' }, /option 'servers' must be a list of \{ url, description\? \}/],
      [{ servers: [{ href: 'http://x' }] }, /option 'servers' must be a list/],
      [{ servers: [{ url: 'http://x', description: 42 }] }, /option 'servers' must be a list/],
      [{ version: 42 }, /option 'version' must be the API's version as text/],
      [{ routers: { keyHeader: 'X-Key' } }, /option 'routers' has an unknown option 'keyHeader'/],
      [{ routers: { internal: { header: 'X-Key' } } }, /option 'routers\.internal' has an unknown option 'header'/],
      [{ routers: { mfaDevices: { tenantHeader: 'X Tenant' } } }, /'routers\.mfaDevices\.tenantHeader' must be an HTTP header name/],
      [{ routers: { internal: { keyHeader: 42 } } }, /'routers\.internal\.keyHeader' must be an HTTP header name/],
      [{ routers: { internal: { totpVerify: 'no' } } }, /'routers\.internal\.totpVerify' must be a boolean/],
    ];
    for (const [options, message] of refused) expect(() => openApiDocument(options as OpenApiOptions), JSON.stringify(options)).to.throw(TypeError, message);
    const doc = openApiDocument({ mounts: { internal: '/svc/v1/internal/' } }) as { paths: Record<string, unknown> };
    expect(doc.paths).to.have.property('/svc/v1/internal/session/trusted-devices/check');
  });

  it("documents the routers as they were set up (routers: key header, tenant header, no TOTP verify without a keyRing), and such a router answers what it says", async () => {
    const custom = openApiDocument({ routers: { internal: { keyHeader: 'X-Api-Key', tenantHeader: 'X-Org', totpVerify: false }, mfaDevices: { tenantHeader: 'X-Team' } } }) as unknown as Doc & { components: { securitySchemes: Record<string, { name?: string }> } };
    expect(custom.components.securitySchemes.internalKey!.name).to.equal('X-Api-Key');
    expect(custom.paths).to.not.have.property('/internal/mfa/totp/verify');
    const check = custom.paths['/internal/session/trusted-devices/check']!.get!;
    const headers = (check.parameters as Array<{ name: string; in: string; required: boolean }>).filter((p) => p.in === 'header');
    expect(headers).to.deep.equal([{ name: 'X-Org', in: 'header', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' } }]);
    expect(JSON.stringify(check.responses['401'])).to.contain('ApiKey header=\\"x-api-key\\"');
    const devices = custom.paths['/auth/mfa/devices']!.get!;
    // Each router its own: the user routers' header is theirs, and one not given stays the default.
    expect((devices.parameters as Array<{ name: string; in: string }>).filter((p) => p.in === 'header').map((p) => p.name)).to.deep.equal(['X-Team']);
    const vault = custom.paths['/mfa/devices/sync']!.get!;
    expect((vault.parameters as Array<{ name: string; in: string }>).filter((p) => p.in === 'header').map((p) => p.name)).to.deep.equal(['X-Tenant-ID']);
    // A router set up that way (no keyRing) answers with those headers, and has no verify route.
    const app = express();
    app.use('/internal', internalRouter({ storage: db.storage, internalKeys: [KEY_A], keyHeader: 'X-Api-Key', tenant: tenantFrom.header('X-Org') }));
    const ok = await request(app).get('/internal/session/trusted-devices/check?user_id=u&device_fingerprint=f').set('X-Api-Key', KEY_A).set('X-Org', 'acme');
    expect(ok.status, ok.text).to.equal(200);
    const challenge = (await request(app).get('/internal/session/trusted-devices/check?user_id=u&device_fingerprint=f')).headers['www-authenticate'];
    expect(challenge).to.equal('ApiKey header="x-api-key"');
    const verify = await request(app).post('/internal/mfa/totp/verify').set('X-Api-Key', KEY_A).set('X-Org', 'acme').send({ user_id: 'u', code: '123456' });
    expect(verify.status).to.equal(404);
  });

  it('is served at /openapi.json as OpenAPI 3.1 whose references all resolve, and /docs renders a page', async () => {
    const res = await request(app).get('/openapi.json');
    expect(res.status).to.equal(200);
    const doc = res.body as { openapi: string; paths: Record<string, unknown>; components: { schemas: Record<string, unknown>; headers: Record<string, unknown> } };
    expect(doc.openapi).to.equal('3.1.0');
    expect(doc).to.deep.equal(JSON.parse(JSON.stringify(openApiDocument())));
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).to.be.greaterThan(30);
    for (const name of refs) expect(doc.components.schemas, name).to.have.property(name);
    const headerRefs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/headers\/([^"]+)"/g)].map((m) => m[1]!);
    expect(headerRefs.length).to.be.greaterThan(100);
    for (const name of headerRefs) expect(doc.components.headers, name).to.have.property(name);
    // Every request body a route reads strictly is documented so; the vault push alone takes extra members.
    const requests = Object.entries(doc.components.schemas).filter(([name]) => /Request$/.test(name));
    expect(requests.length).to.be.greaterThan(5);
    for (const [name, schema] of requests) {
      const extra = (schema as { additionalProperties?: unknown }).additionalProperties;
      if (name === 'DeviceSyncRequest') expect(extra, name).not.to.equal(false);
      else expect(extra, name).to.equal(false);
    }
    const docs = await request(app).get('/docs/').redirects(1);
    expect(docs.status).to.equal(200);
    expect(docs.text).to.contain('swagger-ui');
    // swagger-ui-express writes its customCss option into a <style> block: unset, the word "undefined".
    expect(docs.text).not.to.match(/undefined\s*<\/style>/);
    // A path swagger-ui-express refuses itself (its package.json, by any spelling) is a Problem as any other 404.
    for (const path of ['/docs/package.json', '/docs/%2e%2e/package.json', '/docs/a/package.json?x=1']) {
      const res = await request(app).get(path);
      expect(res.status, path).to.equal(404);
      expect(res.type, path).to.equal('application/problem+json');
      expect(res.body, path).to.include({ status: 404, code: 40400001 });
    }
  });
});
