/** The shapes `mfaDevicesRouter` answers with (seed 003: camelCase, full ISO times with milliseconds). */
import type { MfaDevice, MfaMethod } from '../../storage/types.js';

/** Seed 003 `MfaDeviceDto`, plus `enabled` (which `PATCH` changes) and, for sms/email, the masked `destination`. */
export interface MfaDeviceDto {
  id: string;
  deviceName: string;
  method: MfaMethod;
  verified: boolean;
  enabled: boolean;
  /** Absent until the device is first used. */
  lastUsedAt?: string;
  createdAt?: string;
  /** sms/email only: the destination masked (`+44••••••789`, `a•••@example.com`). */
  destination?: string;
}

/** The DTO of a device; `destination` is the masked one, for sms/email devices. */
export const toMfaDeviceDto = (d: MfaDevice, destination?: string): MfaDeviceDto => ({
  id: d.id,
  deviceName: d.deviceName,
  method: d.method,
  verified: d.verified,
  enabled: d.enabled,
  ...(d.lastUsedAt && { lastUsedAt: d.lastUsedAt.toISOString() }),
  createdAt: d.createdAt.toISOString(),
  ...(destination !== undefined && { destination }),
});
