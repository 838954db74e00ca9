/**
 * Removing a user's MFA device, as the user does it (`DELETE /auth/mfa/devices/:id`) and as the identity service
 * does it for them (`DELETE /internal/mfa/totp/devices/:id`, `DELETE /internal/mfa/devices`: a lost phone, a reset
 * by support): the same rule either way, so no route leaves a trusted device or a recovery code behind a second
 * factor that is gone.
 */
import { emitSafely, eventBase, type MfaEvents } from './events.js';
import type { Logger } from './logger.js';
import type { RecoveryCodes } from './recovery-codes.js';
import type { TrustedDeviceChange, TrustedDevices } from './trusted-devices.js';
import type { VerifierContext } from './verification-throttle.js';
import type { DeviceRemoval, MfaDevice, MfaMethod, MfaStorage, WithoutStepUp } from '../storage/types.js';

export interface DeviceRemovalDeps {
  storage: Pick<MfaStorage, 'mfaDevices'>;
  trustedDevices: TrustedDevices;
  recoveryCodes: RecoveryCodes;
  events: MfaEvents;
  logger: Logger;
}

/** An enrolment never verified and past its window: gone for every reader (lists, verification, removal), swept or not. */
export const isAbandoned = (device: MfaDevice, now: Date): boolean => !device.verified && device.expiresAt !== null && device.expiresAt <= now;

/** Who removed it: the user on their own route, or a sibling service on the internal one. */
export type RemovedVia = 'user' | 'internal';

/** Upper bound of the devices one reset removes (the device limit keeps real lists far below it). */
const RESET_CAP = 1000;

/**
 * Removes one device of the user (of `method` only, when given); `null` when the user has no such device. When it
 * was the user's last verified device, the trusted devices and recovery codes that stood in for it go too: codes
 * printed for an earlier enrolment do not come back to life with the next one (GitHub, too, makes new ones).
 */
export async function removeDevice(deps: DeviceRemovalDeps, caller: VerifierContext, id: string, via: RemovedVia, method?: MfaMethod, withoutStepUp?: WithoutStepUp): Promise<MfaDevice | null> {
  if (method) {
    // Only a device of that method: another one of the user's is "no such device" on this route.
    const device = await deps.storage.mfaDevices.get(caller.tenantId, caller.userId, id);
    if (!device || device.method !== method) return null;
  }
  // Should it be the last verified device, its trusted devices go in the removal's transaction, the cache told in it.
  const change = deps.trustedDevices.beginChange(caller.tenantId, caller.userId);
  const { removed, verifiedRemaining, revoked } = await change.run((beforeCommit) => deps.storage.mfaDevices.remove(caller.tenantId, caller.userId, id, beforeCommit, withoutStepUp !== undefined ? { withoutStepUp } : undefined),
  );
  // An abandoned enrolment is gone for every reader already: deleted now, but answered as no such device.
  if (!removed || isAbandoned(removed, new Date())) return null;
  emitSafely(deps.events, deps.logger, 'device.removed', { ...eventBase(caller), deviceId: id, method: removed.method, via });
  // Only a verified device stood for a second factor: an enrolment withdrawn leaves what the user had as it was.
  if (removed.verified && verifiedRemaining === 0) {
    if (revoked) await revokedWithDevice(deps, caller, revoked, change);
    else await revokeOnLastDevice(deps, caller);
  }
  return removed;
}

/** Removes every device of the user (all methods), and so their trusted devices and recovery codes; returns how many devices went. */
export async function removeAllDevices(deps: DeviceRemovalDeps, caller: VerifierContext, via: RemovedVia): Promise<number> {
  // Abandoned enrolments too: gone for every reader already, but their rows (a sealed secret, a destination) go now.
  const { items } = await deps.storage.mfaDevices.list(caller.tenantId, caller.userId, { includeAbandoned: true }, { limit: RESET_CAP, offset: 0 });
  let removed = 0;
  // Each removal that leaves no verified device takes the trusted devices and recovery codes (idempotent).
  for (const device of items) if (await removeDevice(deps, caller, device.id, via)) removed++;
  return removed;
}

/** A store that does not revoke with the removal (no `revoked`): the trusted devices and recovery codes go after it. */
async function revokeOnLastDevice(deps: DeviceRemovalDeps, caller: VerifierContext): Promise<void> {
  announce(deps, caller, await deps.trustedDevices.revokeAll(caller.tenantId, caller.userId), 0);
  announce(deps, caller, 0, await deps.recoveryCodes.revokeAll(caller.tenantId, caller.userId));
}

/**
 * The store revoked them in the removal's transaction (and told the cache in it, when it calls `beforeCommit`): finish
 * telling the cache (every instance) and announce it. With no trusted device deleted (under the generation lock) no
 * cached "trusted" stands for a live row: the cache is left alone, so a Redis fault does not cost every user's
 * entries (an epoch bump) and the caller the wait for it.
 */
async function revokedWithDevice(deps: DeviceRemovalDeps, caller: VerifierContext, revoked: NonNullable<DeviceRemoval['revoked']>, change: TrustedDeviceChange): Promise<void> {
  if (revoked.trustedDevices > 0) await change.committed(revoked.trustedGeneration);
  announce(deps, caller, revoked.trustedDevices, revoked.recoveryCodes);
}

function announce(deps: DeviceRemovalDeps, caller: VerifierContext, trustedDevices: number, recoveryCodes: number): void {
  if (trustedDevices > 0) emitSafely(deps.events, deps.logger, 'trusted_device.revoked', { ...eventBase(caller), count: trustedDevices, reason: 'last_device_removed' });
  if (recoveryCodes > 0) emitSafely(deps.events, deps.logger, 'recovery_codes.revoked', { ...eventBase(caller), count: recoveryCodes, reason: 'last_device_removed' });
}
