/** Request schemas of `mfaDevicesRouter` (zod): one per body, failures become the Problem's `errors[]`. */
import { z } from 'zod';
import { MAX_DEVICE_DETAIL_LENGTH, MAX_DEVICE_NAME_LENGTH as MAX_TRUSTED_NAME_LENGTH, MAX_FINGERPRINT_LENGTH } from '../../lib/trusted-devices.js';
import { paginationShape } from '../../lib/pagination.js';
import { deviceNameText, displayText, otpCode, storableText } from '../../lib/validation.js';
import { MAX_DEVICE_NAME_LENGTH } from './options.js';

/** A device name: trimmed first (a pasted "Phone\n" is "Phone"), then 1–100 characters of display text, not blank. */
export const deviceName = deviceNameText(MAX_DEVICE_NAME_LENGTH);

export { deviceIdParam } from '../../lib/validation.js';

export const enrollTotpBody = z.strictObject({ deviceName });

const destinationField = (name: string) =>
  z.string({ error: (iss) => (iss.input === undefined ? `${name} is required` : `${name} must be a string`) }).max(320, { message: 'is too long' });

/** The format itself is checked (and normalised) by the sms/email channel, naming the same field. */
export const enrollSmsBody = z.strictObject({ deviceName, phoneNumber: destinationField('phoneNumber') });
export const enrollEmailBody = z.strictObject({ deviceName, email: destinationField('email') });

export const verifyDeviceBody = z.strictObject({ code: otpCode });

export const updateDeviceBody = z
  .strictObject({ deviceName: deviceName.optional(), enabled: z.boolean().optional() })
  .refine((b) => b.deviceName !== undefined || b.enabled !== undefined, { message: 'give deviceName and/or enabled', params: { kind: 'required' } });

const optionalText = (max: number) => displayText(1, max).optional();

export const loginVerifyBody = z
  .strictObject({
    code: otpCode.optional(),
    recoveryCode: storableText(1, 64).optional(),
    deviceId: z
      .uuid({ message: 'must be a device id (UUID)' })
      .transform((id) => id.toLowerCase())
      .optional(),
    rememberDevice: z.boolean().optional(),
    device: z
      .strictObject({
        fingerprint: storableText(1, MAX_FINGERPRINT_LENGTH),
        name: optionalText(MAX_TRUSTED_NAME_LENGTH),
        type: optionalText(MAX_DEVICE_DETAIL_LENGTH),
        browser: optionalText(MAX_DEVICE_DETAIL_LENGTH),
        os: optionalText(MAX_DEVICE_DETAIL_LENGTH),
      })
      .optional(),
  })
  .superRefine((b, ctx) => {
    if (b.code === undefined && b.recoveryCode === undefined) {
      ctx.addIssue({ code: 'custom', path: ['code'], message: 'give code or recoveryCode', params: { kind: 'required' } });
    } else if (b.code !== undefined && b.recoveryCode !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['recoveryCode'], message: 'give code or recoveryCode, not both', params: { kind: 'invalid' } });
    }
    if (b.recoveryCode !== undefined && b.deviceId !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['deviceId'], message: 'deviceId goes with code, not recoveryCode', params: { kind: 'invalid' } });
    }
    if (b.rememberDevice === true && b.device === undefined) {
      ctx.addIssue({ code: 'custom', path: ['device'], message: 'rememberDevice needs device.fingerprint', params: { kind: 'required' } });
    }
  });

export type LoginVerifyBody = z.output<typeof loginVerifyBody>;

/** `page` / `page_size` of the bare-array lists (CONTRACT.md §3). */
export const pageQuery = z.object(paginationShape());
