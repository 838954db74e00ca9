/** Seed 000 over HTTP on real Postgres: `GET /internal/mfa/totp/devices`. */
import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import { internalRouter, silentLogger } from '../index.js';
import { KEY_A, KEY_B, insertDevice, migratedStorage, type TestDb } from './support/fixtures.js';

const PATH = '/internal/mfa/totp/devices';

describe('GET /internal/mfa/totp/devices (seed 000)', () => {
  let db: TestDb;
  let app: express.Express;
  const ids: string[] = [];

  before(async () => {
    db = await migratedStorage();
    app = express();
    app.use('/internal', internalRouter({ storage: db.storage, internalKeys: [KEY_A, KEY_B], logger: silentLogger }));
    const base = Date.UTC(2026, 4, 12, 12, 0, 0);
    for (let i = 0; i < 25; i++) {
      ids.push(await insertDevice(db.knex, { tenantId: 'acme', userId: 'alice', deviceName: `Phone ${i}`, createdAt: new Date(base + i * 1000), lastUsedAt: i === 24 ? new Date(base + 99_000) : null }));
    }
    await insertDevice(db.knex, { tenantId: 'acme', userId: 'alice', method: 'sms', deviceName: 'SMS' });
    await insertDevice(db.knex, { tenantId: 'acme', userId: 'bob', deviceName: 'Bob phone' });
    await insertDevice(db.knex, { tenantId: 'other', userId: 'alice', deviceName: 'Other tenant' });
  });
  after(async () => {
    await db.drop();
  });

  const call = (query: string, headers: Record<string, string> = { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme' }) => {
    const req = request(app).get(`${PATH}${query}`);
    for (const [k, v] of Object.entries(headers)) void req.set(k, v);
    return req;
  };

  it('answers 401 Problem JSON without a key, before looking at anything else', async () => {
    const res = await call('', {});
    expect(res.status).to.equal(401);
    expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
    expect(res.body).to.include({ status: 401, code: 40100002, title: 'Unauthorized' });
    expect(res.body.message).to.equal(res.body.detail);
    expect(res.body.request_id).to.be.a('string').and.not.empty;
    expect(res.body.timestamp).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('answers 401 for a wrong key, a key of another length, a case-changed key, and a key in the query string', async () => {
    for (const key of ['wrong-key-wrong-key-wrong-key-wrong-k', 'x', KEY_A.toUpperCase(), `${KEY_A} `.repeat(3)]) {
      const res = await call('?user_id=alice', { 'X-Internal-API-Key': key, 'X-Tenant-ID': 'acme' });
      expect(res.status, key).to.equal(401);
    }
    const res = await call(`?user_id=alice&x-internal-api-key=${KEY_A}&api_key=${KEY_A}`, { 'X-Tenant-ID': 'acme' });
    expect(res.status).to.equal(401);
    expect(JSON.stringify(res.body)).not.to.contain(KEY_A);
  });

  it('accepts both configured keys', async () => {
    for (const key of [KEY_A, KEY_B]) {
      const res = await call('?user_id=alice', { 'X-Internal-API-Key': key, 'X-Tenant-ID': 'acme' });
      expect(res.status).to.equal(200);
    }
  });

  it('answers 400 with errors[] for a key but no tenant, and for a malformed tenant', async () => {
    let res = await call('?user_id=alice', { 'X-Internal-API-Key': KEY_A });
    expect(res.status).to.equal(400);
    expect(res.body.errors).to.deep.equal([{ field: 'X-Tenant-ID', code: 'required', description: 'X-Tenant-ID is required' }]);
    res = await call('?user_id=alice', { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'bad tenant!' });
    expect(res.status).to.equal(400);
    expect(res.body.errors[0]).to.include({ field: 'X-Tenant-ID', code: 'format' });
  });

  it('answers 400 naming user_id when it is missing, empty, repeated or has control characters', async () => {
    let res = await call('');
    expect(res.status).to.equal(400);
    expect(res.body.detail).to.equal('user_id is required');
    expect(res.body.errors).to.deep.include({ field: 'user_id', code: 'required', description: 'user_id is required' });
    for (const q of ['?user_id=', '?user_id=a&user_id=b', '?user_id=a%00b', `?user_id=${'x'.repeat(129)}`]) {
      res = await call(q);
      expect(res.status, q).to.equal(400);
      expect(res.body.errors[0].field, q).to.equal('user_id');
    }
  });

  it('returns the seed 000 envelope: items, total, pagination, timestamp; TOTP devices of that tenant and user only', async () => {
    const res = await call('?user_id=alice');
    expect(res.status).to.equal(200);
    expect(res.headers['content-type']).to.match(/^application\/json/);
    expect(res.body).to.include({ code: 0, message: 'success', total: 25 });
    expect(res.body.timestamp).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(res.body.pagination).to.deep.equal({ page: 1, page_size: 20, total: 25, total_pages: 2, has_next: true, has_prev: false });
    expect(res.body.items).to.have.length(20);
    const first = res.body.items[0];
    expect(first).to.deep.equal({
      device_id: ids[24],
      device_name: 'Phone 24',
      enabled: true,
      verified: true,
      created_at: '2026-05-12T12:00:24Z',
      last_used_at: '2026-05-12T12:01:39Z',
    });
    expect(res.body.items[1]).not.to.have.property('last_used_at');
    const names = (res.body.items as Array<{ device_name: string }>).map((i) => i.device_name);
    expect(names).not.to.include.members(['SMS', 'Bob phone', 'Other tenant']);
  });

  it('pages are disjoint and complete, newest first', async () => {
    const p1 = await call('?user_id=alice&page=1&page_size=10');
    const p2 = await call('?user_id=alice&page=2&page_size=10');
    const p3 = await call('?user_id=alice&page=3&page_size=10');
    const p4 = await call('?user_id=alice&page=4&page_size=10');
    const all = [...p1.body.items, ...p2.body.items, ...p3.body.items].map((i: { device_id: string }) => i.device_id);
    expect(all).to.deep.equal([...ids].reverse());
    expect(p3.body.pagination).to.include({ has_next: false, has_prev: true, total_pages: 3 });
    expect(p4.body.items).to.deep.equal([]);
    expect(p4.body.total).to.equal(25);
  });

  it('rejects page 0, negative, non-integer and over-max page_size with errors[]', async () => {
    for (const q of ['page=0', 'page=-1', 'page=1.5', 'page=abc', 'page_size=0', 'page_size=101', 'page_size=1e3', 'page=1&page=2']) {
      const res = await call(`?user_id=alice&${q}`);
      expect(res.status, q).to.equal(400);
      expect(res.body.errors, q).to.be.an('array').that.is.not.empty;
      expect(res.body.errors[0].field, q).to.match(/^page(_size)?$/);
    }
  });

  it('shows another tenant nothing of this one', async () => {
    const res = await call('?user_id=bob', { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'other' });
    expect(res.status).to.equal(200);
    expect(res.body.items).to.deep.equal([]);
    expect(res.body.total).to.equal(0);
  });
});
