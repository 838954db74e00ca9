/** `npm run demo` cannot rot: `runDemo()` walks its whole flow against the example app on 127.0.0.1, and the dev-secrets file it reads is written as promised. */
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { createExampleApp } from '../examples/app.js';
import { readDevSecrets, writeDevSecrets } from '../examples/dev-secrets.js';
import { memoryCache } from '../index.js';
import { DemoError, runDemo } from '../scripts/demo.js';
import { KEY_A, migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { JWT_SECRET } from './support/mfa.js';

describe('npm run demo (scripts/demo.ts) against the example app', () => {
  let db: TestDb;
  let server: Server;
  let baseUrl: string;

  before(async () => {
    db = await migratedStorage();
    const app = createExampleApp({ storage: db.storage, cache: memoryCache(), internalKeys: [KEY_A], keyRing: ring, jwtSecret: JWT_SECRET, logger: pino({ level: 'silent' }) });
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await db?.drop();
  });

  it('walks enrol → verify → remember → identity check → vault sync with a 409 → revoke', async () => {
    const lines: string[] = [];
    await runDemo({ baseUrl, internalKey: KEY_A, jwtSecret: JWT_SECRET, userId: 'demo-test', log: (l) => lines.push(l) });
    const out = lines.join('\n');
    expect(out).to.match(/POST \/auth\/mfa\/devices\/totp → 201/);
    expect(out).to.match(/▄/, 'the QR code is drawn');
    expect(out).to.match(/sending it again: Invalid or expired code\./);
    expect(out).to.match(/POST \/auth\/mfa\/verify → 200/);
    expect(out).to.match(/"trusted":true/);
    expect(out).to.match(/POST \/mfa\/devices\/sync → 409/);
    expect(out).to.match(/the identity service's check → \{"trusted":false\}/);
    expect(out).to.match(/Done: every answer was the expected one\.$/);
    expect(out).not.to.contain(KEY_A);
    expect(out).not.to.contain(JWT_SECRET);
  });

  it('fails with a DemoError naming the cause when the JWT secret is not the server one', async () => {
    const err = await runDemo({ baseUrl, internalKey: KEY_A, jwtSecret: 'not-the-server-secret-0123456789', log: () => undefined }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(DemoError);
    expect((err as Error).message).to.match(/expected 201, got 401.*JWT_SECRET/);
  });

  it('reads and writes .data/dev-secrets.json with mode 0600', () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'mfa-kit-secrets-')), '.data', 'dev-secrets.json');
    expect(readDevSecrets(file)).to.deep.equal({});
    writeDevSecrets({ JWT_SECRET: 'a-jwt-secret-0123456789', MFA_ENCRYPTION_KEYS: 'dev:abc' }, file);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    expect(readDevSecrets(file)).to.deep.equal({ JWT_SECRET: 'a-jwt-secret-0123456789', MFA_ENCRYPTION_KEYS: 'dev:abc' });
    expect(JSON.parse(readFileSync(file, 'utf8'))).to.not.have.property('INTERNAL_API_KEYS');
    writeFileSync(file, 'not json');
    expect(() => readDevSecrets(file)).to.throw(/not valid JSON: delete it/);
  });
});
