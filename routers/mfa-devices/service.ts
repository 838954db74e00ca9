/**
 * The data operations behind `mfaDevicesRouter`: enrolment, device management and the login second
 * factor. Every method returns a status union; only the route handlers turn statuses into HTTP.
 */
import { randomUUID } from 'node:crypto';
import { isAbandoned, removeDevice, type DeviceRemovalDeps } from '../../lib/device-removal.js';
import { emitSafely, eventBase, type MfaEventMap, type MfaEventName } from '../../lib/events.js';
import type { PageRequest } from '../../lib/pagination.js';
import { createOtpChannels, maskDestination, type OtpChannelsWithAttempt } from '../../lib/otp-channels.js';
import { createRecoveryCodes, type RecoveryCodes } from '../../lib/recovery-codes.js';
import { acceptTotpCode, acceptTotpCodeOnAny, deviceAad, openDeviceSecret, recordTotpStepOf, UnreadableDeviceSecret, type TotpAcceptDeps } from '../../lib/second-factor.js';
import { createTotp, type Totp } from '../../lib/totp.js';
import { createTrustedDevices, type TrustInput, type TrustedDevices } from '../../lib/trusted-devices.js';
import { Lockout, type VerifierContext } from '../../lib/verification-throttle.js';
import { errorMessage } from '../../lib/throttled-log.js';
import type { MfaDevice, Page, TrustedDevice, WithoutStepUp } from '../../storage/types.js';
import type { MfaDevicesRouterConfig } from './options.js';

/**
 * Who is calling: tenant, user, request id; and, for a change to their factors the router let on without a step-up,
 * on what condition (`WithoutStepUp`): the write judges it again.
 */
export type Caller = VerifierContext & { withoutStepUp?: WithoutStepUp };

/** A change asked without step-up that found the user with a factor to step up with (`WithoutStepUp`). */
export type StepUpRequired = { status: 'STEP_UP_REQUIRED' };

/** The `withoutStepUp` a storage write is given for this caller, as options to spread. */
const withoutStepUpOf = (caller: Caller): { withoutStepUp?: WithoutStepUp } => (caller.withoutStepUp !== undefined ? { withoutStepUp: caller.withoutStepUp } : {});

/** Upper bound of one listing (the device limit keeps real lists far below it). */
const LIST_CAP = 1000;

export type EnrollTotpResult =
  | { status: 'OK'; device: MfaDevice; secret: string; otpauthUrl: string; qrCode: string }
  | { status: 'DEVICE_LIMIT_REACHED' }
  | StepUpRequired;

export type EnrollOtpResult = { status: 'OK'; device: MfaDevice; destination: string } | { status: 'DEVICE_LIMIT_REACHED' } | { status: 'METHOD_NOT_ENABLED' } | StepUpRequired;

export type ChallengeResult =
  | { status: 'OK'; destination: string; purpose: 'enrollment' | 'login' }
  | { status: 'NOT_FOUND' }
  | { status: 'NOT_SUPPORTED' }
  | { status: 'METHOD_NOT_ENABLED' }
  | { status: 'DEVICE_DISABLED' };

export type VerifyDeviceResult =
  | { status: 'OK'; device: MfaDevice }
  | { status: 'NOT_FOUND' }
  | { status: 'ALREADY_VERIFIED' }
  | { status: 'EXPIRED' }
  | { status: 'INVALID_CODE' }
  | { status: 'LOCKED'; retryAfterSeconds: number }
  | StepUpRequired;

export type UpdateDeviceResult = { status: 'OK'; device: MfaDevice } | { status: 'NOT_FOUND' } | StepUpRequired;
export type RemoveDeviceResult = { status: 'OK' } | { status: 'NOT_FOUND' } | StepUpRequired;

export type RegenerateRecoveryCodesResult = { status: 'OK'; codes: string[] } | { status: 'NOT_ENROLLED' } | StepUpRequired;

export type LoginMethod = 'totp' | 'sms' | 'email' | 'recovery_code';

export interface LoginVerifyInput {
  code?: string;
  recoveryCode?: string;
  deviceId?: string;
  /** "Remember this device": trusted (or renewed) once the second factor passed. */
  remember?: Omit<TrustInput, 'ttlSeconds'>;
}

export type LoginVerifyResult =
  | { status: 'OK'; method: LoginMethod; deviceId?: string; trustedDevice?: TrustedDevice; recoveryCodesRemaining?: number }
  | { status: 'INVALID_CODE' }
  | { status: 'LOCKED'; retryAfterSeconds: number }
  | { status: 'NOT_ENROLLED' }
  | { status: 'DEVICE_NOT_FOUND' }
  | { status: 'DEVICE_NOT_VERIFIED' }
  | { status: 'DEVICE_DISABLED' };

/** An unverified device past its enrolment window counts as gone. */

const usable = (device: MfaDevice): boolean => device.verified && device.enabled;

export class MfaDevicesService {
  readonly totp: Totp;
  readonly lockout: Lockout;
  readonly recoveryCodes: RecoveryCodes;
  readonly trustedDevices: TrustedDevices;
  /** sms/email codes; `undefined` without a sender (those methods are then not enabled). */
  readonly otp: OtpChannelsWithAttempt | undefined;
  private readonly totpDeps: TotpAcceptDeps;
  /** What removing a device needs (lib/device-removal.ts, shared with the internal router). */
  private readonly removal: DeviceRemovalDeps;

  constructor(private readonly config: MfaDevicesRouterConfig) {
    this.totp = createTotp({ now: config.now });
    this.lockout = new Lockout(config.storage.verificationThrottle, config.lockout, config.events, config.logger);
    this.totpDeps = { keyRing: config.keyRing, totp: this.totp, events: config.events, logger: config.logger };
    this.recoveryCodes = createRecoveryCodes({ storage: config.storage, count: config.recoveryCodeCount });
    this.trustedDevices = createTrustedDevices({ storage: config.storage, cache: config.cache, logger: config.logger, ...config.trustedDevices });
    this.removal = { storage: config.storage, trustedDevices: this.trustedDevices, recoveryCodes: this.recoveryCodes, events: config.events, logger: config.logger };
    this.otp = config.sender ? createOtpChannels({ storage: config.storage, sender: config.sender, keyRing: config.keyRing, codeTtlSeconds: config.codeTtlSeconds, maxAttempts: config.codeMaxAttempts, logger: config.logger }) : undefined;
  }

  /** An sms/email device's destination as it may be shown; `undefined` for TOTP or when it cannot be opened (never fails a listing). */
  maskedDestination(device: MfaDevice, requestId?: string): string | undefined {
    if (device.method === 'totp') return undefined;
    try {
      return maskDestination(device.method, this.config.keyRing.openText(device.secret, deviceAad(device)));
    } catch {
      // As the 500s of a secret that does not open: the row and its key id, never its content.
      this.config.logger.warn({ request_id: requestId, tenant_id: device.tenantId, device_id: device.id, key_id: device.secret.keyId }, 'mfa device destination could not be decrypted');
      return undefined;
    }
  }

  private emit<K extends MfaEventName>(name: K, payload: MfaEventMap[K][0]): void {
    emitSafely(this.config.events, this.config.logger, name, payload);
  }


  /** The caller's devices, newest first; abandoned enrolments left out. */
  async listDevices(caller: Caller): Promise<MfaDevice[]> {
    const { items } = await this.config.storage.mfaDevices.list(caller.tenantId, caller.userId, {}, { limit: LIST_CAP, offset: 0 });
    const now = new Date();
    return items.filter((d) => !isAbandoned(d, now));
  }

  /** One device of the caller, or `null` (also for an abandoned enrolment). */
  async getDevice(caller: Caller, id: string): Promise<MfaDevice | null> {
    const device = await this.config.storage.mfaDevices.get(caller.tenantId, caller.userId, id);
    return device && !isAbandoned(device, new Date()) ? device : null;
  }

  /** Starts a TOTP enrolment: a new secret, sealed at rest, shown this once. */
  async enrollTotp(caller: Caller, input: { deviceName: string; account: string }): Promise<EnrollTotpResult> {
    const { config } = this;
    const id = randomUUID();
    const secret = this.totp.generateSecret();
    const sealed = config.keyRing.seal(secret, deviceAad({ tenantId: caller.tenantId, userId: caller.userId, id }));
    // Built before the row: what fails here leaves no enrolment behind holding a device slot.
    const otpauthUrl = this.totp.uri({ issuer: config.issuer, account: input.account, secret, params: config.totp });
    const qrCode = await this.totp.qrCode(otpauthUrl);
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
      { maxDevices: config.maxDevices, now, ...withoutStepUpOf(caller) },
    );
    if (created.status !== 'OK') return created;
    this.emit('device.enrolled', { ...eventBase(caller), deviceId: id, method: 'totp' });
    return { status: 'OK', device: created.device, secret, otpauthUrl, qrCode };
  }

  /**
   * Starts an sms/email enrolment: the destination is checked (a 400 Problem names the field),
   * sealed at rest, and sent a code. If sending fails the enrolment is withdrawn (the slot freed).
   */
  async enrollOtp(caller: Caller, method: 'sms' | 'email', input: { deviceName: string; destination: string }): Promise<EnrollOtpResult> {
    const { config, otp } = this;
    if (!otp) return { status: 'METHOD_NOT_ENABLED' };
    const destination = otp.normalizeDestination(method, input.destination);
    const id = randomUUID();
    const now = new Date();
    const created = await config.storage.mfaDevices.create(
      {
        id,
        tenantId: caller.tenantId,
        userId: caller.userId,
        method,
        deviceName: input.deviceName,
        secret: config.keyRing.seal(destination, deviceAad({ tenantId: caller.tenantId, userId: caller.userId, id })),
        totp: null,
        expiresAt: new Date(now.getTime() + config.unverifiedTtlSeconds * 1000),
      },
      { maxDevices: config.maxDevices, now, ...withoutStepUpOf(caller) },
    );
    if (created.status !== 'OK') return created;
    try {
      await otp.issue({ tenantId: caller.tenantId, userId: caller.userId, deviceId: id, method, destination, purpose: 'enrollment' });
    } catch (err) {
      await config.storage.mfaDevices.remove(caller.tenantId, caller.userId, id);
      throw err;
    }
    this.emit('device.enrolled', { ...eventBase(caller), deviceId: id, method });
    return { status: 'OK', device: created.device, destination: otp.mask(method, destination) };
  }

  /** Sends a fresh code to an sms/email device: a login code, or the enrolment code again while unverified. */
  async challenge(caller: Caller, id: string): Promise<ChallengeResult> {
    const device = await this.getDevice(caller, id);
    if (!device) return { status: 'NOT_FOUND' };
    if (device.method === 'totp') return { status: 'NOT_SUPPORTED' };
    if (!this.otp) return { status: 'METHOD_NOT_ENABLED' };
    if (device.verified && !device.enabled) return { status: 'DEVICE_DISABLED' };
    const destination = openDeviceSecret(this.config.keyRing, device);
    const purpose = device.verified ? 'login' : 'enrollment';
    await this.otp.issue({ tenantId: caller.tenantId, userId: caller.userId, deviceId: device.id, method: device.method, destination, purpose });
    return { status: 'OK', destination: this.otp.mask(device.method, destination), purpose };
  }

  /** Confirms an enrolment with a first code (accepted once, like any other). */
  async verifyDevice(caller: Caller, id: string, code: string): Promise<VerifyDeviceResult> {
    const { storage } = this.config;
    const device = await storage.mfaDevices.get(caller.tenantId, caller.userId, id);
    if (!device) return { status: 'NOT_FOUND' };
    if (device.verified) return { status: 'ALREADY_VERIFIED' };
    if (isAbandoned(device, new Date())) return { status: 'EXPIRED' };
    const charged = await this.lockout.charge(caller, 'enrollment', id);
    if (charged.status === 'LOCKED') return charged;

    // The right code whose write changed nothing: why, as the device and user are now. The user has a factor it was let
    // on without (`WithoutStepUp`): a 401 like the router's. The device was removed, verified by a request racing this
    // one, or abandoned meanwhile: what that request would have been told had it come a moment later. None of these
    // is a replay, nor counted (the code was right), and it does not pass. A TOTP code stays unused; an sms/email code
    // is used up by its check, so the step-up is judged before it too (a factor that appears in the moment between
    // still refuses the write: then the user asks for another code). Still pending after all: the code's step was
    // taken (a replay).
    let lost: 'STEP_UP_REQUIRED' | 'NOT_FOUND' | 'ALREADY_VERIFIED' | 'EXPIRED' | 'NO_CODE' | undefined;
    const markVerified = async (step: number | null): Promise<MfaDevice | null | 'refused'> => {
      const marked = await storage.mfaDevices.markVerified(caller.tenantId, caller.userId, id, { step, now: new Date(), ...withoutStepUpOf(caller) });
      if (marked) return marked;
      lost = await this.whyNotVerified(caller, id);
      return lost === undefined ? null : 'refused';
    };
    let verified: MfaDevice | null | 'refused' = null;
    let replay = false;
    if (device.method === 'totp') {
      const result = await acceptTotpCode(this.totpDeps, caller, 'enrollment', device, code, markVerified).catch(async (err: unknown) => {
        // The device's secret does not open: the code met nothing (lib/verification-throttle.ts, notCompared).
        if (err instanceof UnreadableDeviceSecret) await this.lockout.notCompared(caller);
        throw err;
      });
      if (result.status === 'OK') verified = result.device;
      if (result.status === 'REFUSED') verified = 'refused';
      replay = result.status === 'REPLAY';
    } else if (this.otp && (await this.refusedWithoutStepUp(caller))) {
      lost = 'STEP_UP_REQUIRED';
      verified = 'refused';
    } else if (this.otp) {
      const outcome = await this.otp.attempt({ tenantId: caller.tenantId, userId: caller.userId, deviceId: device.id, code, purpose: 'enrollment' });
      if (outcome === 'ok') verified = await markVerified(null);
      else {
        // Refused: a wrong code, or none left to compare with: the right one a racing request used up (a double submit)
        // as it verifies the device, or one of a device removed meanwhile. A verified or removed device is what the
        // request would have been told a moment later; with no code compared, nothing was guessed: neither counted.
        const now = await storage.mfaDevices.get(caller.tenantId, caller.userId, id);
        if (!now || now.verified) lost = now ? 'ALREADY_VERIFIED' : 'NOT_FOUND';
        else if (outcome === 'none') lost = 'NO_CODE';
        if (lost !== undefined) verified = 'refused';
      }
    }
    if (verified === 'refused') {
      await this.lockout.notCompared(caller);
      // No code to compare with, the device still pending (expired, out of attempts, or the racing request not done yet):
      // the answer of a wrong code, without its count or event.
      return { status: lost === 'NO_CODE' ? 'INVALID_CODE' : (lost ?? 'STEP_UP_REQUIRED') };
    }
    if (!verified) {
      await this.lockout.failed(caller, 'enrollment', replay ? 'replay' : 'invalid_code', id);
      return { status: 'INVALID_CODE' };
    }
    await this.lockout.succeeded(caller);
    this.emit('device.verified', { ...eventBase(caller), deviceId: id, method: verified.method });
    this.emit('mfa.succeeded', { ...eventBase(caller), deviceId: id, method: verified.method, via: 'enrollment' });
    return { status: 'OK', device: verified };
  }

  /** Renames and/or enables/disables a device. */
  async updateDevice(caller: Caller, id: string, patch: { deviceName?: string; enabled?: boolean }): Promise<UpdateDeviceResult> {
    if (!(await this.getDevice(caller, id))) return { status: 'NOT_FOUND' };
    const device = await this.config.storage.mfaDevices.update(caller.tenantId, caller.userId, id, patch, withoutStepUpOf(caller));
    if (!device) return (await this.refusedWithoutStepUp(caller)) ? { status: 'STEP_UP_REQUIRED' } : { status: 'NOT_FOUND' };
    this.emit('device.updated', { ...eventBase(caller), deviceId: id, method: device.method, enabled: device.enabled });
    return { status: 'OK', device };
  }

  /** Removes a device; the last verified one takes the user's trusted devices with it. */
  async removeDevice(caller: Caller, id: string): Promise<RemoveDeviceResult> {
    const removed = await removeDevice(this.removal, caller, id, 'user', undefined, caller.withoutStepUp);
    if (removed) return { status: 'OK' };
    return (await this.refusedWithoutStepUp(caller)) ? { status: 'STEP_UP_REQUIRED' } : { status: 'NOT_FOUND' };
  }

  /** Whether the caller has a verified device (enabled or not): what recovery codes are the fallback of, and what step-up asks for. */
  async hasVerifiedDevice(caller: Caller): Promise<boolean> {
    return (await this.listDevices(caller)).some((d) => d.verified);
  }

  /** Whether a change asked without step-up may go on (`WithoutStepUp`), as read now; the write judges it again. */
  async holdsWithoutStepUp(caller: Caller, condition: WithoutStepUp): Promise<boolean> {
    const devices = await this.listDevices(caller);
    if (condition === 'no-verified-device') return !devices.some((d) => d.verified);
    return !devices.some((d) => d.verified && d.enabled) && (await this.recoveryCodesRemaining(caller)) === 0;
  }

  /** Why a right code's `markVerified` changed nothing (see `verifyDevice`); `undefined`: the device is still pending (a replay). */
  private async whyNotVerified(caller: Caller, id: string): Promise<'STEP_UP_REQUIRED' | 'NOT_FOUND' | 'ALREADY_VERIFIED' | 'EXPIRED' | undefined> {
    if (await this.refusedWithoutStepUp(caller)) return 'STEP_UP_REQUIRED';
    const now = await this.config.storage.mfaDevices.get(caller.tenantId, caller.userId, id);
    if (!now) return 'NOT_FOUND';
    if (now.verified) return 'ALREADY_VERIFIED';
    return isAbandoned(now, new Date()) ? 'EXPIRED' : undefined;
  }

  /** After a write that changed nothing: whether it was asked without step-up and the user now has a factor. */
  private async refusedWithoutStepUp(caller: Caller): Promise<boolean> {
    return caller.withoutStepUp !== undefined && !(await this.holdsWithoutStepUp(caller, caller.withoutStepUp));
  }

  /** One page of the caller's trusted devices (not expired), newest first, with their total. */
  listTrustedDevices(caller: Caller, page: PageRequest): Promise<Page<TrustedDevice>> {
    return this.trustedDevices.list(caller.tenantId, caller.userId, { includeExpired: false }, { limit: page.pageSize, offset: page.offset });
  }

  /** Revokes one of the caller's trusted devices; `false` when there is no such device of theirs. */
  async revokeTrustedDevice(caller: Caller, id: string): Promise<boolean> {
    const revoked = await this.trustedDevices.revoke(caller.tenantId, caller.userId, id);
    if (revoked) this.emit('trusted_device.revoked', { ...eventBase(caller), trustedDeviceId: id, count: 1, reason: 'user', via: 'user' });
    return revoked;
  }

  /** Revokes all of the caller's trusted devices; returns how many. */
  async revokeAllTrustedDevices(caller: Caller): Promise<number> {
    const count = await this.trustedDevices.revokeAll(caller.tenantId, caller.userId);
    if (count > 0) this.emit('trusted_device.revoked', { ...eventBase(caller), count, reason: 'user', via: 'user' });
    return count;
  }

  /** The login second factor: a code of one of the user's usable devices (or the one named), or a recovery code. */
  async verifyLogin(caller: Caller, input: LoginVerifyInput): Promise<LoginVerifyResult> {
    const { storage } = this.config;
    if (input.recoveryCode !== undefined) {
      // Codes are removed with the last device; this also covers a set left from before that was so.
      if (!(await this.hasVerifiedDevice(caller))) return { status: 'NOT_ENROLLED' };
      const charged = await this.lockout.charge(caller, 'login');
      if (charged.status === 'LOCKED') return charged;
      if (await this.recoveryCodes.consume(caller.tenantId, caller.userId, input.recoveryCode)) {
        const result = await this.loginSucceeded(caller, input, 'recovery_code');
        // How many are left, so the client can tell the user to make new ones before the last is gone (Keycloak asks
        // for a new set once all are used). The code is spent: a failed count leaves the field out, not the login.
        try {
          return { ...result, recoveryCodesRemaining: await this.recoveryCodes.remaining(caller.tenantId, caller.userId) };
        } catch (err) {
          this.config.logger.error({ tenant_id: caller.tenantId, request_id: caller.requestId, error: errorMessage(err) }, 'login: a recovery code passed, but the codes left could not be counted');
          return result;
        }
      }
      await this.lockout.failed(caller, 'login', 'invalid_code');
      return { status: 'INVALID_CODE' };
    }
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

    // TOTP first: it needs no pending challenge and is what most users have.
    const totp = await acceptTotpCodeOnAny(this.totpDeps, caller, 'login', candidates.filter((d) => d.method === 'totp'), code, recordTotpStepOf(storage.mfaDevices, caller));
    if (totp.status === 'OK') return this.loginSucceeded(caller, input, 'totp', totp.device.id);
    const replay = totp.status === 'REPLAY';
    const unreadable = totp.status === 'MISMATCH' ? totp.unreadable : undefined;
    // sms/email: only a device with a pending login code can match (single use, expiry and attempts are the code store's).
    const otp = this.otp;
    if (!replay && otp) {
      for (const device of candidates.filter((d) => d.method !== 'totp')) {
        if (await otp.verify({ tenantId: caller.tenantId, userId: caller.userId, deviceId: device.id, code, purpose: 'login' })) {
          await storage.mfaDevices.touch(caller.tenantId, caller.userId, device.id);
          return this.loginSucceeded(caller, input, device.method, device.id);
        }
      }
    }
    // No device took the code, and one could not be read: the code may have been its own. Not counted when the code met
    // nothing else: no TOTP secret opened and no sms/email device could have had a code pending.
    if (unreadable) {
      if (totp.status === 'MISMATCH' && totp.compared === 0 && candidates.every((d) => d.method === 'totp')) await this.lockout.notCompared(caller);
      throw unreadable;
    }
    await this.lockout.failed(caller, 'login', replay ? 'replay' : 'invalid_code', input.deviceId);
    return { status: 'INVALID_CODE' };
  }

  /** A new set of recovery codes, replacing the old one; shown this once. Only as the fallback of a verified device. */
  async regenerateRecoveryCodes(caller: Caller): Promise<RegenerateRecoveryCodesResult> {
    if (!(await this.hasVerifiedDevice(caller))) return { status: 'NOT_ENROLLED' };
    // Let on without a step-up while the user had no verified device, and now they have one (verified meanwhile):
    // a set needs a verified device, so without the step-up it is never made.
    if (caller.withoutStepUp !== undefined) return { status: 'STEP_UP_REQUIRED' };
    // The check above answers fast; this one, in the write, is what holds when the last device is being removed.
    const codes = await this.recoveryCodes.regenerateWhileEnrolled(caller.tenantId, caller.userId);
    if (codes === null) return { status: 'NOT_ENROLLED' };
    this.emit('recovery_codes.generated', { ...eventBase(caller), count: codes.length });
    return { status: 'OK', codes };
  }

  /** How many unused recovery codes the caller has. */
  recoveryCodesRemaining(caller: Caller): Promise<number> {
    return this.recoveryCodes.remaining(caller.tenantId, caller.userId);
  }

  private async loginSucceeded(caller: Caller, input: LoginVerifyInput, method: LoginMethod, deviceId?: string): Promise<Extract<LoginVerifyResult, { status: 'OK' }>> {
    await this.lockout.succeeded(caller);
    this.emit('mfa.succeeded', { ...eventBase(caller), method, via: 'login', ...(deviceId !== undefined && { deviceId }) });
    let trustedDevice: TrustedDevice | undefined;
    if (input.remember) {
      // null: the user's last device went (or the user was erased) while this login was answering: the code was
      // right, but there is no second factor left for the browser to stand in for.
      try {
        trustedDevice = (await this.trustedDevices.rememberAfterSecondFactor(caller.tenantId, caller.userId, input.remember)) ?? undefined;
      } catch (err) {
        // The code is spent and the second factor passed: the login answers so, without the browser remembered
        // (the answer has no trustedDevice), rather than a 5xx that would cost the user a second code.
        this.config.logger.error({ tenant_id: caller.tenantId, request_id: caller.requestId, error: errorMessage(err) }, 'login: the second factor passed, but the device could not be remembered');
      }
      if (trustedDevice) this.emit('trusted_device.created', { ...eventBase(caller), trustedDeviceId: trustedDevice.id, via: 'user' });
    }
    return { status: 'OK', method, ...(deviceId !== undefined && { deviceId }), ...(trustedDevice && { trustedDevice }) };
  }
}
