/** The example server as a user starts it: production refuses to start without its secrets; development prints only what it generated. */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { EXAMPLE_SERVER_ARGS } from './support/example-process.js';
import { freshDatabase } from './support/postgres.js';

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

function runServer(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
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
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('example server start-up', () => {
  it('refuses to start in production while a secret is unset, naming it and printing no value', async () => {
    const { code, output } = await runServer({ NODE_ENV: 'production', JWT_SECRET: 'prod-jwt-secret-value-0123456789', PORT: '0' });
    expect(code).to.equal(1);
    expect(output).to.match(/refusing to start while INTERNAL_API_KEYS, MFA_ENCRYPTION_KEYS are unset/);
    expect(output).not.to.contain('prod-jwt-secret-value');
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

  it('in development prints the secrets it generated, never a key the operator set (not even in its curl examples)', async function () {
    this.timeout(40_000);
    const db = await freshDatabase();
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'mfa-kit-dev-'));
    try {
      const operatorKey = 'operator-internal-key-0123456789abcdef';
      const output = await outputUntil({ DATABASE_URL: db.url, INTERNAL_API_KEYS: operatorKey, PORT: '0' }, cwd, /trusted-devices\/check\?user_id=alice&device_fingerprint=fp1'\n/);
      expect(output).to.match(/Generated for this run \(set them to keep them\): JWT_SECRET, MFA_ENCRYPTION_KEYS\n/);
      expect(output).to.match(/\n {2}JWT_SECRET=\S{20,}\n/);
      expect(output).not.to.contain(operatorKey);
      expect(output).to.contain("-H 'X-Internal-API-Key: <one of your INTERNAL_API_KEYS>'");
    } finally {
      await rm(cwd, { recursive: true, force: true });
      await db.drop();
    }
  });
});
