/**
 * The kit's audit events: a typed `EventEmitter` the routers emit on (enrolment, verification,
 * removal, login second factor, replay, lockout, trusted devices). Payloads carry who, which device
 * and the request id, never a secret, code or destination.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from './logger.js';

/** What every event says. */
export interface MfaEventBase {
  tenantId: string;
  userId: string;
  /** The request that caused it. */
  requestId: string;
  at: Date;
}

/** The base of an event caused by `ctx`'s request, at this instant. */
export const eventBase = (ctx: { tenantId: string; userId: string; requestId: string }): MfaEventBase => ({
  tenantId: ctx.tenantId,
  userId: ctx.userId,
  requestId: ctx.requestId,
  at: new Date(),
});

export type MfaEventMethod = 'totp' | 'sms' | 'email' | 'recovery_code';

export interface DeviceEvent extends MfaEventBase {
  deviceId: string;
  method: 'totp' | 'sms' | 'email';
  /** `device.removed` only: by the user (`DELETE /auth/mfa/devices/:id`) or by a sibling service on the internal routes. */
  via?: 'user' | 'internal';
}

export interface MfaSucceededEvent extends MfaEventBase {
  method: MfaEventMethod;
  /** Absent for recovery codes. */
  deviceId?: string;
  /** Where the code was checked: the login second factor, enrolment, or the internal route. */
  via: 'login' | 'enrollment' | 'internal';
}

export interface MfaFailedEvent extends MfaEventBase {
  /** The device named in the request, if any. */
  deviceId?: string;
  via: 'login' | 'enrollment' | 'internal';
  reason: 'invalid_code' | 'replay' | 'locked';
}

export interface ReplayRefusedEvent extends MfaEventBase {
  deviceId: string;
  via: 'login' | 'enrollment' | 'internal';
}

export interface LockoutEvent extends MfaEventBase {
  /** Seconds until verification opens again. */
  retryAfterSeconds: number;
}

export interface TrustedDeviceEvent extends MfaEventBase {
  /** The trusted device's id; absent when all of the user's were revoked at once. */
  trustedDeviceId?: string;
  /** How many were revoked (revocations only). */
  count?: number;
  /** Revocations only: by the user on their own routes, or with the removal of their last verified device. */
  reason?: 'user' | 'last_device_removed';
  /** Where it was made or revoked: the user's own routes, or the internal routes (a sibling service). Absent with a device's removal. */
  via?: 'user' | 'internal';
}

export interface RecoveryCodesEvent extends MfaEventBase {
  /** Codes made (generated), or unused codes that stopped working (revoked). */
  count: number;
  /** Revocations only: why. */
  reason?: 'last_device_removed';
}

export interface UserErasedEvent extends MfaEventBase {
  /** What was deleted, per kind of record. */
  mfaDevices: number;
  recoveryCodes: number;
  trustedDevices: number;
  syncRecords: number;
}

/** Event name → payload. */
export interface MfaEventMap {
  'device.enrolled': [DeviceEvent];
  'device.verified': [DeviceEvent];
  'device.updated': [DeviceEvent & { enabled: boolean }];
  'device.removed': [DeviceEvent];
  'mfa.succeeded': [MfaSucceededEvent];
  'mfa.failed': [MfaFailedEvent];
  'replay.refused': [ReplayRefusedEvent];
  lockout: [LockoutEvent];
  'trusted_device.created': [TrustedDeviceEvent];
  'trusted_device.revoked': [TrustedDeviceEvent];
  'recovery_codes.generated': [RecoveryCodesEvent];
  'recovery_codes.revoked': [RecoveryCodesEvent];
  'user.erased': [UserErasedEvent];
}

export type MfaEventName = keyof MfaEventMap;

/** The emitter the routers expose as `router.events` (or the one passed as `events`). */
export type MfaEvents = EventEmitter<MfaEventMap>;

/** A new emitter for the kit's events. */
export function createMfaEvents(): MfaEvents {
  return new EventEmitter<MfaEventMap>();
}

/** Emits without letting a listener's throw break the request: listener failures are logged. */
export function emitSafely<K extends MfaEventName>(events: MfaEvents, logger: Logger, name: K, payload: MfaEventMap[K][0]): void {
  try {
    (events.emit as (n: K, p: MfaEventMap[K][0]) => boolean)(name, payload);
  } catch (err) {
    logger.warn({ event: name, request_id: payload.requestId, error: err instanceof Error ? err.name : typeof err }, 'an mfa event listener threw');
  }
}
