/**
 * A sibling service (here: the identity service that runs the login) calls the kit's internal routes
 * with its key, over plain `fetch`: verify a user's TOTP code, remember the browser, check it on the
 * next login, revoke it. test/examples.test.ts and `npm run demo` run these against a live server.
 */

/** Where the kit's `internalRouter` is mounted, and who is calling. */
export interface InternalApiOptions {
  /** e.g. `http://127.0.0.1:3000/internal` */
  baseUrl: string;
  /** One of the server's `INTERNAL_API_KEYS`. */
  apiKey: string;
  tenantId: string;
}

/** An answer the client did not expect, with the Problem body the kit sent. */
export class InternalApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: { code?: number; title?: string; detail?: string; retry_after?: number } | undefined,
  ) {
    super(`internal API answered ${status}${problem?.detail ? `: ${problem.detail}` : ''}`);
    this.name = 'InternalApiError';
  }
}

/** `TrustedDeviceResponse` (seed 002): a detail the device was never given is absent, never `null`. */
export interface TrustedDevice {
  id: string;
  tenant_id: string;
  user_id: string;
  device_fingerprint: string;
  device_name?: string;
  device_type?: string;
  browser?: string;
  os?: string;
  ip?: string;
  created_at: string;
  trusted_until: string;
}

/** The device a user logs in from, as the identity service sees it. */
export interface BrowserInfo {
  fingerprint: string;
  name?: string;
  type?: string;
  browser?: string;
  os?: string;
  ip?: string;
}

const INVALID_CODE = 40000010;

/** Typed calls to the internal routes. */
export function internalApi(options: InternalApiOptions) {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${options.baseUrl}${path}`, {
      method,
      headers: {
        'X-Internal-API-Key': options.apiKey,
        'X-Tenant-ID': options.tenantId,
        ...(body !== undefined && { 'Content-Type': 'application/json' }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T };
  };
  const fail = (status: number, body: unknown): never => {
    const problem: InternalApiError['problem'] = typeof body === 'object' && body !== null ? body : undefined;
    throw new InternalApiError(status, problem);
  };
  const q = (params: Record<string, string>) => new URLSearchParams(params).toString();

  return {
    /** `POST /mfa/totp/verify`: `valid: false` for a wrong or already used code; a lockout (429) throws with `retry_after`. */
    async verifyTotp(userId: string, code: string): Promise<{ valid: true; deviceId: string } | { valid: false }> {
      const { status, body } = await call<{ device_id: string; code?: number }>('POST', '/mfa/totp/verify', { user_id: userId, code });
      if (status === 200) return { valid: true, deviceId: body.device_id };
      if (status === 400 && body.code === INVALID_CODE) return { valid: false };
      return fail(status, body);
    },

    /** `POST /session/trusted-devices`: trust (or renew) a browser after a passed second factor. */
    async rememberDevice(userId: string, device: BrowserInfo, ttlSeconds?: number): Promise<TrustedDevice> {
      const { status, body } = await call<TrustedDevice>('POST', '/session/trusted-devices', {
        user_id: userId,
        device_fingerprint: device.fingerprint,
        device_name: device.name,
        device_type: device.type,
        browser: device.browser,
        os: device.os,
        ip: device.ip,
        ttl_seconds: ttlSeconds,
      });
      return status === 201 ? body : fail(status, body);
    },

    /** `GET /session/trusted-devices/check`: the hot path of every login. */
    async checkDevice(userId: string, fingerprint: string): Promise<{ trusted: boolean; device_id?: string; trusted_until?: string }> {
      const { status, body } = await call<{ trusted: boolean; device_id?: string; trusted_until?: string }>('GET', `/session/trusted-devices/check?${q({ user_id: userId, device_fingerprint: fingerprint })}`);
      return status === 200 ? body : fail(status, body);
    },

    /** `DELETE /session/trusted-devices/:id`: `false` when there is no such device (404). */
    async revokeDevice(userId: string, id: string): Promise<boolean> {
      const { status, body } = await call('DELETE', `/session/trusted-devices/${encodeURIComponent(id)}?${q({ user_id: userId })}`);
      if (status === 204) return true;
      return status === 404 ? false : fail(status, body);
    },

    /** `DELETE /session/trusted-devices`: forget every browser of the user (e.g. after a password change). */
    async revokeAllDevices(userId: string): Promise<number> {
      const { status, body } = await call<{ revoked: number }>('DELETE', `/session/trusted-devices?${q({ user_id: userId })}`);
      return status === 200 ? body.revoked : fail(status, body);
    },

    /** `DELETE /mfa/user-data`: the account is being deleted, so erase what the MFA service keeps about the user (safe to retry). */
    async eraseUser(userId: string): Promise<{ mfa_devices: number; recovery_codes: number; trusted_devices: number; sync_records: number }> {
      type Erased = { erased: { mfa_devices: number; recovery_codes: number; trusted_devices: number; sync_records: number } };
      const { status, body } = await call<Erased>('DELETE', `/mfa/user-data?${q({ user_id: userId })}`);
      return status === 200 ? body.erased : fail(status, body);
    },
  };
}

export type InternalApi = ReturnType<typeof internalApi>;

// #region readme-login
/** The identity service's second step of a login, after the password was right. */
export async function secondFactor(api: InternalApi, userId: string, browser: BrowserInfo, code?: string, remember = false): Promise<'trusted' | 'verified' | 'code_needed' | 'invalid_code'> {
  if ((await api.checkDevice(userId, browser.fingerprint)).trusted) return 'trusted'; // remembered: no code asked
  if (code === undefined) return 'code_needed';
  const result = await api.verifyTotp(userId, code); // each code is accepted once, across all instances
  if (!result.valid) return 'invalid_code';
  if (remember) await api.rememberDevice(userId, browser); // 30 days unless ttlSeconds is given
  return 'verified';
}
// #endregion
