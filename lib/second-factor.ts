/**
 * Checking a TOTP code against a stored device, once: decrypt the secret, verify within the
 * device's window above its last accepted step, then let storage record the step in one
 * conditional update. Shared by enrolment, the login second factor and the internal verify route.
 */
import { isProblemError, ProblemError } from './errors.js';
import { emitSafely, type MfaEvents } from './events.js';
import { aad, type KeyRing } from './keyring.js';
import type { Logger } from './logger.js';
import type { Totp } from './totp.js';
import type { VerifierContext, Via } from './verification-throttle.js';
import type { MfaDevice, MfaDeviceStore } from '../storage/types.js';

export interface TotpAcceptDeps {
  keyRing: KeyRing;
  totp: Totp;
  events: MfaEvents;
  logger: Logger;
}

export type TotpAcceptResult = { status: 'OK'; device: MfaDevice } | { status: 'MISMATCH' } | { status: 'REPLAY' } | { status: 'REFUSED' };

/** Associated data sealing a device's secret or destination to its row. */
export const deviceAad = (device: Pick<MfaDevice, 'tenantId' | 'userId' | 'id'>): string => aad(device.tenantId, device.userId, device.id);

/** The key ring's refusal of one device's secret: a 500 whose log line names the row and its key id. */
export class UnreadableDeviceSecret extends ProblemError {}

/**
 * A device's TOTP secret or sms/email destination, opened. One that does not open (its key left the key ring, the
 * row was altered) is the key ring's 500, whose log line names the row and its key id: nothing of the content.
 */
export function openDeviceSecret(keyRing: KeyRing, device: MfaDevice): string {
  try {
    return keyRing.openText(device.secret, deviceAad(device));
  } catch (err) {
    if (!isProblemError(err)) throw err;
    throw new UnreadableDeviceSecret(err.key, { logFields: { reason: 'mfa device secret did not decrypt', tenant_id: device.tenantId, device_id: device.id, key_id: device.secret.keyId } });
  }
}

/**
 * Checks `code` on a TOTP device. `record(step)` must store the step atomically and return the
 * updated device, or `null` when the step is not above the stored one (another request won), or
 * `'refused'` when the right code's write was refused for another reason (`REFUSED`: no replay).
 */
export async function acceptTotpCode(
  deps: TotpAcceptDeps,
  ctx: VerifierContext,
  via: Via,
  device: MfaDevice,
  code: string,
  record: (step: number) => Promise<MfaDevice | null | 'refused'>,
): Promise<TotpAcceptResult> {
  if (device.method !== 'totp' || device.totp === null) return { status: 'MISMATCH' };
  const secret = openDeviceSecret(deps.keyRing, device);
  const check = await deps.totp.verify(secret, code, device.totp, { afterStep: device.lastStep });
  if (!check.valid) {
    // Only to tell a replay from a wrong code (for the event); the answer is the same.
    if (check.reason === 'mismatch' && device.lastStep !== null && (await deps.totp.verify(secret, code, device.totp)).valid) {
      replayed(deps, ctx, via, device.id);
      return { status: 'REPLAY' };
    }
    return { status: 'MISMATCH' };
  }
  const updated = await record(check.step);
  if (updated === 'refused') return { status: 'REFUSED' };
  if (!updated) {
    replayed(deps, ctx, via, device.id);
    return { status: 'REPLAY' };
  }
  return { status: 'OK', device: updated };
}

/**
 * What `acceptTotpCodeOnAny` found: a device took the code, a replay, or no device did (`unreadable`: one could not be
 * read; `compared`: how many devices the code was compared with, 0 when none could be read).
 */
export type TotpAcceptAnyResult = { status: 'OK'; device: MfaDevice } | { status: 'REPLAY' } | { status: 'MISMATCH'; unreadable?: UnreadableDeviceSecret; compared: number };

/**
 * `acceptTotpCode` on each of `devices` in turn, until one takes the code or it is a replay (which ends the search).
 * A device whose secret does not open is passed over, so that one broken row does not stop the user's other devices;
 * when another takes the code it is logged, when none does it comes back as `unreadable`: the caller's 500 once
 * nothing else (an sms or email code) takes the code either, since the code may have been that device's.
 */
export async function acceptTotpCodeOnAny(
  deps: TotpAcceptDeps,
  ctx: VerifierContext,
  via: Via,
  devices: readonly MfaDevice[],
  code: string,
  record: (device: MfaDevice, step: number) => Promise<MfaDevice | null | 'refused'>,
): Promise<TotpAcceptAnyResult> {
  const unreadable: UnreadableDeviceSecret[] = [];
  for (const device of devices) {
    let result: TotpAcceptResult;
    try {
      result = await acceptTotpCode(deps, ctx, via, device, code, (step) => record(device, step));
    } catch (err) {
      if (!(err instanceof UnreadableDeviceSecret)) throw err;
      unreadable.push(err);
      continue;
    }
    // REFUSED: the device went (removed, turned off) while its code was checked: no replay, the next device is tried.
    if (result.status === 'MISMATCH' || result.status === 'REFUSED') continue;
    for (const err of unreadable) deps.logger.warn({ ...err.logFields, request_id: ctx.requestId }, 'a device was passed over: its secret does not decrypt');
    return result;
  }
  const compared = devices.length - unreadable.length;
  return unreadable[0] ? { status: 'MISMATCH', unreadable: unreadable[0], compared } : { status: 'MISMATCH', compared };
}

function replayed(deps: TotpAcceptDeps, ctx: VerifierContext, via: Via, deviceId: string): void {
  deps.logger.info({ request_id: ctx.requestId, tenant_id: ctx.tenantId, device_id: deviceId }, 'totp code replay refused');
  emitSafely(deps.events, deps.logger, 'replay.refused', { tenantId: ctx.tenantId, userId: ctx.userId, requestId: ctx.requestId, at: new Date(), deviceId, via });
}

/**
 * `acceptTotpCodeOnAny`'s `record` for a verified device's code: the replay guard's conditional update, and when it
 * changes nothing, whether that was a replay (the device still there and on: `null`) or the device having gone,
 * been turned off or reset meanwhile (`'refused'`): a right code racing a removal is no replay to report.
 */
export const recordTotpStepOf =
  (devices: Pick<MfaDeviceStore, 'recordTotpStep' | 'get'>, ctx: Pick<VerifierContext, 'tenantId' | 'userId'>) =>
  async (device: MfaDevice, step: number): Promise<MfaDevice | null | 'refused'> => {
    const recorded = await devices.recordTotpStep(ctx.tenantId, ctx.userId, device.id, step);
    if (recorded) return recorded;
    const now = await devices.get(ctx.tenantId, ctx.userId, device.id);
    return now?.verified && now.enabled ? null : 'refused';
  };
