/** I-JSON (RFC 7493 §2.3): a body naming a member twice in one object is a 400 on every route, and changes nothing. */
import { expect } from 'chai';
import fc from 'fast-check';
import { pino } from 'pino';
import request from 'supertest';
import { createExampleApp } from '../examples/app.js';
import { firstDuplicateMember } from '../lib/duplicate-members.js';
import { KEY_A, migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { as, JWT_SECRET, oathtool, TestClock } from './support/mfa.js';

describe('duplicate member names (I-JSON)', () => {
  describe('firstDuplicateMember', () => {
    it('finds a name repeated in one object, at any depth, compared after unescaping', () => {
      expect(firstDuplicateMember('{"user_id":"alice","user_id":"bob"}')).to.equal('user_id');
      expect(firstDuplicateMember('{"a":1,"b":{"c":[1,{"d":true,"d":null}]}}')).to.equal('d');
      expect(firstDuplicateMember('[{"a":1},{"a":2},{"x":{"a":3,"a":4}}]')).to.equal('a');
      expect(firstDuplicateMember('{"\\u0061":1,"a":2}')).to.equal('a');
      expect(firstDuplicateMember('{"a\\"b":1,"a\\u0022b":2}')).to.equal('a"b');
      expect(firstDuplicateMember(' { "k" : 1 ,\n\t"k" : 2 } ')).to.equal('k');
      // body-parser drops a leading byte order mark before the parse: the scan must not read it as a value.
      expect(firstDuplicateMember('\uFEFF{"a":1,"a":2}')).to.equal('a');
    });

    it('does not mistake values, strings holding braces or quotes, or the same name in sibling objects for repeats', () => {
      for (const text of [
        '{"a":"a","b":"a"}',
        '{"a":"{\\"a\\":1,\\"a\\":2}","b":["a","a"]}',
        '[{"a":1},{"a":2}]',
        '{"a":{"a":{"a":1}}}',
        '{"a":1,"A":2,"a ":3}',
        '{"":1,"\\u0000":2}',
        '{}',
        '[]',
        '"x"',
        '12',
      ]) {
        expect(firstDuplicateMember(text), text).to.equal(undefined);
      }
    });

    it('leaves text that is not JSON to the parser (no throw, no false repeat)', () => {
      for (const text of ['{"a":1,"a', '{"a\\', '{"\\x":1,"\\x":2}', '{{{{', '}}]]', '', '"', '{"a":1,,,"b":2}']) {
        expect(() => firstDuplicateMember(text), text).not.to.throw();
      }
      expect(firstDuplicateMember('{"\\x":1,"\\x":2}')).to.equal(undefined); // a bad escape: the parser refuses it
    });

    it('property: JSON.stringify never repeats a name; appending an existing name to any object is found', () => {
      fc.assert(
        fc.property(fc.json({ depthSize: 'small' }), (text) => {
          expect(firstDuplicateMember(text)).to.equal(undefined);
        }),
        { numRuns: 300 },
      );
      fc.assert(
        fc.property(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1, maxKeys: 6 }), fc.nat(), (object, pick) => {
          const keys = Object.keys(object);
          const repeated = keys[pick % keys.length]!;
          const text = JSON.stringify(object);
          const withRepeat = `${text.slice(0, -1)},${JSON.stringify(repeated)}:0}`;
          expect(firstDuplicateMember(withRepeat)).to.equal(repeated);
        }),
        { numRuns: 300 },
      );
    });
  });

  describe('over HTTP (the example app on real Postgres)', () => {
    let db: TestDb;
    let app: ReturnType<typeof createExampleApp>;
    const internal = { 'X-Internal-API-Key': KEY_A, 'X-Tenant-ID': 'acme', 'Content-Type': 'application/json' };

    before(async () => {
      db = await migratedStorage();
      app = createExampleApp({ storage: db.storage, codeSender: { send() {} }, internalKeys: [KEY_A], keyRing: ring, jwtSecret: JWT_SECRET, logger: pino({ level: 'silent' }) });
    });
    after(async () => {
      await db.drop();
    });

    const expectDuplicate = (res: request.Response, member: string) => {
      expect(res.status, res.text).to.equal(400);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      expect(res.body.errors).to.deep.equal([{ field: '(body)', code: 'duplicate', description: `(body): the member "${member}" is given more than once in one object` }]);
    };

    it('internal verify with user_id twice: 400, and the code still works once for the real user', async () => {
      const clock = new TestClock(Date.now());
      const enrol = await as(request(app).post('/auth/mfa/devices/totp').send({ deviceName: 'Phone' }), 'dup-alice');
      const secret = enrol.body.secret as string;
      expect((await as(request(app).post(`/auth/mfa/devices/${enrol.body.device.id}/verify`).send({ code: oathtool(secret, clock.ms) }), 'dup-alice')).status).to.equal(200);
      const code = oathtool(secret, clock.ms + 30_000);
      const res = await request(app).post('/internal/mfa/totp/verify').set(internal).send(`{"user_id":"dup-mallory","user_id":"dup-alice","code":"${code}"}`);
      expectDuplicate(res, 'user_id');
      const ok = await request(app).post('/internal/mfa/totp/verify').set(internal).send(`{"user_id":"dup-alice","code":"${code}"}`);
      expect(ok.status, ok.text).to.equal(200);
    });

    it('trusting a device with a repeated member stores nothing; a vault entry with a repeated field stores nothing', async () => {
      const res = await request(app).post('/internal/session/trusted-devices').set(internal).send('{"user_id":"dup-bob","device_fingerprint":"fp","ttl_seconds":60,"ttl_seconds":2592000}');
      expectDuplicate(res, 'ttl_seconds');
      const withBom = await request(app).post('/internal/session/trusted-devices').set(internal).send('\uFEFF{"user_id":"dup-bob","device_fingerprint":"fp","ttl_seconds":60,"ttl_seconds":2592000}');
      expectDuplicate(withBom, 'ttl_seconds');
      expect((await request(app).get('/internal/session/trusted-devices?user_id=dup-bob&include_expired=true').set(internal)).body.total).to.equal(0);

      const push = await as(
        request(app).post('/mfa/devices/sync').set('Content-Type', 'application/json').send('{"device_fingerprint":"p1","device_name":"P","totp_devices":[{"secret":"JBSWY3DPEHPK3PXP","issuer":"A","issuer":"B"}]}'),
        'dup-bob',
      );
      expectDuplicate(push, 'issuer');
      expect((await as(request(app).get('/mfa/devices/sync'), 'dup-bob')).body.total).to.equal(0);
      // The user routers too: a strict body of seed 003.
      expectDuplicate(await as(request(app).post('/auth/mfa/devices/totp').set('Content-Type', 'application/json').send('{"deviceName":"A","deviceName":"B"}'), 'dup-bob'), 'deviceName');
      expect((await as(request(app).get('/auth/mfa/devices'), 'dup-bob')).body).to.deep.equal([]);
    });

    it('a repeated name is quoted safely and cut short in the answer', async () => {
      const name = `${'n'.repeat(60)}\u202E`;
      const res = await request(app).post('/internal/session/trusted-devices').set(internal).send(`{${JSON.stringify(name)}:1,${JSON.stringify(name)}:2}`);
      expect(res.status).to.equal(400);
      expect(res.body.errors[0].description).to.equal(`(body): the member "${'n'.repeat(40)}…" is given more than once in one object`);
    });
  });
});
