/**
 * A route's path with a method it does not have: 405 Problem with `Allow` (RFC 9110 §15.5.6) on each of the three
 * routers, after their authentication; other paths still pass on to the host; OPTIONS is Express's answer. A body is
 * read only where a route answers the method and path: elsewhere its faults do not hide the 405 or 404.
 */
import { expect } from 'chai';
import express, { type Express } from 'express';
import { pino } from 'pino';
import request from 'supertest';
import { internalRouter, memoryCache } from '../index.js';
import { createExampleApp } from '../examples/app.js';
import { KEY_A, migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { JWT_SECRET, token } from './support/mfa.js';

describe('405 Method Not Allowed', () => {
  let db: TestDb;
  let app: Express;
  const internal = { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' };
  const user = { Authorization: `Bearer ${token('mna-alice')}` };

  before(async () => {
    db = await migratedStorage();
    app = createExampleApp({ storage: db.storage, cache: memoryCache(), internalKeys: [KEY_A], keyRing: ring, jwtSecret: JWT_SECRET, logger: pino({ level: 'silent' }) });
  });
  after(async () => {
    await db.drop();
  });

  const cases: Array<[method: 'put' | 'patch' | 'post' | 'get' | 'delete', path: string, headers: Record<string, string>, allow: string]> = [
    ['put', '/internal/session/trusted-devices?user_id=u', internal, 'DELETE, GET, HEAD, POST'],
    ['post', '/internal/session/trusted-devices/check', internal, 'DELETE, GET, HEAD'],
    ['patch', '/internal/session/trusted-devices/00000000-0000-0000-0000-000000000000', internal, 'DELETE'],
    ['delete', '/internal/mfa/totp/devices', internal, 'GET, HEAD'],
    ['get', '/internal/mfa/totp/verify', internal, 'POST'],
    ['put', '/auth/mfa/devices', user, 'GET, HEAD'],
    ['get', '/auth/mfa/verify', user, 'POST'],
    ['delete', '/auth/mfa/recovery-codes', user, 'GET, HEAD, POST'],
    ['get', '/auth/mfa/devices/00000000-0000-0000-0000-000000000000/challenge', user, 'POST'],
    ['put', '/mfa/devices/sync', user, 'GET, HEAD, POST'],
    ['post', '/mfa/devices/sync/devsync_00000000000000000000000000000000', user, 'DELETE, GET, HEAD'],
    // The example app's own routes.
    ['post', '/healthz', {}, 'GET, HEAD'],
    ['delete', '/readyz', {}, 'GET, HEAD'],
    ['put', '/openapi.json', {}, 'GET, HEAD'],
  ];
  for (const [method, path, headers, allow] of cases) {
    it(`${method.toUpperCase()} ${path.split('?')[0]} → 405, Allow: ${allow}`, async () => {
      const res = await request(app)[method](path).set(headers).send(method === 'get' ? undefined : { x: 1 });
      expect(res.status, res.text).to.equal(405);
      expect(res.headers.allow).to.equal(allow);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      expect(res.body).to.include({ status: 405, code: 40500001, title: 'Method Not Allowed' });
      expect(res.headers['cache-control']).to.equal('no-store');
    });
  }

  it('is answered after the router’s authentication: no key or no token → 401, no tenant → 400', async () => {
    expect((await request(app).put('/internal/session/trusted-devices')).status).to.equal(401);
    expect((await request(app).put('/internal/session/trusted-devices').set('X-Internal-API-Key', KEY_A)).status).to.equal(400);
    const res = await request(app).put('/auth/mfa/devices');
    expect(res.status).to.equal(401);
    expect(res.headers.allow).to.equal(undefined);
  });

  it('changes nothing: a PUT on the list of trusted devices revokes none', async () => {
    const created = await request(app).post('/internal/session/trusted-devices').set(internal).send({ user_id: 'mna-u', device_fingerprint: 'fp' });
    expect(created.status).to.equal(201);
    expect((await request(app).put('/internal/session/trusted-devices?user_id=mna-u').set(internal)).status).to.equal(405);
    expect((await request(app).delete('/internal/session/trusted-devices?user_id=mna-u').set(internal).send()).body).to.deep.equal({ revoked: 1 });
  });

  it('a path no route has is still a 404 (the host’s), and OPTIONS is Express’s 200 with the same Allow', async () => {
    const res = await request(app).put('/internal/nothing-here').set(internal);
    expect(res.status).to.equal(404);
    expect(res.headers.allow).to.equal(undefined);
    const options = await request(app).options('/internal/session/trusted-devices').set(internal);
    expect(options.status).to.equal(200);
    expect(options.headers.allow).to.equal('DELETE, GET, HEAD, POST');
    expect(options.headers['accept-patch']).to.equal(undefined);
    // A resource that takes PATCH says in what (RFC 5789 §3.1).
    const patchable = await request(app).options('/auth/mfa/devices/00000000-0000-4000-8000-000000000000').set(user);
    expect(patchable.status).to.equal(200);
    expect(patchable.headers.allow).to.equal('DELETE, PATCH');
    expect(patchable.headers['accept-patch']).to.equal('application/json, application/merge-patch+json');
    // The example app's own routes answer it the same way, though its last layer is a catch-all 404.
    for (const path of ['/healthz', '/readyz', '/openapi.json']) {
      const own = await request(app).options(path);
      expect(own.status, path).to.equal(200);
      expect(own.headers.allow, path).to.equal('GET, HEAD');
      expect(own.text, path).to.equal('GET, HEAD');
    }
    expect((await request(app).options('/nothing-here')).status).to.equal(404);
  });

  // Malformed JSON, a type that is not JSON, a body over the limit: each a 400 / 415 / 413 where a route takes it.
  const badBodies: Array<[name: string, type: string, body: string, status: number]> = [
    ['malformed JSON', 'application/json', '{bad', 400],
    ['text/plain', 'text/plain', 'hello', 415],
    ['over the limit', 'application/json', `{"x":"${'a'.repeat(200_000)}"}`, 413],
  ];
  for (const [name, type, body, status] of badBodies) {
    it(`a body that is ${name}: ${status} where a route takes it; 405 for a wrong method and 404 for no route, whatever the body`, async () => {
      const send = (method: 'post' | 'put', path: string, headers: Record<string, string>) =>
        request(app)[method](path).set(headers).set('Content-Type', type).send(body);
      const taken = await send('post', '/internal/mfa/totp/verify', internal);
      expect(taken.status, taken.text).to.equal(status);
      expect((await send('post', '/auth/mfa/devices/totp', user)).status).to.equal(status);
      for (const [path, headers] of [['/internal/mfa/totp/verify', internal], ['/auth/mfa/verify', user], ['/mfa/devices/sync', user]] as const) {
        const wrong = await send('put', path, headers);
        expect(wrong.status, `PUT ${path}: ${wrong.text}`).to.equal(405);
        expect(wrong.headers.allow).to.be.a('string');
      }
      for (const [path, headers] of [['/internal/nothing-here', internal], ['/auth/mfa/nothing-here', user]] as const) {
        const missing = await send('post', path, headers);
        expect(missing.status, `POST ${path}: ${missing.text}`).to.equal(404);
        expect(missing.body).to.include({ status: 404 });
      }
    });
  }

  it('a body sent to a path the router has no route for is left unread for the host’s own parser', async () => {
    const host = express();
    host.use('/internal', internalRouter({ storage: db.storage, internalKeys: [KEY_A] }));
    host.post('/internal/host-form', express.text(), (req, res) => {
      res.json({ got: req.body as unknown });
    });
    const res = await request(host).post('/internal/host-form').set(internal).set('Content-Type', 'text/plain').send('plain words');
    expect(res.status, res.text).to.equal(200);
    expect(res.body).to.deep.equal({ got: 'plain words' });
  });

  it('in a host app, the host’s own routes under the same mount path are still reached', async () => {
    const host = express();
    host.use('/internal', internalRouter({ storage: db.storage, internalKeys: [KEY_A] }));
    host.put('/internal/host-only', (_req, res) => {
      res.json({ host: true });
    });
    const res = await request(host).put('/internal/host-only').set(internal);
    expect(res.status, res.text).to.equal(200);
    expect(res.body).to.deep.equal({ host: true });
    expect((await request(host).put('/internal/mfa/totp/devices').set(internal)).status).to.equal(405);
  });
});
