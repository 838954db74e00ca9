/**
 * AES-256-GCM key ring for secrets at rest. Keys are `kid:base64(32 bytes)`; the first encrypts,
 * all decrypt, so keys rotate by putting a new one first and re-encrypting (`reencrypt`) at leisure.
 * Each value gets a random 96-bit nonce and is bound to associated data the caller passes
 * (tenant, user, record id): a ciphertext copied to another row does not decrypt.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { ProblemError } from './errors.js';
import { commaList } from './options.js';

/** A sealed value as stored: the key id, and nonce ‖ ciphertext ‖ tag. */
export interface Sealed {
  keyId: string;
  data: Buffer;
}

export interface KeyRing {
  /** Id of the key new values are sealed with. */
  readonly activeKeyId: string;
  /** Ids of every key that can open values. */
  readonly keyIds: readonly string[];
  seal(plaintext: string | Uint8Array, aad: string): Sealed;
  /** Opens a sealed value; throws a 500 `DECRYPTION_FAILED` Problem (no detail leaks) on any mismatch. */
  open(sealed: Sealed, aad: string): Buffer;
  openText(sealed: Sealed, aad: string): string;
  /**
   * A keyed hash (HMAC-SHA256) of `data` under a key derived (HKDF-SHA256) from the ring's key `keyId` (default: the
   * active one) for `purpose`: a pepper, so a stored hash of a short secret (a 6-digit code) cannot be brute-forced
   * from a database read alone. `undefined` for a key id the ring does not hold. Optional, so a ring of your own
   * (a KMS) still fits; `keyRing()`'s has it.
   */
  mac?(purpose: string, data: string, keyId?: string): { keyId: string; mac: Buffer } | undefined;
}

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;

/** Associated data binding a secret to where it lives. */
export const aad = (...parts: readonly string[]): string => JSON.stringify(parts);

/** Parses `'k1:base64,k0:base64'` or a list of such entries. Throws a TypeError saying how to fix a bad one. */
export function parseKeys(keys: string | readonly string[] | undefined): Array<{ id: string; key: Buffer }> {
  // `undefined` (an unset MFA_ENCRYPTION_KEYS) takes the same path as an empty list: the message says what to set.
  const entries = commaList(keys, 'keyRing() takes a string `kid:base64,…` or a list of them, e.g. keyRing(process.env.MFA_ENCRYPTION_KEYS)');
  if (entries.length === 0) {
    throw new TypeError('express-mfa-kit: no encryption key: set MFA_ENCRYPTION_KEYS=k1:<base64 of 32 random bytes> (`openssl rand -base64 32`)');
  }
  const seen = new Set<string>();
  let active: string | undefined;
  return entries.map((entry) => {
    const colon = entry.indexOf(':');
    const id = colon === -1 ? '' : entry.slice(0, colon);
    if (!KEY_ID.test(id)) {
      throw new TypeError('express-mfa-kit: an encryption key is not of the form kid:base64 (kid of A-Z a-z 0-9 _ -, at most 32 characters), e.g. k1:$(openssl rand -base64 32)');
    }
    if (seen.has(id)) throw new TypeError(`express-mfa-kit: encryption key id '${id}' appears twice`);
    seen.add(id);
    const b64 = entry.slice(colon + 1);
    // Node's decoder also takes base64url and skips what is neither, so the form is checked apart from the length.
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) {
      throw new TypeError(
        `express-mfa-kit: encryption key '${id}' is not standard base64 (A-Z a-z 0-9 + /, = padding; not base64url), or two keys are not separated by a comma: \`openssl rand -base64 32\``,
      );
    }
    const key = Buffer.from(b64, 'base64');
    if (key.length !== 32) {
      throw new TypeError(`express-mfa-kit: encryption key '${id}' is ${key.length} bytes; AES-256-GCM needs exactly 32 bytes, base64-encoded (\`openssl rand -base64 32\`)`);
    }
    // The active key again under an older id: a rotation to it re-seals with the same key and retires nothing. (Two
    // older ids of one key are let be: a new active key is how a ring that has them is left.)
    const hex = key.toString('hex');
    if (active === undefined) active = hex;
    else if (hex === active) throw new TypeError(`express-mfa-kit: encryption key '${id}' is the same key as the active (first) one: a rotation to it would retire nothing; give the active id a new key (\`openssl rand -base64 32\`)`);
    return { id, key };
  });
}

/** A fresh `kid:base64` key, for development and for rotation. */
export const generateKey = (id = `k${Date.now().toString(36)}`): string => `${id}:${randomBytes(32).toString('base64')}`;

export function keyRing(keys: string | readonly string[] | undefined): KeyRing {
  const parsed = parseKeys(keys);
  const byId = new Map(parsed.map((k) => [k.id, k.key]));
  const active = parsed[0]!;

  const open = (sealed: Sealed, associated: string): Buffer => {
    const key = byId.get(sealed.keyId);
    if (!key || sealed.data.length < NONCE_BYTES + TAG_BYTES) throw ProblemError.from('DECRYPTION_FAILED');
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.data.subarray(0, NONCE_BYTES));
      decipher.setAAD(Buffer.from(associated, 'utf8'));
      decipher.setAuthTag(sealed.data.subarray(sealed.data.length - TAG_BYTES));
      return Buffer.concat([decipher.update(sealed.data.subarray(NONCE_BYTES, sealed.data.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw ProblemError.from('DECRYPTION_FAILED');
    }
  };

  // A derived key per ring key and purpose, made on first use: HKDF keeps a MAC key apart from the AES key.
  const macKeys = new Map<string, Buffer>();
  const macKey = (id: string, purpose: string): Buffer | undefined => {
    const key = byId.get(id);
    if (!key) return undefined;
    const slot = `${id}\n${purpose}`;
    let derived = macKeys.get(slot);
    if (!derived) {
      derived = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `express-mfa-kit/mac/${purpose}`, 32));
      macKeys.set(slot, derived);
    }
    return derived;
  };

  return {
    activeKeyId: active.id,
    keyIds: parsed.map((k) => k.id),
    seal(plaintext, associated) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', active.key, nonce);
      cipher.setAAD(Buffer.from(associated, 'utf8'));
      const body = Buffer.concat([cipher.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext), cipher.final()]);
      return { keyId: active.id, data: Buffer.concat([nonce, body, cipher.getAuthTag()]) };
    },
    open,
    openText: (sealed, associated) => open(sealed, associated).toString('utf8'),
    mac(purpose, data, keyId = active.id) {
      const key = macKey(keyId, purpose);
      return key && { keyId, mac: createHmac('sha256', key).update(data, 'utf8').digest() };
    },
  };
}
