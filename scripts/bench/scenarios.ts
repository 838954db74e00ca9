/**
 * The benchmark's scenarios, one table entry each: what to send (a path and body per request) and how to
 * recognise a right answer in the probe made before any load. The bare reference serves the probe's answer
 * at `barePath`.
 */
import type { LoadSpec } from './load.js';
import type { TrustedSeed, VerifyCodes } from './seed.js';

/** What the scenarios draw their requests from (filled by scripts/bench.ts). */
export interface BenchData {
  runId: string;
  internalHeaders: Record<string, string>;
  /** Trusted (user, fingerprint) pairs, warmed into the cache before the hot path is measured. */
  trusted: readonly TrustedSeed[];
  /** Users with at least one full page (20) of trusted devices. */
  listUsers: readonly string[];
  /** Users whose unknown fingerprints the cache-miss scenario asks about. */
  missUsers: readonly string[];
  /** Users with 3 TOTP devices each. */
  deviceUsers: readonly string[];
  /** A signed JWT per user of `deviceUsers`, for `GET /auth/mfa/devices`. */
  deviceTokens: readonly string[];
  verify: VerifyCodes;
  /** A number never handed out before in this run (unique fingerprints). */
  unique(): number;
}

export interface Scenario {
  id: string;
  title: string;
  /** The route path the bare reference answers at. */
  barePath: string;
  /** When two scenarios share a path, the bare reference tells them apart by a query parameter's prefix. */
  bareWhen?: { query: string; prefix: string };
  load(data: BenchData): LoadSpec;
  /** What is wrong with a probe answer from the kit (status and parsed body), or undefined when it is right. */
  check(status: number, body: unknown): string | undefined;
}

/** Round-robin over `items`. */
export function cycle<T>(items: readonly T[]): () => T {
  if (items.length === 0) throw new Error('cycle() over nothing: the seed produced no data for this scenario');
  let i = 0;
  return () => {
    const item = items[i]!;
    i = (i + 1) % items.length;
    return item;
  };
}

const q = encodeURIComponent;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const expect200 = (status: number, ok: boolean, what: string) => (status !== 200 ? `HTTP ${status}` : ok ? undefined : what);

const CHECK_PATH = '/internal/session/trusted-devices/check';
const LIST_PATH = '/internal/session/trusted-devices';

export const SCENARIOS: Scenario[] = [
  {
    id: 'check-hit',
    title: 'trusted-device check, cache hit (hot path)',
    barePath: CHECK_PATH,
    load(data) {
      const next = cycle(data.trusted);
      return {
        method: 'GET',
        headers: data.internalHeaders,
        next() {
          const t = next();
          return { path: `${CHECK_PATH}?user_id=${q(t.userId)}&device_fingerprint=${q(t.fingerprint)}` };
        },
      };
    },
    check: (status, body) => expect200(status, isObject(body) && body.trusted === true, 'expected {trusted: true}'),
  },
  {
    id: 'check-miss',
    title: 'trusted-device check, cache miss (database)',
    barePath: CHECK_PATH,
    bareWhen: { query: 'device_fingerprint', prefix: 'miss-' },
    load(data) {
      // A fingerprint never asked about before: nothing cached, so every request reads Postgres.
      const user = cycle(data.missUsers);
      return {
        method: 'GET',
        headers: data.internalHeaders,
        unique: true,
        next: () => ({ path: `${CHECK_PATH}?user_id=${q(user())}&device_fingerprint=miss-${data.runId}-${data.unique()}` }),
      };
    },
    check: (status, body) => expect200(status, isObject(body) && body.trusted === false, 'expected {trusted: false}'),
  },
  {
    id: 'list',
    title: 'GET /internal/session/trusted-devices (page of 20)',
    barePath: LIST_PATH,
    load(data) {
      const next = cycle(data.listUsers);
      return { method: 'GET', headers: data.internalHeaders, next: () => ({ path: `${LIST_PATH}?user_id=${q(next())}&page_size=20` }) };
    },
    check: (status, body) => expect200(status, isObject(body) && Array.isArray(body.items) && body.items.length === 20, 'expected a page of 20 items'),
  },
  {
    id: 'totp-list',
    title: 'GET /internal/mfa/totp/devices (database)',
    barePath: '/internal/mfa/totp/devices',
    load(data) {
      const next = cycle(data.deviceUsers);
      return { method: 'GET', headers: data.internalHeaders, next: () => ({ path: `/internal/mfa/totp/devices?user_id=${q(next())}` }) };
    },
    check: (status, body) => expect200(status, isObject(body) && Array.isArray(body.items) && body.items.length === 3, 'expected 3 items'),
  },
  {
    id: 'devices',
    title: 'GET /auth/mfa/devices (JWT + database)',
    barePath: '/auth/mfa/devices',
    load(data) {
      const token = cycle(data.deviceTokens);
      return { method: 'GET', headers: {}, next: () => ({ path: '/auth/mfa/devices', headers: { authorization: `Bearer ${token()}` } }) };
    },
    check: (status, body) => expect200(status, Array.isArray(body) && body.length > 0, 'expected a non-empty array'),
  },
  {
    id: 'verify',
    title: 'POST /internal/mfa/totp/verify (valid codes, many users)',
    barePath: '/internal/mfa/totp/verify',
    load(data) {
      return {
        method: 'POST',
        headers: { ...data.internalHeaders, 'content-type': 'application/json' },
        madeWhenSent: true,
        next() {
          const { userId, code } = data.verify.take();
          return { path: '/internal/mfa/totp/verify', body: JSON.stringify({ user_id: userId, code }) };
        },
      };
    },
    check: (status, body) => expect200(status, isObject(body) && body.valid === true, 'expected {valid: true}'),
  },
];
