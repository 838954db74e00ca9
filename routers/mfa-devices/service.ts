/**
 * The data operations behind `mfaDevicesRouter`: enrolment, device management and the login second
 * factor. Every method returns a status union; only the route handlers turn statuses into HTTP.
 */
import { randomUUID } from 'node:crypto';
import { emitSafely, type MfaEventMap, type MfaEventName } from '../../lib/events.js';
import { acceptTotpCode, deviceAad, type TotpAcceptDeps } from '../../lib/second-factor.js';
import { createTotp, type Totp } from '../../lib/totp.js';
import { Lockout, type VerifierContext } from '../../lib/verification-throttle.js';
import type { MfaDevice } from '../../storage/types.js';
import type { MfaDevicesRouterConfig } from './options.js';

/** Who is calling: tenant, user, request id. */
export type Caller = VerifierContext;

/** Upper bound of one listing (the device limit keeps real lists far below it). */
const LIST_CAP = 1000;

export type EnrollTotpResult =
  | { status: 'OK'; device: MfaDevice; secret: string; otpauthUrl: string; qrCode: string }
  | { status: 'DEVICE_LIMIT_REACHED' };

export type VerifyDeviceResult =
  | { status: 'OK'; device: MfaDevice }
  | { status: 'NOT_FOUND' }
  | { status: 'ALREADY_VERIFIED' }
  | { status: 'EXPIRED' }
  | { status: 'INVALID_CODE' }
  | { status: 'LOCKED'; retryAfterSeconds: number };

export type UpdateDeviceResult = { status: 'OK'; device: MfaDevice } | { status: 'NOT_FOUND' };
export type RemoveDeviceResult = { status: 'OK' } | { status: 'NOT_FOUND' };

export type LoginMethod = 'totp' | 'sms' | 'email' | 'recovery_code';

export interface LoginVerifyInput {
  code?: string;
  recoveryCode?: string;
  deviceId?: string;
}

export type LoginVerifyResult =
  | { status: 'OK'; method: LoginMethod; deviceId?: string }
  | { status: 'INVALID_CODE' }
  | { status: 'LOCKED'; retryAfterSeconds: number }
  | { status: 'NOT_ENROLLED' }
  | { status: 'DEVICE_NOT_FOUND' }
  | { status: 'DEVICE_NOT_VERIFIED' }
  | { status: 'DEVICE_DISABLED' };

/** An unverified device past its enrolment window counts as gone. */
export const isExpired = (device: MfaDevice, now: Date): boolean => !device.verified && device.expiresAt !== null && device.expiresAt <= now;

const usable = (device: MfaDevice): boolean => device.verified && device.enabled;

export class MfaDevicesService {
  readonly totp: Totp;
  readonly lockout: Lockout;
  private readonly totpDeps: TotpAcceptDeps;

  constructor(private readonly config: MfaDevicesRouterConfig) {
    this.totp = createTotp({ now: config.now });
    this.lockout = new Lockout(config.storage.verificationThrottle, config.lockout, config.events, config.logger);
    this.totpDeps = { keyRing: config.keyRing, totp: this.totp, events: config.events, logger: config.logger };
  }

  private emit<K extends MfaEventName>(name: K, payload: MfaEventMap[K][0]): void {
    emitSafely(this.config.events, this.config.logger, name, payload);
  }

  private base(caller: Caller) {
    return { tenantId: caller.tenantId, userId: caller.userId, requestId: caller.requestId, at: new Date() };
  }

  /** The caller's devices, newest first; abandoned enrolments left out. */
  async listDevices(caller: Caller): Promise<MfaDevice[]> {
    const { items } = await this.config.storage.mfaDevices.list(caller.tenantId, caller.userId, {}, { limit: LIST_CAP, offset: 0 });
    const now = new Date();
    return items.filter((d) => !isExpired(d, now));
  }

  /** One device of the caller, or `null` (also for an abandoned enrolment). */
  async getDevice(caller: Caller, id: string): Promise<MfaDevice | null> {
    const device = await this.config.storage.mfaDevices.get(caller.tenantId, caller.userId, id);
    return device && !isExpired(device, new Date()) ? device : null;
  }

  /** Starts a TOTP enrolment: a new secret, sealed at rest, shown this once. */
  async enrollTotp(caller: Caller, input: { deviceName: string; account: string }): Promise<EnrollTotpResult> {
    const { config } = this;
    const id = randomUUID();
    const secret = this.totp.generateSecret();
    const sealed = config.keyRing.seal(secret, deviceAad({ tenantId: caller.tenantId, userId: caller.userId, id }));
    const now = new Date();
    const created = await config.storage.mfaDevices.create(
      {
        id,
        tenantId: caller.tenantId,
        userId: caller.userId,
        method: 'totp',
        deviceName: input.deviceName,
        secret: sealed,
        totp: config.totp,
        expiresAt: new Date(now.getTime() + config.unverifiedTtlSeconds * 1000),
      },
      { maxDevices: config.maxDevices, now },
    );
    if (created.status !== 'OK') return created;
    this.emit('device.enrolled', { ...this.base(caller), deviceId: id, method: 'totp' });
    const otpauthUrl = this.totp.uri({ issuer: config.issuer, account: input.account, secret, params: config.totp });
    const qrCode = await this.totp.qrCode(otpauthUrl);
    return { status: 'OK', device: created.device, secret, otpauthUrl, qrCode };
  }

  /** Confirms an enrolment with a first code (accepted once, like any other). */
  async verifyDevice(caller: Caller, id: string, code: string): Promise<VerifyDeviceResult> {
    const { storage } = this.config;
    const device = await storage.mfaDevices.get(caller.tenantId, caller.userId, id);
    if (!device) return { status: 'NOT_FOUND' };
    if (device.verified) return { status: 'ALREADY_VERIFIED' };
    if (isExpired(device, new Date())) return { status: 'EXPIRED' };
    const charged = await this.lockout.charge(caller, 'enrollment', id);
    if (charged.status === 'LOCKED') return charged;

    let verified: MfaDevice | null = null;
    let replay = false;
    if (device.method === 'totp') {
      const result = await acceptTotpCode(this.totpDeps, caller, 'enrollment', device, code, (step) =>
        storage.mfaDevices.markVerified(caller.tenantId, caller.userId, id, { step, now: new Date() }),
      );
      if (result.status === 'OK') verified = result.device;
      replay = result.status === 'REPLAY';
    }
    if (!verified) {
      await this.lockout.failed(caller, 'enrollment', replay ? 'replay' : 'invalid_code', id);
      return { status: 'INVALID_CODE' };
    }
    await this.lockout.succeeded(caller);
    this.emit('device.verified', { ...this.base(caller), deviceId: id, method: verified.method });
    this.emit('mfa.succeeded', { ...this.base(caller), deviceId: id, method: verified.method, via: 'enrollment' });
    return { status: 'OK', device: verified };
  }

  /** Renames and/or enables/disables a device. */
  async updateDevice(caller: Caller, id: string, patch: { deviceName?: string; enabled?: boolean }): Promise<UpdateDeviceResult> {
    if (!(await this.getDevice(caller, id))) return { status: 'NOT_FOUND' };
    const device = await this.config.storage.mfaDevices.update(caller.tenantId, caller.userId, id, patch);
    if (!device) return { status: 'NOT_FOUND' };
    this.emit('device.updated', { ...this.base(caller), deviceId: id, method: device.method, enabled: device.enabled });
    return { status: 'OK', device };
  }

  /** Removes a device; the last verified one takes the user's trusted devices with it. */
  async removeDevice(caller: Caller, id: string): Promise<RemoveDeviceResult> {
    const { removed, verifiedRemaining } = await this.config.storage.mfaDevices.remove(caller.tenantId, caller.userId, id);
    if (!removed) return { status: 'NOT_FOUND' };
    this.emit('device.removed', { ...this.base(caller), deviceId: id, method: removed.method });
    if (verifiedRemaining === 0) await this.revokeTrustOnLastDevice(caller);
    return { status: 'OK' };
  }

  /** With no second factor left, "remember this device" must not outlive it. */
  private revokeTrustOnLastDevice(caller: Caller): Promise<void> {
    void caller; // trusted devices ([2/7]) are wired in once they land
    return Promise.resolve();
  }

  /** The login second factor: a code of one of the user's usable devices (or the one named), or a recovery code. */
  async verifyLogin(caller: Caller, input: LoginVerifyInput): Promise<LoginVerifyResult> {
    const { storage } = this.config;
    let candidates: MfaDevice[];
    if (input.deviceId !== undefined) {
      const device = await this.getDevice(caller, input.deviceId);
      if (!device) return { status: 'DEVICE_NOT_FOUND' };
      if (!device.verified) return { status: 'DEVICE_NOT_VERIFIED' };
      if (!device.enabled) return { status: 'DEVICE_DISABLED' };
      candidates = [device];
    } else {
      candidates = (await this.listDevices(caller)).filter(usable);
      if (candidates.length === 0) return { status: 'NOT_ENROLLED' };
    }
    const code = input.code ?? '';

    const charged = await this.lockout.charge(caller, 'login', input.deviceId);
    if (charged.status === 'LOCKED') return charged;

    let replay = false;
    // TOTP first: it needs no pending challenge and is what most users have.
    for (const device of candidates.filter((d) => d.method === 'totp')) {
      const result = await acceptTotpCode(this.totpDeps, caller, 'login', device, code, (step) =>
        storage.mfaDevices.recordTotpStep(caller.tenantId, caller.userId, device.id, step),
      );
      if (result.status === 'OK') return this.loginSucceeded(caller, 'totp', device.id);
      if (result.status === 'REPLAY') {
        replay = true;
        break;
      }
    }
    await this.lockout.failed(caller, 'login', replay ? 'replay' : 'invalid_code', input.deviceId);
    return { status: 'INVALID_CODE' };
  }

  private async loginSucceeded(caller: Caller, method: LoginMethod, deviceId?: string): Promise<LoginVerifyResult> {
    await this.lockout.succeeded(caller);
    this.emit('mfa.succeeded', { ...this.base(caller), method, via: 'login', ...(deviceId !== undefined && { deviceId }) });
    return { status: 'OK', method, ...(deviceId !== undefined && { deviceId }) };
  }
}
