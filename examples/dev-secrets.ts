/**
 * `.data/dev-secrets.json` (mode 0600): the secrets the example server generated in development, so
 * `npm run demo` can call it, and the encryption key the embedded Postgres's rows are sealed with, so
 * devices enrolled yesterday still open after a restart. Never written with NODE_ENV=production.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Where the file lives (next to the embedded Postgres data). */
export const DEV_SECRETS_FILE = path.join('.data', 'dev-secrets.json');

/** Values in the same form as the env variables they stand for. */
export interface DevSecrets {
  JWT_SECRET?: string;
  INTERNAL_API_KEYS?: string;
  MFA_ENCRYPTION_KEYS?: string;
}

const NAMES = ['JWT_SECRET', 'INTERNAL_API_KEYS', 'MFA_ENCRYPTION_KEYS'] as const;

/** The saved secrets; `{}` when there is no file. A file that is not JSON is an error naming it. */
export function readDevSecrets(file: string = DEV_SECRETS_FILE): DevSecrets {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${file} is not valid JSON: delete it (the example server writes it again)`);
  }
  const secrets: DevSecrets = {};
  for (const name of NAMES) {
    const value = (parsed as Record<string, unknown> | null)?.[name];
    if (typeof value === 'string' && value.trim() !== '') secrets[name] = value;
  }
  return secrets;
}

/** Replaces the file (written whole, then renamed; readable by its owner only). */
export function writeDevSecrets(secrets: DevSecrets, file: string = DEV_SECRETS_FILE): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600); // the mode above only applies when the file is new
  renameSync(tmp, file);
}

/**
 * Development, embedded Postgres (no DATABASE_URL), no MFA_ENCRYPTION_KEYS: sets it to the saved key,
 * so rows sealed before a restart still open. Call before the env is read.
 */
export function reuseDevEncryptionKey(file: string = DEV_SECRETS_FILE): void {
  if (process.env.DATABASE_URL || process.env.MFA_ENCRYPTION_KEYS?.trim()) return;
  const saved = readDevSecrets(file).MFA_ENCRYPTION_KEYS;
  if (saved !== undefined) process.env.MFA_ENCRYPTION_KEYS = saved;
}

/**
 * Development: saves the secrets named in `generated` (for `npm run demo`). An encryption key already
 * saved is never replaced (rows of the embedded Postgres are sealed with it); a generated one is saved
 * when there is none yet. Does nothing when nothing was generated.
 */
export function saveDevSecrets(generated: readonly string[], values: Required<DevSecrets>, file: string = DEV_SECRETS_FILE): void {
  if (generated.length === 0) return;
  const savedKey = readDevSecrets(file).MFA_ENCRYPTION_KEYS;
  const key = savedKey ?? (generated.includes('MFA_ENCRYPTION_KEYS') ? values.MFA_ENCRYPTION_KEYS : undefined);
  writeDevSecrets({
    ...(generated.includes('JWT_SECRET') && { JWT_SECRET: values.JWT_SECRET }),
    ...(generated.includes('INTERNAL_API_KEYS') && { INTERNAL_API_KEYS: values.INTERNAL_API_KEYS }),
    ...(key !== undefined && { MFA_ENCRYPTION_KEYS: key }),
  }, file);
}
