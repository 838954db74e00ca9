/** The example server as a user starts it: production refuses to start without its secrets; development prints only what it generated. */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { EXAMPLE_SERVER_ARGS, ROOT } from './support/example-process.js';
import { aad, keyRing, knexStorage } from '../index.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';
import { ENCRYPTION_KEYS, insertDevice } from './support/fixtures.js';
import { insertTrusted } from './support/trusted.js';

/** Starts the server in `cwd` and stops it once its output matches `until`; resolves with that output. */
function outputUntil(env: Record<string, string>, cwd: string, until: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, EXAMPLE_SERVER_ARGS, {
      cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (until.test(output)) child.kill('SIGTERM');
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('exit', () => {
      clearTimeout(timer);
      if (until.test(output)) resolve(output);
      else reject(new Error(`the server's output never matched ${String(until)}:\n${output}`));
    });
  });
}

function runServer(env: Record<string, string>): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, EXAMPLE_SERVER_ARGS, {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

/** A fresh database and an empty working directory for one test's server runs; both removed after `run`, whatever it did. */
async function withDatabaseAndDir(prefix: string, run: (db: FreshDatabase, cwd: string) => Promise<void>): Promise<void> {
  const db = await freshDatabase();
  const cwd = await mkdtemp(path.join(os.tmpdir(), prefix));
  try {
    await run(db, cwd);
  } finally {
    await rm(cwd, { recursive: true, force: true });
    await db.drop();
  }
}

describe('npm start', () => {
  // A process manager or `docker stop` signals npm, not the server: npm passes SIGTERM to its child only, and a shell
  // between the two would die of it and leave the server running on its own (the start script `exec`s).
  it('stops the server cleanly when npm itself gets SIGTERM', async function () {
    this.timeout(60_000);
    const db = await freshDatabase();
    let serverPid: number | undefined;
    try {
      const child = spawn('npm', ['start'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', DATABASE_URL: db.url, PORT: '0', JWT_SECRET: 'npm-start-test-secret-0123456789', INTERNAL_API_KEYS: 'npm-start-test-key-0123456789', MFA_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 3).toString('base64')}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the server did not start:\n${output}`)), 30_000);
        const onData = (d: Buffer) => {
          output += d.toString();
          if (/example server listening/.test(output)) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
      });
      serverPid = Number(/"pid":(\d+)/.exec(output)?.[1]);
      expect(serverPid, 'the server logs its pid').to.be.above(0);
      child.kill('SIGTERM');
      await exited;
      const deadline = Date.now() + 10_000;
      while (!/"msg":"stopped"/.test(output) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(output, 'the server said it stopped').to.match(/"msg":"shutting down[^"]*".*\n.*"msg":"stopped"/s);
      const alive = () => {
        try {
          process.kill(serverPid!, 0);
          return true;
        } catch {
          return false;
        }
      };
      while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(alive(), 'the server process is gone').to.equal(false);
      serverPid = undefined;
    } finally {
      // Should it have been left running (the failure this test is for), it goes now.
      if (serverPid !== undefined) {
        try {
          process.kill(serverPid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await db.drop();
    }
  });
});

describe('example server start-up', () => {
  it('refuses to start in production while a secret is unset, naming it and printing no value', async () => {
    const { code, output } = await runServer({ NODE_ENV: 'production', JWT_SECRET: 'prod-jwt-secret-value-0123456789', PORT: '0' });
    expect(code).to.equal(1);
    expect(output).to.match(/refusing to start while INTERNAL_API_KEYS, MFA_ENCRYPTION_KEYS are unset/);
    expect(output).not.to.contain('prod-jwt-secret-value');
  });

  it('a list of nothing (",") is unset too: production refuses it rather than falling back to a random key', async () => {
    const { code, output } = await runServer({ NODE_ENV: 'production', JWT_SECRET: 'prod-jwt-secret-value-0123456789', INTERNAL_API_KEYS: ' , ', MFA_ENCRYPTION_KEYS: ',', PORT: '0' });
    expect(code).to.equal(1);
    expect(output).to.match(/refusing to start while INTERNAL_API_KEYS, MFA_ENCRYPTION_KEYS are unset/);
  });

  it('JWT_PUBLIC_KEY instead of JWT_SECRET: production starts with it (a one-line PEM with \\n); both at once, or one that is no key, refuse to start', async function () {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const secrets = { NODE_ENV: 'production', INTERNAL_API_KEYS: 'prod-internal-key-0123456789', MFA_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}`, PORT: '0' };
    let run = await runServer({ ...secrets, JWT_SECRET: 'prod-jwt-secret-value-0123456789', JWT_PUBLIC_KEY: publicKey });
    expect(run.code).to.equal(1);
    expect(run.output).to.match(/set JWT_SECRET \(HS256 tokens\) or JWT_PUBLIC_KEY \(RS256 \/ ES256 tokens\), not both/);
    run = await runServer({ ...secrets, JWT_PUBLIC_KEY: 'not-a-key-at-all' });
    expect(run.code).to.equal(1);
    expect(run.output).to.match(/jwt.publicKey is not usable key material/);
    const db = await freshDatabase();
    try {
      const cwd = await mkdtemp(path.join(os.tmpdir(), 'mfa-kit-pem-'));
      const output = await outputUntil({ ...secrets, DATABASE_URL: db.url, JWT_PUBLIC_KEY: publicKey.trim().replaceAll('\n', '\\n') }, cwd, /server listening/);
      expect(output).not.to.match(/refusing to start|Generated for this run/);
      await rm(cwd, { recursive: true, force: true });
    } finally {
      await db.drop();
    }
  });

  it('refuses, naming the variable and never its value, what would start wrong: LOG_LEVEL, NODE_ENV without secrets, REDIS_URL, DATABASE_URL, a private JWT key, CLEANUP_KEEP_LAST alone, a DB timeout past an hour', async function () {
    this.timeout(60_000);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ LOG_LEVEL: 'verbose' }, /LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent/],
      [{ NODE_ENV: 'staging' }, /NODE_ENV=staging: refusing to start while JWT_SECRET, INTERNAL_API_KEYS, MFA_ENCRYPTION_KEYS are unset \(secrets are generated only in development/],
      [{ REDIS_URL: '127.0.0.1:6379/7' }, /REDIS_URL must be a URL like redis:\/\//],
      [{ REDIS_URL: 'http://127.0.0.1:6379/7' }, /REDIS_URL must be a URL like/],
      [{ REDIS_URL: 'redis://127.0.0.1:6379/seven' }, /REDIS_URL must be a URL like/],
      [{ DATABASE_URL: 'not-a-url-pass-w0rd' }, /DATABASE_URL must be a URL like postgres:\/\//],
      [{ DATABASE_URL: 'postgres://u:pass-w0rd@127.0.0.1:port/db' }, /DATABASE_URL must be a URL like/],
      [{ JWT_PUBLIC_KEY: privateKey }, /JWT_PUBLIC_KEY holds a private key/],
      [{ CLEANUP_KEEP_LAST: '30d' }, /CLEANUP_KEEP_LAST needs CLEANUP_EVERY/],
      [{ DATABASE_URL: 'postgres://u@127.0.0.1:1/db', DB_ACQUIRE_TIMEOUT_MS: '3000000000' }, /DB_ACQUIRE_TIMEOUT_MS must be an integer from 1 to 3600000 \(milliseconds\)/],
    ];
    for (const [env, message] of cases) {
      const run = await runServer({ ...env, PORT: '0' });
      const what = JSON.stringify(env).slice(0, 80);
      expect(run.code, `${what}: ${run.output}`).to.equal(1);
      expect(run.output, what).to.match(message);
      expect(run.output, what).not.to.match(/\n\s+at |Generated for this run|pass-w0rd|PRIVATE KEY/);
    }
  });

  it('refuses to start while stored secrets are sealed under a key id MFA_ENCRYPTION_KEYS does not hold (a key dropped too early); starts with it', async function () {
    this.timeout(60_000);
    await withDatabaseAndDir('mfa-kit-keys-', async (db, cwd) => {
      const storage = knexStorage({ knex: db.knex });
      await storage.migrate();
      await insertDevice(db.knex, { tenantId: 'acme', userId: 'alice', method: 'totp', secret: 'JBSWY3DPEHPK3PXP' }); // sealed under k2, the fixture ring's first
      const secrets = { DATABASE_URL: db.url, JWT_SECRET: 'keys-test-jwt-secret-0123456789', INTERNAL_API_KEYS: 'keys-test-internal-key-0123456789', PORT: '0' };
      const other = `k3:${Buffer.alloc(32, 3).toString('base64')}`;
      const run = await runServer({ ...secrets, MFA_ENCRYPTION_KEYS: other });
      expect(run.code, run.output).to.equal(1);
      expect(run.output).to.match(/MFA_ENCRYPTION_KEYS holds no key with id k2, under which 1 stored secret\(s\) are sealed \(1 in mfa_devices\)/);
      expect(run.output).not.to.contain(Buffer.alloc(32, 3).toString('base64'));
      // Every secret set but NODE_ENV unset: it starts, and says that codes are printed, not sent.
      const started = await outputUntil({ ...secrets, MFA_ENCRYPTION_KEYS: `${other},${ENCRYPTION_KEYS[0]!}` }, cwd, /development mode: sms\/email codes are printed on stdout/);
      expect(started).to.match(/server listening/).and.not.to.match(/holds no key/);
      // Development with a generated key (id 'dev', new each run) over rows an earlier run sealed: a warning, not a refusal.
      await db.knex('mfa_devices').delete();
      const earlier = keyRing([`dev:${Buffer.alloc(32, 6).toString('base64')}`]);
      const id = randomUUID();
      const sealed = earlier.seal('JBSWY3DPEHPK3PXP', aad('acme', 'bob', id));
      await db.knex('mfa_devices').insert({ tenant_id: 'acme', id, user_id: 'bob', method: 'totp', device_name: 'Phone', secret_key_id: sealed.keyId, secret_ciphertext: sealed.data, totp_algorithm: 'SHA1', totp_digits: 6, totp_period: 30 });
      expect(await outputUntil(secrets, cwd, /server listening/)).to.match(/rows sealed under key id dev do not open with this run's generated key/);
      await db.knex('mfa_devices').delete();
      await insertDevice(db.knex, { tenantId: 'acme', userId: 'alice', method: 'totp', secret: 'JBSWY3DPEHPK3PXP' });
      // The right id with another key (mistyped, generated anew): refused too, naming the id, never a key.
      const wrong = `k2:${Buffer.alloc(32, 5).toString('base64')}`;
      const mistyped = await runServer({ ...secrets, MFA_ENCRYPTION_KEYS: wrong });
      expect(mistyped.code, mistyped.output).to.equal(1);
      expect(mistyped.output).to.match(/the key with id k2 opens none of the stored secrets sealed under that id \(1 tried in mfa_devices\)/);
      expect(mistyped.output).not.to.contain(Buffer.alloc(32, 5).toString('base64'));
    });
  });

  it('an empty HOST, PORT or LOG_LEVEL is an unset one (127.0.0.1, 3000, info), not every interface or a random port', async function () {
    this.timeout(40_000);
    await withDatabaseAndDir('mfa-kit-empty-', async (db, cwd) => {
      const output = await outputUntil({ DATABASE_URL: db.url, HOST: '', PORT: ' ', LOG_LEVEL: '' }, cwd, /server listening/);
      expect(output).to.contain('"url":"http://127.0.0.1:3000"');
    });
  });

  it('an option the app refuses stops the start before the schema changes; a failure to migrate is logged without its SQL', async function () {
    this.timeout(40_000);
    const db = await freshDatabase();
    try {
      const run = await runServer({ DATABASE_URL: db.url, JWT_SECRET: 'short', PORT: '0' });
      expect(run.code, run.output).to.equal(1);
      expect(run.output).to.match(/failed to start/).and.match(/jwt\.secret/).and.not.match(/migrations applied/);
      const tables = await db.knex.raw<{ rows: unknown[] }>("select 1 from information_schema.tables where table_name like 'mfa_%'");
      expect(tables.rows).to.deep.equal([]);
      // A role that may not create tables (Postgres 15: none may in public but its owner): the migration fails.
      const role = `mfa_ro_${db.name.slice(-8)}`;
      await db.knex.raw(`create role ${role} login password 'ro-pass-w0rd'`);
      try {
        const url = new URL(db.url);
        [url.username, url.password] = [role, 'ro-pass-w0rd'];
        await db.knex.raw(`revoke create on schema public from public`);
        const refused = await runServer({ DATABASE_URL: url.toString(), PORT: '0' });
        expect(refused.code, refused.output).to.equal(1);
        expect(refused.output).to.match(/failed to start/).and.match(/permission denied/);
        expect(refused.output).not.to.match(/create table|ro-pass-w0rd/i);
      } finally {
        await db.knex.raw(`drop owned by ${role}`).catch(() => undefined);
        await db.knex.raw(`drop role if exists ${role}`).catch(() => undefined);
      }
    } finally {
      await db.drop();
    }
  });

  it('refuses a malformed encryption key at start-up with the fix in the message', async () => {
    const { code, output } = await runServer({
      NODE_ENV: 'production',
      JWT_SECRET: 'prod-jwt-secret-value-0123456789',
      INTERNAL_API_KEYS: 'prod-internal-key-0123456789',
      MFA_ENCRYPTION_KEYS: `k1:${Buffer.alloc(16).toString('base64')}`,
      PORT: '0',
    });
    expect(code).to.equal(1);
    expect(output).to.match(/16 bytes; AES-256-GCM needs exactly 32 bytes/);
  });

  it('refuses a REQUEST_LOG that is neither on nor off', async () => {
    const { code, output } = await runServer({ REQUEST_LOG: 'no', PORT: '0' });
    expect(code).to.equal(1);
    expect(output).to.match(/REQUEST_LOG must be on or off/);
  });

  it('refuses a READYZ_CACHE that is neither required nor optional', async () => {
    const { code, output } = await runServer({ READYZ_CACHE: 'maybe', PORT: '0' });
    expect(code).to.equal(1);
    expect(output).to.match(/READYZ_CACHE must be required or optional/);
  });

  it('STEP_UP_AMR turns step-up on (a bad value refuses to start, STEP_UP_MAX_AGE needs it); production without it says what that leaves open', async function () {
    this.timeout(40_000);
    let run = await runServer({ STEP_UP_MAX_AGE: '15m', PORT: '0' });
    expect(run.code).to.equal(1);
    expect(run.output).to.match(/STEP_UP_MAX_AGE needs STEP_UP_AMR/);
    run = await runServer({ STEP_UP_AMR: 'mfa', STEP_UP_MAX_AGE: 'soon', PORT: '0' });
    expect(run.code).to.equal(1);
    expect(run.output).to.match(/STEP_UP_MAX_AGE must be a duration/);
    await withDatabaseAndDir('mfa-kit-stepup-', async (db, cwd) => {
      run = await runServer({ DATABASE_URL: db.url, STEP_UP_AMR: 'mfa,"otp"', PORT: '0' });
      expect(run.code).to.equal(1);
      expect(run.output).to.match(/failed to start/).and.match(/stepUp\.amr/);
      const production = { NODE_ENV: 'production', DATABASE_URL: db.url, JWT_SECRET: 'prod-jwt-secret-value-0123456789', INTERNAL_API_KEYS: 'prod-internal-key-0123456789', MFA_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}`, PORT: '0' };
      expect(await outputUntil(production, cwd, /server listening/)).to.match(/STEP_UP_AMR is unset: any valid user token may change/);
      expect(await outputUntil({ ...production, STEP_UP_AMR: 'mfa, hwk', STEP_UP_MAX_AGE: '15m' }, cwd, /server listening/)).not.to.match(/STEP_UP_AMR is unset/);
    });
  });

  it('refuses a CLEANUP_EVERY or CLEANUP_KEEP_LAST that is not a duration', async () => {
    let res = await runServer({ CLEANUP_EVERY: '0s', PORT: '0' });
    expect(res.code, `${res.signal ?? ''} ${res.output}`).to.equal(1);
    expect(res.output).to.match(/CLEANUP_EVERY must be a duration from 1 to 604800 s/);
    // Past setInterval's limit (24.8 days) Node would fire every millisecond.
    res = await runServer({ CLEANUP_EVERY: '30d', PORT: '0' });
    expect(res.code, `${res.signal ?? ''} ${res.output}`).to.equal(1);
    res = await runServer({ CLEANUP_EVERY: '1h', CLEANUP_KEEP_LAST: 'a month', PORT: '0' });
    expect(res.code, `${res.signal ?? ''} ${res.output}`).to.equal(1);
    expect(res.output).to.match(/CLEANUP_KEEP_LAST must be a duration/);
  });

  it('with REDIS_URL on a port where nothing listens: starts, and logs the failed connects as its own lines (never ioredis\'s "Unhandled error event" on stderr)', async function () {
    this.timeout(40_000);
    await withDatabaseAndDir('mfa-kit-dev-', async (db, cwd) => {
      const output = await outputUntil({ DATABASE_URL: db.url, REDIS_URL: 'redis://127.0.0.1:1', PORT: '0' }, cwd, /example server listening/);
      expect(output).not.to.include('Unhandled error event');
      expect(output).not.to.match(/ECONNREFUSED[^\n]*\n\s+at /);
      expect(output).to.include('redis cache: connection error (checks answer from the database meanwhile)');
    });
  });

  it('CLEANUP_EVERY: sweeps at start-up (and then on that interval), keeping CLEANUP_KEEP_LAST, and logs the counts', async function () {
    this.timeout(40_000);
    await withDatabaseAndDir('mfa-kit-dev-', async (db, cwd) => {
      await knexStorage({ knex: db.knex }).migrate();
      const day = 86_400_000;
      const old = await insertTrusted(db.knex, { tenantId: 'acme', userId: 'u', trustedUntil: new Date(Date.now() - 3 * day) });
      const recent = await insertTrusted(db.knex, { tenantId: 'acme', userId: 'u', trustedUntil: new Date(Date.now() - 3_600_000) });
      const live = await insertTrusted(db.knex, { tenantId: 'acme', userId: 'u' });
      const output = await outputUntil({ DATABASE_URL: db.url, PORT: '0', CLEANUP_EVERY: '1h', CLEANUP_KEEP_LAST: '1d' }, cwd, /retention sweep: deleted what expired/);
      const line = output.split('\n').find((l) => l.includes('retention sweep'))!;
      expect(JSON.parse(line)).to.deep.include({ deleted: { trusted_devices: 1, mfa_devices: 0, mfa_otp_codes: 0, mfa_verification_failures: 0 }, keep_last_seconds: 86_400 });
      const left = await db.knex<{ id: string }>('trusted_devices').select('id');
      expect(left.map((r) => r.id)).to.have.members([recent, live]).and.not.include(old);
    });
  });

  it('in development prints the secrets it generated, never a key the operator set (not even in its curl examples)', async function () {
    this.timeout(40_000);
    await withDatabaseAndDir('mfa-kit-dev-', async (db, cwd) => {
      const operatorKey = 'operator-internal-key-0123456789abcdef';
      const output = await outputUntil({ DATABASE_URL: db.url, INTERNAL_API_KEYS: operatorKey, PORT: '0' }, cwd, /trusted-devices\/check\?user_id=alice&device_fingerprint=fp1'\n/);
      expect(output).to.match(/Generated for this run \(set them to keep them\): JWT_SECRET, MFA_ENCRYPTION_KEYS\n/);
      expect(output).to.match(/\n {2}JWT_SECRET=\S{20,}\n/);
      expect(output).not.to.contain(operatorKey);
      expect(output).to.contain("-H 'X-Internal-API-Key: <one of your INTERNAL_API_KEYS>'");
    });
  });
});
