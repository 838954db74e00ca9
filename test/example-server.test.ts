/** The example server as a user starts it: production refuses to start without its secrets. */
import { spawn } from 'node:child_process';
import { expect } from 'chai';

function runServer(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/server.ts'], {
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
});
