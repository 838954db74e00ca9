/** `npm run demo` cannot rot: `runDemo()` walks its whole flow against the example app on 127.0.0.1, and the dev-secrets file it reads is written as promised. */
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { createExampleApp } from '../examples/app.js';
import { readDevSecrets, reuseDevEncryptionKey, saveDevSecrets, writeDevSecrets } from '../examples/dev-secrets.js';
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

  it('saves what the server generated, never replaces a saved encryption key, and reuses it only without DATABASE_URL', () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'mfa-kit-secrets-')), 'dev-secrets.json');
    const all = ['JWT_SECRET', 'INTERNAL_API_KEYS', 'MFA_ENCRYPTION_KEYS'];
    saveDevSecrets(all, { JWT_SECRET: 'jwt-1', INTERNAL_API_KEYS: 'key-1', MFA_ENCRYPTION_KEYS: 'dev:first' }, file);
    saveDevSecrets(all, { JWT_SECRET: 'jwt-2', INTERNAL_API_KEYS: 'key-2', MFA_ENCRYPTION_KEYS: 'dev:second' }, file);
    expect(readDevSecrets(file)).to.deep.equal({ JWT_SECRET: 'jwt-2', INTERNAL_API_KEYS: 'key-2', MFA_ENCRYPTION_KEYS: 'dev:first' });
    saveDevSecrets(['INTERNAL_API_KEYS'], { JWT_SECRET: 'jwt-3', INTERNAL_API_KEYS: 'key-3', MFA_ENCRYPTION_KEYS: 'dev:third' }, file);
    expect(readDevSecrets(file)).to.deep.equal({ INTERNAL_API_KEYS: 'key-3', MFA_ENCRYPTION_KEYS: 'dev:first' });
    saveDevSecrets([], { JWT_SECRET: 'jwt-4', INTERNAL_API_KEYS: 'key-4', MFA_ENCRYPTION_KEYS: 'dev:fourth' }, file);
    expect(readDevSecrets(file)).to.deep.equal({ INTERNAL_API_KEYS: 'key-3', MFA_ENCRYPTION_KEYS: 'dev:first' });

    const saved = { DATABASE_URL: process.env.DATABASE_URL, MFA_ENCRYPTION_KEYS: process.env.MFA_ENCRYPTION_KEYS };
    try {
      delete process.env.MFA_ENCRYPTION_KEYS;
      process.env.DATABASE_URL = 'postgres://elsewhere/db';
      reuseDevEncryptionKey(file);
      expect(process.env.MFA_ENCRYPTION_KEYS).to.equal(undefined);
      delete process.env.DATABASE_URL;
      reuseDevEncryptionKey(file);
      expect(process.env.MFA_ENCRYPTION_KEYS).to.equal('dev:first');
      process.env.MFA_ENCRYPTION_KEYS = 'k9:set-by-the-user';
      reuseDevEncryptionKey(file);
      expect(process.env.MFA_ENCRYPTION_KEYS).to.equal('k9:set-by-the-user');
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});
