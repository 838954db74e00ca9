/** The OpenAPI document against the real thing: every operation is called on the example app and its answer checked against the documented schema. */
import { expect } from 'chai';
import type { Express } from 'express';
import { pino } from 'pino';
import request from 'supertest';
import { memoryCache, type MfaCodeSender } from '../index.js';
import { createExampleApp } from '../examples/app.js';
import { OPERATIONS, ProblemSchema, openApiDocument, operationPath } from '../lib/openapi.js';
import { KEY_A, migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { JWT_SECRET, oathtool, token } from './support/mfa.js';

type Op = (typeof OPERATIONS)[number];

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

  /** Finds the operation, checks the status is documented and the body matches its schema. */
  function conforms(router: Op['router'], method: Op['method'], path: string, res: request.Response): void {
    const op = OPERATIONS.find((o) => o.router === router && o.method === method && o.path === path);
    expect(op, `${method} ${path} is documented`).to.exist;
    const documented = op!.responses[res.status];
    if (documented === undefined) {
      expect([...op!.problems, 401, 500, 503], `${method} ${path}: status ${res.status} documented (body ${res.text.slice(0, 200)})`).to.include(res.status);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      ProblemSchema.parse(res.body);
      return;
    }
    if (documented === null) expect(res.text).to.equal('');
    else (documented).parse(res.body);
    covered.add(op!);
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
    res = await request(app).get('/auth/mfa/recovery-codes').set(H);
    conforms('mfaDevices', 'get', '/recovery-codes', res);
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
    res = await request(app).get('/internal/session/trusted-devices?user_id=oas-bob').set(internal);
    conforms('internal', 'get', '/session/trusted-devices', res);
    res = await request(app).get('/internal/session/trusted-devices/check?user_id=oas-bob&device_fingerprint=fp-1').set(internal);
    conforms('internal', 'get', '/session/trusted-devices/check', res);
    expect(res.body.trusted).to.equal(true);
    res = await request(app).delete(`/internal/session/trusted-devices/${id}?user_id=oas-bob`).set(internal);
    conforms('internal', 'delete', '/session/trusted-devices/{id}', res);
    res = await request(app).delete('/internal/session/trusted-devices?user_id=oas-bob').set(internal);
    conforms('internal', 'delete', '/session/trusted-devices', res);
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
    res = await request(app).get(`/mfa/devices/sync/${id}`).set(H);
    conforms('deviceSync', 'get', '/{id}', res);
    res = await request(app).delete(`/mfa/devices/sync/${id}`).set(H);
    conforms('deviceSync', 'delete', '/{id}', res);
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

  it('is served at /openapi.json as OpenAPI 3.1 whose references all resolve, and /docs renders a page', async () => {
    const res = await request(app).get('/openapi.json');
    expect(res.status).to.equal(200);
    const doc = res.body as { openapi: string; paths: Record<string, unknown>; components: { schemas: Record<string, unknown> } };
    expect(doc.openapi).to.equal('3.1.0');
    expect(doc).to.deep.equal(JSON.parse(JSON.stringify(openApiDocument())));
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).to.be.greaterThan(30);
    for (const name of refs) expect(doc.components.schemas, name).to.have.property(name);
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
  });
});
