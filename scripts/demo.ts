/**
 * `npm run demo`: walks the whole flow against a running `npm start` and prints each step — enrol a
 * TOTP device (QR code in the terminal), verify it, log in with "remember this device", check the
 * browser from the identity service, sync a vault between two devices, revoke. Exits non-zero on any
 * unexpected answer. test/demo.test.ts runs `runDemo()` against the example app so it cannot rot.
 *
 *   DEMO_URL     the server (default http://127.0.0.1:3000)
 *   INTERNAL_API_KEYS, JWT_SECRET   as the server has them; default: .data/dev-secrets.json, which
 *                the example server writes when it generates them in development
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import jwt from 'jsonwebtoken';
import QRCode from 'qrcode';
import { internalApi } from '../examples/identity-service-client.js';
import { DEV_SECRETS_FILE, readDevSecrets } from '../examples/dev-secrets.js';
import { createTotp } from '../lib/totp.js';
import type { TotpAlgorithm, TotpParams } from '../storage/types.js';

export interface DemoOptions {
  /** Where the example server listens, e.g. `http://127.0.0.1:3000`. */
  baseUrl: string;
  /** One of the server's internal API keys. */
  internalKey: string;
  /** The server's HS256 key for user tokens. */
  jwtSecret: string;
  /** @default 'acme' */
  tenantId?: string;
  /** A fresh user per run, so the demo can run again and again. @default `demo-<random>` */
  userId?: string;
  /** Where the narration goes, line by line. @default console.log */
  log?: (line: string) => void;
  /** Print the QR code (terminal art). @default true */
  qr?: boolean;
}

/** An answer the demo did not expect. */
export class DemoError extends Error {
  override name = 'DemoError';
}

interface Answer {
  status: number;
  body: unknown;
  headers: Headers;
}

/** Field of a JSON object answer (the demo checks every one it relies on). */
function field<T>(answer: Answer, name: string, type: 'string' | 'boolean' | 'object'): T {
  const value = (answer.body as Record<string, unknown> | undefined)?.[name];
  if (typeof value !== type || value === null) throw new DemoError(`expected "${name}" (${type}) in ${JSON.stringify(answer.body)}`);
  return value as T;
}

/** The TOTP parameters in an `otpauth://` URI (RFC 6238 defaults where it names none). */
function totpParams(otpauthUrl: string): TotpParams {
  const q = new URL(otpauthUrl).searchParams;
  return { algorithm: (q.get('algorithm') ?? 'SHA1').toUpperCase() as TotpAlgorithm, digits: Number(q.get('digits') ?? 6), period: Number(q.get('period') ?? 30), skew: 1 };
}

/** Runs the whole flow; resolves when every answer was the expected one, rejects with a `DemoError` otherwise. */
export async function runDemo(options: DemoOptions): Promise<void> {
  const log = options.log ?? ((line: string) => console.log(line));
  const base = options.baseUrl.replace(/\/+$/, '');
  const tenantId = options.tenantId ?? 'acme';
  const userId = options.userId ?? `demo-${randomBytes(3).toString('hex')}`;
  const email = `${userId}@example.com`;
  const userToken = jwt.sign({ sub: userId, tenant_id: tenantId, email }, options.jwtSecret, { algorithm: 'HS256', expiresIn: '10m' });
  const identity = internalApi({ baseUrl: `${base}/internal`, apiKey: options.internalKey, tenantId });
  const totp = createTotp();
  let n = 0;
  const step = (title: string) => log(`\n${++n}. ${title}`);
  const say = (line: string) => log(`   ${line}`);
  const ok = (line: string) => log(`   ✔ ${line}`);

  /** Calls a user route as `userId` and insists on the expected status. */
  const user = async (method: string, path: string, expected: number, body?: unknown): Promise<Answer> => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${userToken}`, ...(body !== undefined && { 'Content-Type': 'application/json' }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    const answer: Answer = { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as unknown), headers: res.headers };
    say(`${method} ${path} → ${res.status}`);
    if (res.status !== expected) {
      const detail = (answer.body as { detail?: string } | undefined)?.detail;
      throw new DemoError(`${method} ${path}: expected ${expected}, got ${res.status}${detail ? ` (${detail})` : ''}${res.status === 401 ? ': is JWT_SECRET the one the server uses?' : ''}`);
    }
    return answer;
  };

  log(`express-mfa-kit demo against ${base} — tenant "${tenantId}", user "${userId}"`);

  step('Enrol a TOTP device (POST /auth/mfa/devices/totp)');
  const enrolled = await user('POST', '/auth/mfa/devices/totp', 201, { deviceName: 'Demo phone' });
  const device = field<{ id: string; verified: boolean }>(enrolled, 'device', 'object');
  const secret = field<string>(enrolled, 'secret', 'string');
  const otpauthUrl = field<string>(enrolled, 'otpauthUrl', 'string');
  if (device.verified) throw new DemoError('a new device must start unverified');
  say(`device ${device.id}, not verified yet`);
  say(`secret ${secret} (shown once; stored encrypted with the key ring)`);
  say(otpauthUrl);
  if (options.qr !== false) {
    say('Scan it with an authenticator app if you like:');
    log((await QRCode.toString(otpauthUrl, { type: 'terminal', small: true })).trimEnd());
  }

  step('Compute the code, as the authenticator app does (RFC 6238)');
  const params = totpParams(otpauthUrl);
  const firstAt = Date.now();
  const firstStep = Math.floor(firstAt / 1000 / params.period);
  const firstCode = await totp.generate(secret, params, firstAt);
  say(`${params.algorithm}, ${params.digits} digits, ${params.period} s steps: code ${firstCode} (step ${firstStep})`);

  step('Verify the device with it (POST /auth/mfa/devices/:id/verify)');
  const verified = await user('POST', `/auth/mfa/devices/${device.id}/verify`, 200, { code: firstCode });
  if (field<boolean>(verified, 'verified', 'boolean') !== true) throw new DemoError('the device should be verified now');
  ok('verified: true — the device can be used at login');

  step('Log in: the second factor, with "remember this device" (POST /auth/mfa/verify)');
  say(`The code ${firstCode} is spent: each code is accepted once, even across instances.`);
  const replay = await user('POST', '/auth/mfa/verify', 400, { code: firstCode });
  ok(`sending it again: ${(replay.body as { detail?: string }).detail ?? 'refused'}`);
  // The server accepts ±1 step, so the authenticator's next code works already; no need to wait for it.
  const loginStep = Math.max(firstStep + 1, Math.floor(Date.now() / 1000 / params.period));
  const loginCode = await totp.generate(secret, params, loginStep * params.period * 1000);
  say(`The authenticator's next code is ${loginCode} (step ${loginStep}; the server accepts ±1 step).`);
  const browser = { fingerprint: `laptop-${randomBytes(4).toString('hex')}`, name: 'Demo laptop', type: 'desktop', browser: 'Firefox', os: 'Linux' };
  const login = await user('POST', '/auth/mfa/verify', 200, { code: loginCode, deviceId: device.id, rememberDevice: true, device: browser });
  const trusted = field<{ id: string; trustedUntil: string }>(login, 'trustedDevice', 'object');
  ok(`verified by ${field<string>(login, 'method', 'string')}; this browser (${browser.fingerprint}) is trusted until ${trusted.trustedUntil}`);

  step('The identity service checks the browser at the next login (GET /internal/session/trusted-devices/check)');
  const check = await identity.checkDevice(userId, browser.fingerprint);
  say(`X-Internal-API-Key + X-Tenant-ID: ${tenantId} → ${JSON.stringify(check)}`);
  if (!check.trusted || check.device_id !== trusted.id) throw new DemoError(`expected trusted: true for ${trusted.id}, got ${JSON.stringify(check)}`);
  ok('trusted: true — no code asked this time');
  const stranger = await identity.checkDevice(userId, 'some-other-browser');
  if (stranger.trusted) throw new DemoError('an unknown browser must not be trusted');
  ok(`an unknown browser → ${JSON.stringify(stranger)}`);

  step('Sync the authenticator vault between two devices (/mfa/devices/sync)');
  const entry = { secret, issuer: 'express-mfa-kit example', account: email };
  const created = await user('POST', '/mfa/devices/sync', 201, { device_fingerprint: 'demo-vault', device_name: 'Phone A', totp_devices: [entry] });
  const recordId = field<string>(created, 'id', 'string');
  const tokenA = field<string>(created, 'sync_token', 'string');
  ok(`phone A wrote the vault (1 entry, sealed with AES-256-GCM): ${recordId}, sync_token ${tokenA}`);
  const listed = await user('GET', '/mfa/devices/sync', 200);
  const record = (listed.body as { items?: Array<{ id: string; totp_devices: string; sync_token: string }> }).items?.find((r) => r.id === recordId);
  if (!record) throw new DemoError(`tablet B should see ${recordId}`);
  const entries = JSON.parse(record.totp_devices) as Array<Record<string, unknown>>;
  if (entries.length !== 1 || entries[0]?.secret !== secret) throw new DemoError(`tablet B read ${record.totp_devices}`);
  ok(`tablet B read it: ${entries.length} entry (${String(entries[0]?.issuer)}), sync_token ${record.sync_token}`);
  const added = { secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', issuer: 'GitHub', account: email };
  const updated = await user('POST', '/mfa/devices/sync', 200, { device_fingerprint: 'demo-vault', device_name: 'Phone A', totp_devices: [entry, added], sync_token: record.sync_token });
  const tokenB = field<string>(updated, 'sync_token', 'string');
  ok(`tablet B added an entry with that sync_token → 200, new sync_token ${tokenB}`);
  const stale = await user('POST', '/mfa/devices/sync', 409, { device_fingerprint: 'demo-vault', device_name: 'Phone A', totp_devices: [entry], sync_token: tokenA });
  if ((stale.body as { sync_token?: string }).sync_token !== tokenB) throw new DemoError(`the 409 should name the current sync_token ${tokenB}`);
  ok(`phone A wrote with its stale token → 409 with the current one (${tokenB}): re-read, merge, retry — nothing lost`);
  const reread = await user('GET', `/mfa/devices/sync/${recordId}`, 200);
  const count = (JSON.parse(field<string>(reread, 'totp_devices', 'string')) as unknown[]).length;
  if (count !== 2) throw new DemoError(`the vault should hold 2 entries, holds ${count}`);
  ok(`the vault holds both entries (${count})`);

  step('Revoke the remembered browser (DELETE /auth/mfa/trusted-devices/:id)');
  await user('DELETE', `/auth/mfa/trusted-devices/${trusted.id}`, 204);
  const afterRevoke = await identity.checkDevice(userId, browser.fingerprint);
  if (afterRevoke.trusted) throw new DemoError(`a revoked browser must not be trusted, got ${JSON.stringify(afterRevoke)}`);
  ok(`the identity service's check → ${JSON.stringify(afterRevoke)}, at once`);

  log('\nDone: every answer was the expected one.');
}

/** The internal key and JWT secret: from the env, else from what the example server saved in development. */
function demoSecrets(): { internalKey: string; jwtSecret: string } {
  const saved = readDevSecrets();
  const internalKey = (process.env.INTERNAL_API_KEYS ?? saved.INTERNAL_API_KEYS ?? '').split(',')[0]?.trim() ?? '';
  const jwtSecret = process.env.JWT_SECRET?.trim() || saved.JWT_SECRET || '';
  const missing = [internalKey ? '' : 'INTERNAL_API_KEYS', jwtSecret ? '' : 'JWT_SECRET'].filter(Boolean);
  if (missing.length > 0) {
    const tokens = jwtSecret ? '' : ' (the demo signs HS256 user tokens: a server on JWT_PUBLIC_KEY cannot take them)';
    throw new DemoError(`${missing.join(' and ')} unknown: start the server first (npm start writes ${DEV_SECRETS_FILE} when it generates them), or set ${missing.join(' and ')} as the server has them${tokens}`);
  }
  return { internalKey, jwtSecret };
}

async function main(): Promise<void> {
  const baseUrl = process.env.DEMO_URL ?? 'http://127.0.0.1:3000';
  const health = await fetch(`${baseUrl}/healthz`).catch(() => undefined);
  if (!health?.ok) throw new DemoError(`no server answers at ${baseUrl}/healthz: run \`npm start\` in another terminal (or set DEMO_URL)`);
  await runDemo({ baseUrl, ...demoSecrets() });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(`\n✘ ${err instanceof DemoError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  });
}
