/**
 * The kit's OpenAPI 3.1 document. Response and request shapes are zod schemas registered here once;
 * the document's JSON Schemas are generated from them (`z.toJSONSchema`), and the test suite checks
 * real responses of every route against the same schemas.
 */
import { z } from 'zod';
import { DEFAULT_MAX_ENTRIES } from '../routers/device-sync/options.js';
import { MAX_SYNC_DEVICE_NAME_LENGTH, SYNC_TOKEN, writeBodySchema } from '../routers/device-sync/vault.js';
import { MAX_DEVICE_NAME_LENGTH as MAX_MFA_DEVICE_NAME_LENGTH } from '../routers/mfa-devices/options.js';
import { enrollEmailBody, enrollSmsBody, loginVerifyBody } from '../routers/mfa-devices/schemas.js';
import { DEFAULT_MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE, MAX_PAGE } from './pagination.js';
import { MAX_TOTP_PERIOD, MIN_TOTP_PERIOD } from './totp.js';
import { otpCode, USER_ID_MAX_LENGTH } from './validation.js';
import { ACCEPT_PATCH } from './json-body.js';
import { checkNestedOptions, checkOptionsObject, HTTP_TOKEN } from './options.js';
import {
  DEFAULT_MAX_TRUSTED_DEVICE_TTL_SECONDS,
  DEFAULT_TRUSTED_DEVICE_TTL_SECONDS,
  MAX_DEVICE_DETAIL_LENGTH,
  MAX_DEVICE_IP_LENGTH,
  MAX_DEVICE_NAME_LENGTH,
  MAX_FINGERPRINT_LENGTH,
} from './trusted-devices.js';

/** Schemas by component name; `openApiDocument()` turns each into `#/components/schemas/<name>`. */
export const schemaRegistry = z.registry<{ id: string; description?: string }>();

const component = <S extends z.ZodType>(id: string, schema: S, description?: string): S => {
  schemaRegistry.add(schema, description === undefined ? { id } : { id, description });
  return schema;
};

/**
 * A string of the lengths a route's own zod string takes, read from that schema: where a route's limit is no named
 * constant, the document follows the route rather than repeating its literal.
 */
const lengthsOf = (route: z.ZodString): z.ZodString => {
  let s = z.string();
  if (route.minLength !== null) s = s.min(route.minLength);
  if (route.maxLength !== null) s = s.max(route.maxLength);
  return s;
};

/** The user id of a body or query: CONTRACT.md §1 (lib/validation.ts `USER_ID`). */
const userId = z.string().min(1).max(USER_ID_MAX_LENGTH).meta({ example: 'alice' });

/** A one-time code as every verify route takes it (lib/validation.ts `otpCode`). */
const oneTimeCode = lengthsOf(otpCode.in).meta({ example: '123456', description: '6 to 8 digits; spaces and dashes (as authenticator apps show codes) are ignored.' });

const isoTime = z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/).meta({ example: '2026-05-12T12:00:00Z' });

// ---------------------------------------------------------------- errors

export const FieldViolationSchema = component(
  'FieldViolation',
  z.strictObject({
    field: z.string().meta({ example: 'user_id' }),
    code: z.string().meta({ example: 'required' }),
    description: z.string().meta({ example: 'user_id is required' }),
  }),
  'One field-level violation (seed 002 dto.FieldViolation).',
);

export const ProblemSchema = component(
  'Problem',
  z.looseObject({
    type: z.string().meta({ example: 'https://express-mfa-kit.dev/errors/invalid-request' }),
    title: z.string().meta({ example: 'Invalid Request Parameters' }),
    status: z.number().int().meta({ example: 400 }),
    detail: z.string().meta({ example: 'user_id is required' }),
    instance: z.string().meta({ example: '/internal/mfa/totp/devices?user_id=' }),
    code: z.number().int().meta({ example: 40000001 }),
    i18n_key: z.string().meta({ example: 'error.invalid_request' }),
    message: z.string().meta({ example: 'user_id is required' }),
    timestamp: isoTime,
    request_id: z.string().meta({ example: 'req_550e8400-e29b-41d4-a716-446655440000' }),
    trace_id: z.string().optional().meta({ description: "The request's W3C traceparent when valid, as seed 002 shows it: version, trace-id, parent-id, flags.", example: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }),
    span_id: z.string().optional().meta({ description: "The traceparent's parent-id.", example: 'b7ad6b7169203331' }),
    service: z.string().meta({ example: 'mfa-kit' }),
    errors: z.array(FieldViolationSchema).optional(),
    retry_after: z.number().int().optional().meta({ description: 'Seconds to wait (429, 503); also the Retry-After header.' }),
  }),
  'RFC 9457 Problem Details (seed 002 dto.Problem); the default error body of every route.',
);

// ---------------------------------------------------------------- envelopes

export const PageInfoSchema = component(
  'PageInfo',
  z.strictObject({
    page: z.number().int().min(1),
    page_size: z.number().int().min(1),
    total: z.number().int().min(0),
    total_pages: z.number().int().min(0),
    has_next: z.boolean(),
    has_prev: z.boolean(),
  }),
);

const envelope = <T extends z.ZodType>(id: string, item: T) =>
  component(
    id,
    z.strictObject({
      code: z.literal(0).meta({ type: 'integer', description: 'Always 0 on success (seeds 000, 001, 002: integer).' }),
      message: z.literal('success'),
      items: z.array(item),
      total: z.number().int().min(0),
      pagination: PageInfoSchema,
      timestamp: isoTime,
    }),
  );

// ---------------------------------------------------------------- internal router

export const TotpDeviceItemSchema = component(
  'TOTPDeviceItem',
  z.strictObject({
    device_id: z.string().meta({ example: '4b3c9c9c-9a9d-4d1e-8d9f-123456789abc' }),
    device_name: z.string().meta({ example: 'iPhone 15' }),
    enabled: z.boolean(),
    verified: z.boolean(),
    created_at: isoTime,
    last_used_at: isoTime.optional(),
  }),
  'Seed 000 dto.TOTPDeviceItem.',
);
export const TotpDeviceListSchema = envelope('TOTPDeviceListResponse', TotpDeviceItemSchema);

export const TrustedDeviceSchema = component(
  'TrustedDeviceResponse',
  z.strictObject({
    id: z.string(),
    tenant_id: z.string(),
    user_id: z.string(),
    device_fingerprint: z.string(),
    device_name: z.string().optional(),
    device_type: z.string().optional(),
    browser: z.string().optional(),
    os: z.string().optional(),
    ip: z.string().optional(),
    created_at: isoTime,
    trusted_until: isoTime,
  }),
  'Seed 002 dto.TrustedDeviceResponse. A detail the device was never given (device_name, device_type, browser, os, ip) is left out, never null.',
);
export const TrustedDeviceListSchema = envelope('TrustedDeviceListResponse', TrustedDeviceSchema);

export const TrustedDeviceCheckSchema = component(
  'TrustedDeviceCheckResponse',
  z.strictObject({ trusted: z.boolean(), device_id: z.string().optional(), trusted_until: isoTime.optional() }),
);
export const RevokedCountSchema = component('RevokedCount', z.strictObject({ revoked: z.number().int().min(0) }));
export const RemovedCountSchema = component('RemovedCount', z.strictObject({ removed: z.number().int().min(0) }));
const count = z.number().int().min(0);
export const ErasedUserDataSchema = component(
  'ErasedUserData',
  z.strictObject({ erased: z.strictObject({ mfa_devices: count, recovery_codes: count, trusted_devices: count, sync_records: count }) }),
  'What was deleted, per kind of record; all 0 for a user the kit keeps nothing about.',
);

/** A detail of a trusted device the trust route takes (display text, lib/validation.ts `displayText`); `null` is "not given". */
const deviceDetail = (max: number, example: string) =>
  z
    .string()
    .min(1)
    .max(max)
    .nullish()
    .meta({ example, description: 'Text without control characters, line separators or bidirectional controls. null or absent: not given (a renew keeps the stored value).' });

export const TrustDeviceRequestSchema = component(
  'TrustDeviceRequest',
  z.strictObject({
    user_id: userId,
    device_fingerprint: z.string().min(1).max(MAX_FINGERPRINT_LENGTH).meta({ example: 'fp-abc123' }),
    device_name: deviceDetail(MAX_DEVICE_NAME_LENGTH, 'MacBook Pro'),
    device_type: deviceDetail(MAX_DEVICE_DETAIL_LENGTH, 'desktop'),
    browser: deviceDetail(MAX_DEVICE_DETAIL_LENGTH, 'Firefox 140'),
    os: deviceDetail(MAX_DEVICE_DETAIL_LENGTH, 'macOS 15'),
    ip: z
      .string()
      .max(MAX_DEVICE_IP_LENGTH)
      .nullish()
      .meta({ example: '203.0.113.7', description: 'An IPv4 or IPv6 address (as node:net isIP takes it: dotted quad, any IPv6 text form, a zone id too); null or absent: not given.' }),
    ttl_seconds: z
      .number()
      .int()
      .min(1)
      .max(DEFAULT_MAX_TRUSTED_DEVICE_TTL_SECONDS)
      .nullish()
      .meta({
        example: 3600,
        default: DEFAULT_TRUSTED_DEVICE_TTL_SECONDS,
        description: `How long the device stays trusted, from 1 to the router's trustedDevices.maxTtlSeconds (default ${DEFAULT_MAX_TRUSTED_DEVICE_TTL_SECONDS}, which the maximum here shows); null or absent: trustedDevices.defaultTtlSeconds.`,
      }),
  }),
);

export const TotpVerifyRequestSchema = component('InternalTotpVerifyRequest', z.strictObject({ user_id: userId, code: oneTimeCode }));
export const TotpVerifyResponseSchema = component('InternalTotpVerifyResponse', z.strictObject({ valid: z.literal(true), device_id: z.string() }));

// ---------------------------------------------------------------- device sync router

export const DeviceSyncSchema = component(
  'DeviceSyncResponse',
  z.strictObject({
    id: z.string().regex(/^devsync_/).meta({ example: 'devsync_abc123' }),
    device_fingerprint: z.string().meta({ example: 'fp-abc123' }),
    device_name: z.string().meta({ example: 'iPhone 15' }),
    sync_token: z.string().meta({ example: 'hex-sync-token' }),
    totp_devices: z.string().meta({ example: '[{"secret":"JBSWY3DPEHPK3PXP"}]', description: 'The decrypted vault: a JSON string.' }),
    created_at: isoTime,
    last_sync_at: isoTime,
  }),
  'Seed 001 dto.DeviceSyncResponse.',
);
export const DeviceSyncUnreadableSchema = component(
  'DeviceSyncUnreadable',
  DeviceSyncSchema.omit({ totp_devices: true }).extend({
    vault_unreadable: z.literal(true).meta({ description: 'The vault did not decrypt (a damaged row): overwrite it with its sync_token, or delete it.' }),
  }),
  'A record of the list whose vault does not decrypt, without totp_devices.',
);
export const DeviceSyncListItemSchema = component(
  'DeviceSyncListItem',
  z.union([DeviceSyncSchema, DeviceSyncUnreadableSchema]),
  'A record of the list: seed 001 dto.DeviceSyncResponse, or one whose vault does not open, without totp_devices.',
);
export const DeviceSyncListSchema = envelope('DeviceSyncListResponse', DeviceSyncListItemSchema);

export const TotpEntrySchema = component(
  'TotpEntry',
  z.strictObject({
    secret: z.string().min(16).max(256).meta({ example: 'JBSWY3DPEHPK3PXP', description: 'Base32 (RFC 4648) of whole bytes, padded with = or not: 16 to 256 characters.' }),
    issuer: z.string().optional(),
    account: z.string().optional(),
    digits: z.number().int().min(6).max(8).optional(),
    period: z.number().int().min(MIN_TOTP_PERIOD).max(MAX_TOTP_PERIOD).optional(),
    algorithm: z.enum(['SHA1', 'SHA256', 'SHA512']).optional(),
  }),
);
/** The members of the sync route's own body schema (routers/device-sync/vault.ts), whose limits the document reads. */
const syncBody = writeBodySchema(DEFAULT_MAX_ENTRIES).shape;
export const DeviceSyncRequestSchema = component(
  'DeviceSyncRequest',
  z.looseObject({
    device_fingerprint: lengthsOf(syncBody.device_fingerprint),
    device_name: z.string().min(1).max(MAX_SYNC_DEVICE_NAME_LENGTH).meta({ description: 'Trimmed first, then at most the maximum here; not blank.' }),
    totp_devices: z.union([
      z.string().meta({ description: 'A JSON string holding the array.' }),
      z.array(TotpEntrySchema).max(DEFAULT_MAX_ENTRIES).meta({ description: `At most the router's maxEntries (default ${DEFAULT_MAX_ENTRIES}) entries.` }),
    ]),
    sync_token: lengthsOf(syncBody.sync_token.unwrap().unwrap())
      .nullish()
      .meta({ description: 'Required to update an existing record: the sync_token it was last read with. null or absent: none (a create).' }),
  }),
);

// ---------------------------------------------------------------- MFA devices router

const isoMs = z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/).meta({ example: '2024-05-20T12:34:56.000Z' });

export const MfaDeviceSchema = component(
  'MfaDeviceDto',
  z.strictObject({
    id: z.uuid().meta({ example: '4b3c9c9c-9a9d-4d1e-8d9f-123456789abc' }),
    deviceName: z.string().meta({ example: 'Work laptop' }),
    method: z.enum(['totp', 'sms', 'email']),
    verified: z.boolean(),
    enabled: z.boolean(),
    lastUsedAt: isoMs.optional(),
    createdAt: isoMs.optional(),
    destination: z.string().optional().meta({ description: 'sms/email only: the destination, masked.', example: '+44••••••789' }),
  }),
  'Seed 003 MfaDeviceDto, plus enabled and the masked destination of sms/email devices.',
);
export const MfaDeviceListSchema = component('MfaDeviceList', z.array(MfaDeviceSchema), 'Seed 003: a bare array.');
/** A device name as mfaDevicesRouter takes it: trimmed first, then 1 to MAX_DEVICE_NAME_LENGTH characters of display text. */
const mfaDeviceName = z.string().min(1).max(MAX_MFA_DEVICE_NAME_LENGTH).meta({ example: 'iPhone', description: 'Trimmed first, then at most the maximum here; not blank.' });
export const EnrollTotpRequestSchema = component('EnrollTotpRequest', z.strictObject({ deviceName: mfaDeviceName }));
export const EnrollTotpResponseSchema = component(
  'EnrollTotpResponse',
  z.strictObject({
    device: MfaDeviceSchema,
    secret: z.string().regex(/^[A-Z2-7]{32,}$/).meta({ description: 'Base32, 160 bits; shown only here.' }),
    otpauthUrl: z.string().startsWith('otpauth://totp/'),
    qrCode: z.string().startsWith('data:image/png;base64,'),
  }),
);
export const EnrollSmsRequestSchema = component(
  'EnrollSmsRequest',
  z.strictObject({ deviceName: mfaDeviceName, phoneNumber: lengthsOf(enrollSmsBody.shape.phoneNumber).meta({ example: '+447700900123' }) }),
);
export const EnrollEmailRequestSchema = component('EnrollEmailRequest', z.strictObject({ deviceName: mfaDeviceName, email: lengthsOf(enrollEmailBody.shape.email).meta({ example: 'ada@example.com' }) }));
export const EnrollOtpResponseSchema = component('EnrollOtpResponse', z.strictObject({ device: MfaDeviceSchema }));
export const CodeRequestSchema = component('CodeRequest', z.strictObject({ code: oneTimeCode }));
export const ChallengeResponseSchema = component(
  'ChallengeResponse',
  z.strictObject({ sent: z.literal(true), destination: z.string(), purpose: z.enum(['enrollment', 'login']), expiresIn: z.number().int() }),
);
export const UpdateDeviceRequestSchema = component('UpdateDeviceRequest', z.strictObject({ deviceName: mfaDeviceName.optional(), enabled: z.boolean().optional() }));
export const LoginVerifyRequestSchema = component(
  'MfaVerifyRequest',
  z.strictObject({
    code: oneTimeCode.optional(),
    recoveryCode: lengthsOf(loginVerifyBody.shape.recoveryCode.unwrap()).optional(),
    deviceId: z.uuid().optional(),
    rememberDevice: z.boolean().optional(),
    device: z
      .strictObject({
        fingerprint: z.string().min(1).max(MAX_FINGERPRINT_LENGTH),
        name: z.string().min(1).max(MAX_DEVICE_NAME_LENGTH).optional(),
        type: z.string().min(1).max(MAX_DEVICE_DETAIL_LENGTH).optional(),
        browser: z.string().min(1).max(MAX_DEVICE_DETAIL_LENGTH).optional(),
        os: z.string().min(1).max(MAX_DEVICE_DETAIL_LENGTH).optional(),
      })
      .optional(),
  }),
  'Exactly one of code or recoveryCode.',
);
export const LoginVerifyResponseSchema = component(
  'MfaVerifyResponse',
  z.looseObject({
    verified: z.literal(true),
    method: z.enum(['totp', 'sms', 'email', 'recovery_code']),
    deviceId: z.uuid().optional(),
    trustedDevice: z.strictObject({ id: z.string(), trustedUntil: isoMs }).optional(),
    recoveryCodesRemaining: z.number().int().min(0).optional().meta({ description: 'After a recovery code: how many unused ones are left (0: make a new set).' }),
  }),
  'Members the onVerified hook returns are added (e.g. a session token).',
);
export const RecoveryCodesSchema = component('RecoveryCodes', z.strictObject({ codes: z.array(z.string().regex(/^[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}$/).meta({ example: '7k3m-qx9p-2hbd', description: 'Crockford base32, 60 bits; input is case- and dash-insensitive.' })).length(10) }));
export const RecoveryCodesRemainingSchema = component('RecoveryCodesRemaining', z.strictObject({ remaining: z.number().int().min(0) }));
export const UserTrustedDeviceSchema = component(
  'UserTrustedDevice',
  z.strictObject({
    id: z.string(),
    deviceName: z.string().optional(),
    deviceType: z.string().optional(),
    browser: z.string().optional(),
    os: z.string().optional(),
    ip: z.string().optional(),
    createdAt: isoMs,
    trustedUntil: isoMs,
  }),
);
export const UserTrustedDeviceListSchema = component('UserTrustedDeviceList', z.array(UserTrustedDeviceSchema));

// ---------------------------------------------------------------- the document

type JsonObject = Record<string, unknown>;
type Router = 'internal' | 'deviceSync' | 'mfaDevices';

/** One operation of the document, router-relative. */
interface Operation {
  router: Router;
  method: 'get' | 'post' | 'patch' | 'delete';
  path: string;
  summary: string;
  description?: string;
  tag: string;
  query?: Array<{ name: string; required?: boolean; schema: JsonObject; description?: string }>;
  pathParams?: string[];
  body?: z.ZodType;
  /** Status → schema of the body (`null`: no body). */
  responses: Record<number, z.ZodType | null>;
  /**
   * Error statuses (Problems) of this operation besides those every operation of its kind answers, which the document
   * adds by rule (`problemStatuses`): 400, 401, 405, 413, 415, 500 and 503 everywhere (a body sent to any route is
   * read), 403 on the user routers.
   */
  problems: number[];
  /** Headers of the success answers besides those of every answer: a bare list's `X-Total-Count`, a create's `Location`. */
  headers?: Record<string, SuccessHeader>;
}

/** A header of an operation's success answers. */
interface SuccessHeader {
  description: string;
  schema: JsonObject;
  /** The one success status that carries it. @default every success status of the operation */
  status?: number;
}

const TOTAL_COUNT: Record<string, SuccessHeader> = {
  'X-Total-Count': { description: 'How many items the whole list holds (the answer is one page of them).', schema: { type: 'integer', minimum: 0 } },
};

/** A create's 201 `Location` (RFC 9110 §15.3.2): the new resource's path under the router's mount path. */
const createdLocation = (description: string): Record<string, SuccessHeader> => ({
  Location: { status: 201, description: `The new ${description}`, schema: { type: 'string', format: 'uri-reference' } },
});
/** An enrolment's 201. */
const DEVICE_CREATED = createdLocation('device\'s path (under the router\'s mount path): rename or remove it there, verify it at <Location>/verify.');

const ref = (schema: z.ZodType): JsonObject => {
  const id = schemaRegistry.get(schema)?.id;
  if (!id) throw new Error('express-mfa-kit: an OpenAPI schema is not registered');
  return { $ref: `#/components/schemas/${id}` };
};

const USER_ID_PARAM = { name: 'user_id', required: true, schema: { type: 'string', minLength: 1, maxLength: USER_ID_MAX_LENGTH }, description: 'The user the call is about.' };
const PAGE_PARAMS = [
  { name: 'page', schema: { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: 1 }, description: 'Page number, 1-based.' },
  {
    name: 'page_size',
    schema: { type: 'integer', minimum: 1, maximum: DEFAULT_MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE },
    description: `Items per page, at most the router's maxPageSize (default ${DEFAULT_MAX_PAGE_SIZE}, which the maximum here shows).`,
  },
];

/** Every operation of the three routers; `operations` drives both the document and the conformance test. */
export const OPERATIONS: Operation[] = [
  {
    router: 'mfaDevices', method: 'get', path: '/devices', tag: 'MFA devices', summary: 'List the caller\'s MFA devices (seed 003, a bare array)',
    query: PAGE_PARAMS, headers: TOTAL_COUNT, responses: { 200: MfaDeviceListSchema }, problems: [],
  },
  {
    router: 'mfaDevices', method: 'post', path: '/devices/totp', tag: 'MFA devices', summary: 'Enrol a TOTP device: the secret, otpauth URL and QR code are shown only here',
    body: EnrollTotpRequestSchema, headers: DEVICE_CREATED, responses: { 201: EnrollTotpResponseSchema }, problems: [409],
  },
  {
    router: 'mfaDevices', method: 'post', path: '/devices/sms', tag: 'MFA devices', summary: 'Enrol an sms device; a code is sent',
    body: EnrollSmsRequestSchema, headers: DEVICE_CREATED, responses: { 201: EnrollOtpResponseSchema }, problems: [409, 429],
  },
  {
    router: 'mfaDevices', method: 'post', path: '/devices/email', tag: 'MFA devices', summary: 'Enrol an email device; a code is sent',
    body: EnrollEmailRequestSchema, headers: DEVICE_CREATED, responses: { 201: EnrollOtpResponseSchema }, problems: [409, 429],
  },
  {
    router: 'mfaDevices', method: 'post', path: '/devices/{id}/verify', tag: 'MFA devices', summary: 'Verify a new device with a code from it',
    pathParams: ['id'], body: CodeRequestSchema, responses: { 200: MfaDeviceSchema }, problems: [404, 429],
  },
  {
    router: 'mfaDevices', method: 'post', path: '/devices/{id}/challenge', tag: 'MFA devices', summary: 'Send a fresh code to an sms/email device',
    pathParams: ['id'], responses: { 202: ChallengeResponseSchema }, problems: [404, 429],
  },
  {
    router: 'mfaDevices', method: 'patch', path: '/devices/{id}', tag: 'MFA devices', summary: 'Rename, enable or disable a device',
    pathParams: ['id'], body: UpdateDeviceRequestSchema, responses: { 200: MfaDeviceSchema }, problems: [404],
  },
  {
    router: 'mfaDevices', method: 'delete', path: '/devices/{id}', tag: 'MFA devices', summary: 'Remove a device (the last verified one also revokes the caller\'s trusted devices)',
    pathParams: ['id'], responses: { 204: null }, problems: [404],
  },
  {
    router: 'mfaDevices', method: 'post', path: '/verify', tag: 'MFA devices', summary: 'Verify the second factor at login (code or recovery code; optionally remember this device)',
    body: LoginVerifyRequestSchema, responses: { 200: LoginVerifyResponseSchema }, problems: [429],
  },
  {
    router: 'mfaDevices', method: 'post', path: '/recovery-codes', tag: 'MFA devices', summary: 'Generate 10 recovery codes, replacing earlier ones',
    description: 'Only for a user with a verified device (else 400 mfa-not-enrolled). Removing the last verified device removes the codes. Counts against the per-user rate limit of the verify and send routes. No body, or `{}`: a member is refused by name (400).',
    responses: { 201: RecoveryCodesSchema }, problems: [429],
  },
  {
    router: 'mfaDevices', method: 'get', path: '/recovery-codes', tag: 'MFA devices', summary: 'How many recovery codes remain',
    responses: { 200: RecoveryCodesRemainingSchema }, problems: [],
  },
  {
    router: 'mfaDevices', method: 'get', path: '/trusted-devices', tag: 'MFA devices', summary: 'The caller\'s own trusted (remembered) devices',
    query: PAGE_PARAMS, headers: TOTAL_COUNT, responses: { 200: UserTrustedDeviceListSchema }, problems: [],
  },
  {
    router: 'mfaDevices', method: 'delete', path: '/trusted-devices/{id}', tag: 'MFA devices', summary: 'Revoke one of the caller\'s trusted devices',
    pathParams: ['id'], responses: { 204: null }, problems: [404],
  },
  {
    router: 'mfaDevices', method: 'delete', path: '/trusted-devices', tag: 'MFA devices', summary: 'Revoke all of the caller\'s trusted devices',
    description: 'A trailing slash (`…/trusted-devices/`, a revoke of one device whose id came out empty) names no device: 404, nothing revoked.',
    responses: { 200: RevokedCountSchema }, problems: [404],
  },
  {
    router: 'internal', method: 'get', path: '/mfa/totp/devices', tag: 'Internal', summary: 'List a user\'s TOTP devices (seed 000)',
    query: [USER_ID_PARAM, ...PAGE_PARAMS], responses: { 200: TotpDeviceListSchema }, problems: [],
  },
  {
    router: 'internal', method: 'delete', path: '/mfa/totp/devices/{id}', tag: 'Internal', summary: 'Remove one of a user\'s TOTP devices (a lost phone)',
    description: 'As the user\'s own removal: the last verified device takes the user\'s trusted devices and recovery codes with it. 404 for a device of another method, user or tenant.',
    pathParams: ['id'], query: [USER_ID_PARAM], responses: { 204: null }, problems: [404],
  },
  {
    router: 'internal', method: 'delete', path: '/mfa/devices', tag: 'Internal', summary: 'Remove every MFA device of a user (a reset by support)',
    description: 'All methods (totp, sms, email); removing the last verified one takes the user\'s trusted devices and recovery codes with it. The user enrols again.',
    query: [USER_ID_PARAM], responses: { 200: RemovedCountSchema }, problems: [],
  },
  {
    router: 'internal', method: 'post', path: '/mfa/totp/verify', tag: 'Internal', summary: 'Verify a TOTP code for a user (replay-safe, throttled)',
    body: TotpVerifyRequestSchema, responses: { 200: TotpVerifyResponseSchema }, problems: [429],
  },
  {
    router: 'internal', method: 'get', path: '/session/trusted-devices', tag: 'Internal', summary: 'List a user\'s trusted devices (seed 002)',
    query: [USER_ID_PARAM, ...PAGE_PARAMS, { name: 'include_expired', schema: { type: 'boolean', default: false }, description: 'Also list devices past trusted_until, until a retention sweep (cleanupExpired, npm run cleanup) deletes them.' }],
    responses: { 200: TrustedDeviceListSchema }, problems: [],
  },
  {
    router: 'internal', method: 'post', path: '/session/trusted-devices', tag: 'Internal', summary: 'Trust (or renew) a device for a user',
    body: TrustDeviceRequestSchema, headers: createdLocation('record\'s path (under the router\'s mount path), with its user_id: DELETE it there to revoke it.'), responses: { 201: TrustedDeviceSchema }, problems: [],
  },
  {
    router: 'internal', method: 'get', path: '/session/trusted-devices/check', tag: 'Internal', summary: 'Is this device trusted for this user? (the hot path, served from the cache)',
    query: [USER_ID_PARAM, { name: 'device_fingerprint', required: true, schema: { type: 'string', minLength: 1, maxLength: MAX_FINGERPRINT_LENGTH } }],
    responses: { 200: TrustedDeviceCheckSchema }, problems: [],
  },
  {
    router: 'internal', method: 'delete', path: '/session/trusted-devices/{id}', tag: 'Internal', summary: 'Revoke one trusted device',
    pathParams: ['id'], query: [USER_ID_PARAM], responses: { 204: null }, problems: [404],
  },
  {
    router: 'internal', method: 'delete', path: '/session/trusted-devices', tag: 'Internal', summary: 'Revoke all of a user\'s trusted devices',
    description: 'A trailing slash (`…/trusted-devices/`, a revoke of one device whose id came out empty) names no device: 404, nothing revoked.',
    query: [USER_ID_PARAM], responses: { 200: RevokedCountSchema }, problems: [404],
  },
  {
    router: 'internal', method: 'delete', path: '/mfa/user-data', tag: 'Internal', summary: 'Erase everything kept about a user (account deletion)',
    description: 'In one transaction: MFA devices (and pending codes), recovery codes, trusted devices (the next check answers false on every instance), synced vaults and the lockout counter. Re-runnable.',
    query: [USER_ID_PARAM], responses: { 200: ErasedUserDataSchema }, problems: [],
  },
  {
    router: 'deviceSync', method: 'get', path: '/', tag: 'Device sync', summary: 'List the caller\'s synced vaults, decrypted (seed 001)',
    query: PAGE_PARAMS, responses: { 200: DeviceSyncListSchema }, problems: [],
  },
  {
    router: 'deviceSync', method: 'post', path: '/', tag: 'Device sync', summary: 'Create or update the vault of a device (optimistic concurrency on sync_token)',
    body: DeviceSyncRequestSchema, responses: { 201: DeviceSyncSchema, 200: DeviceSyncSchema }, problems: [409],
    headers: createdLocation('record\'s path (under the router\'s mount path): GET or DELETE it there.'),
  },
  {
    router: 'deviceSync', method: 'get', path: '/{id}', tag: 'Device sync', summary: 'Get one synced vault',
    pathParams: ['id'], responses: { 200: DeviceSyncSchema }, problems: [404],
  },
  {
    router: 'deviceSync', method: 'delete', path: '/{id}', tag: 'Device sync', summary: 'Delete one synced vault',
    pathParams: ['id'], responses: { 204: null }, problems: [404, 409],
    query: [
      {
        name: 'sync_token',
        schema: { type: 'string', minLength: SYNC_TOKEN.minLength ?? 1, maxLength: SYNC_TOKEN.maxLength ?? 128 },
        description: 'The sync_token the record was last read with: then it is deleted only if it still carries it, else 409 SYNC_CONFLICT with the current one. Absent: deleted whatever its version.',
      },
    ],
  },
];

export interface OpenApiOptions {
  /** Where each router is mounted. @default { mfaDevices: '/auth/mfa', deviceSync: '/mfa/devices/sync', internal: '/internal' } */
  mounts?: Partial<Record<Router, string>>;
  /** `servers` of the document. @default [] */
  servers?: Array<{ url: string; description?: string }>;
  /** `info.version`. @default '0.1.0' */
  version?: string;
  /**
   * How each router was set up, where it changes what a client sends, in the routers' own option names: the internal
   * router's `keyHeader` and the header it reads the tenant from (`tenant: tenantFrom.header(name)`), and whether it
   * has its TOTP verify route (it has one with a `keyRing`); each user router's `tenantHeader`.
   * @default { internal: { keyHeader: 'X-Internal-API-Key', tenantHeader: 'X-Tenant-ID', totpVerify: true }, mfaDevices: { tenantHeader: 'X-Tenant-ID' }, deviceSync: { tenantHeader: 'X-Tenant-ID' } }
   */
  routers?: {
    internal?: { keyHeader?: string; tenantHeader?: string; totpVerify?: boolean };
    mfaDevices?: { tenantHeader?: string };
    deviceSync?: { tenantHeader?: string };
  };
}

export const DEFAULT_MOUNTS: Record<Router, string> = { mfaDevices: '/auth/mfa', deviceSync: '/mfa/devices/sync', internal: '/internal' };

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 400: 'Invalid request', 401: 'Missing or invalid credentials',
  403: 'Tenant mismatch', 404: 'Not found (also: another tenant\'s or user\'s)', 405: 'The path has no such method (Allow lists those it has)', 409: 'Conflict', 413: 'Body too large', 415: 'Body is not UTF-8 JSON',
  429: 'Throttled or locked (Retry-After)', 500: 'Internal error (no detail)', 503: 'Storage or code delivery unavailable (Retry-After)',
};

/** The challenge every 401 carries (RFC 9110 §15.5.2), by who is refused; the internal one names `keyHeader`. */
const challenges = (keyHeader: string): Record<Router, string> => ({
  mfaDevices:
    '`Bearer` without a token; `Bearer error="invalid_token", …` for a token that is not accepted (RFC 6750 §3.1); with `stepUp`, `Bearer error="insufficient_user_authentication", …` on a change of factors by a token that shows no recent second factor (RFC 9470).',
  deviceSync:
    '`Bearer` without a token; `Bearer error="invalid_token", …` for a token that is not accepted (RFC 6750 §3.1); with `stepUp`, `Bearer error="insufficient_user_authentication", …` for a token that shows no second factor (RFC 9470).',
  internal: `\`ApiKey header="${keyHeader.toLowerCase()}"\`: the header the key goes in.`,
});

/**
 * Every error status of an operation: its own `problems`, and what every operation of its kind answers. 400: a query
 * string that is not percent-encoded UTF-8, and a missing or malformed tenant (the internal router's `X-Tenant-ID`; a
 * user router's malformed `X-Tenant-ID` or token claim). 403: a user router's `X-Tenant-ID` that is not the token's.
 * 405: the operation's path with a method it does not have (lib/method-not-allowed.ts), answered for every path.
 * 413 and 415: a body over the limit or not UTF-8 JSON, whatever the method (lib/prelude.ts reads a body sent to any
 * route that answers the method and path, a GET's or DELETE's too).
 */
function problemStatuses(op: Operation): number[] {
  const statuses = new Set([...op.problems, 400, 401, 405, 413, 415, 500, 503]);
  if (op.router !== 'internal') statuses.add(403);
  return [...statuses].sort((a, b) => a - b);
}

/** `components.headers`: the response headers several answers share. */
const HEADERS = {
  RequestId: {
    description: 'Every answer: the request\'s id, the X-Request-ID sent when it is well-formed, else a new one (a Problem\'s request_id).',
    required: true,
    schema: { type: 'string' },
  },
  NoStore: { description: 'Every answer: no cache may keep it (answers are per caller and per moment).', required: true, schema: { type: 'string', const: 'no-store' } },
  RetryAfter: { description: 'Seconds to wait before retrying (RFC 9110 §10.2.3); the Problem\'s retry_after.', required: true, schema: { type: 'integer', minimum: 0 } },
  Allow: { description: 'The methods the path has (RFC 9110 §10.2.1), e.g. `DELETE, GET, HEAD`.', required: true, schema: { type: 'string' } },
} as const;
const headerRef = (name: keyof typeof HEADERS): JsonObject => ({ $ref: `#/components/headers/${name}` });
/** What every answer of the routers carries (lib/prelude.ts: request id, no-store). */
const everyAnswer = (): JsonObject => ({ 'X-Request-ID': headerRef('RequestId'), 'Cache-Control': headerRef('NoStore') });

const problemResponse = (status: number, router: Router, method: Operation['method'], challenge: Record<Router, string>): JsonObject => ({
  description: STATUS_TEXT[status] ?? 'Error',
  headers: {
    ...everyAnswer(),
    ...(status === 415 &&
      method === 'patch' && {
        'Accept-Patch': { description: 'With a JSON Patch body (application/json-patch+json): the types a PATCH takes (RFC 5789 §3.1).', required: false, schema: { type: 'string', const: ACCEPT_PATCH } },
      }),
    ...(status === 401 && { 'WWW-Authenticate': { description: challenge[router], required: true, schema: { type: 'string' } } }),
    ...(status === 405 && { Allow: headerRef('Allow') }),
    ...((status === 429 || status === 503) && { 'Retry-After': headerRef('RetryAfter') }),
  },
  content: { 'application/problem+json': { schema: ref(ProblemSchema) } },
});

/** The full path of an operation under the given mounts, in OpenAPI form (`/internal/session/trusted-devices/{id}`). */
export function operationPath(op: Pick<Operation, 'router' | 'path'>, mounts: Record<Router, string> = DEFAULT_MOUNTS): string {
  const base = mounts[op.router].replace(/\/$/, '');
  return op.path === '/' ? base || '/' : `${base}${op.path}`;
}

/**
 * A mount path as Express 5 takes it literally and OpenAPI writes it: `/` and segments of unreserved characters and the
 * sub-delimiters path-to-regexp 8 does not reserve (no `:param`, `*`, `{…}`, nor `(`, `)`, `[`, `]`, `?`, `+`, `!`).
 */
const MOUNT_PATH = /^\/[A-Za-z0-9._~$&',;=@%/-]*$/;

/** Builds the OpenAPI 3.1 document of the kit's routes. */
export function openApiDocument(options: OpenApiOptions = {}): JsonObject {
  const given: unknown = options;
  checkOptionsObject('openApiDocument', given, ['mounts', 'servers', 'version', 'routers'], "{ mounts: { internal: '/internal' } }");
  checkNestedOptions('openApiDocument', 'routers', options.routers, Object.keys(DEFAULT_MOUNTS), "{ internal: { keyHeader: 'X-Api-Key' } }");
  const set = options.routers ?? {};
  checkNestedOptions('openApiDocument', 'routers.internal', set.internal, ['keyHeader', 'tenantHeader', 'totpVerify'], "{ keyHeader: 'X-Internal-API-Key' }");
  checkNestedOptions('openApiDocument', 'routers.mfaDevices', set.mfaDevices, ['tenantHeader'], "{ tenantHeader: 'X-Tenant-ID' }");
  checkNestedOptions('openApiDocument', 'routers.deviceSync', set.deviceSync, ['tenantHeader'], "{ tenantHeader: 'X-Tenant-ID' }");
  const internalKeyHeader = set.internal?.keyHeader ?? 'X-Internal-API-Key';
  const tenantHeaders: Record<Router, string> = {
    internal: set.internal?.tenantHeader ?? 'X-Tenant-ID',
    mfaDevices: set.mfaDevices?.tenantHeader ?? 'X-Tenant-ID',
    deviceSync: set.deviceSync?.tenantHeader ?? 'X-Tenant-ID',
  };
  const totpVerify = set.internal?.totpVerify ?? true;
  const headerOptions: Array<[string, unknown]> = [['internal.keyHeader', internalKeyHeader], ...Object.entries(tenantHeaders).map(([router, header]): [string, unknown] => [`${router}.tenantHeader`, header])];
  for (const [name, header] of headerOptions) {
    if (typeof header !== 'string' || !HTTP_TOKEN.test(header.toLowerCase())) {
      throw new TypeError(`express-mfa-kit: openApiDocument() option 'routers.${name}' must be an HTTP header name, e.g. '${name.endsWith('keyHeader') ? 'X-Internal-API-Key' : 'X-Tenant-ID'}'`);
    }
  }
  if (typeof totpVerify !== 'boolean') throw new TypeError("express-mfa-kit: openApiDocument() option 'routers.internal.totpVerify' must be a boolean: false when the internal router has no keyRing");
  const challenge = challenges(internalKeyHeader);
  checkNestedOptions('openApiDocument', 'mounts', options.mounts, Object.keys(DEFAULT_MOUNTS), "{ internal: '/internal' }");
  for (const [router, mount] of Object.entries(options.mounts ?? {})) {
    if (typeof mount !== 'string' || !MOUNT_PATH.test(mount)) {
      throw new TypeError(`express-mfa-kit: openApiDocument() option 'mounts.${router}' must be a path that begins with '/' and has no parameters, e.g. '${DEFAULT_MOUNTS[router as Router]}'`);
    }
  }
  const servers: unknown = options.servers;
  const isServer = (s: unknown): boolean => {
    const { url, description } = (typeof s === 'object' && s !== null ? s : {}) as { url?: unknown; description?: unknown };
    return typeof url === 'string' && (description === undefined || typeof description === 'string');
  };
  if (servers !== undefined && (!Array.isArray(servers) || !servers.every(isServer))) {
    throw new TypeError("express-mfa-kit: openApiDocument() option 'servers' must be a list of { url, description? }, e.g. servers: [{ url: 'https://api.example.com' }]");
  }
  if (options.version !== undefined && (typeof options.version !== 'string' || options.version === '')) {
    throw new TypeError("express-mfa-kit: openApiDocument() option 'version' must be the API's version as text, e.g. version: '1.2.0'");
  }
  const mounts = { ...DEFAULT_MOUNTS, ...options.mounts };
  const generated = z.toJSONSchema(schemaRegistry, { uri: (id) => `#/components/schemas/${id}` }) as { schemas: Record<string, JsonObject> };
  const schemas = Object.fromEntries(
    Object.entries(generated.schemas).map(([id, schema]) => {
      const { $schema: _s, $id: _i, ...rest } = schema;
      return [id, rest];
    }),
  );
  const paths: Record<string, Record<string, JsonObject>> = {};
  for (const op of OPERATIONS) {
    // The internal TOTP verify route exists only on a router given a keyRing.
    if (!totpVerify && op.router === 'internal' && op.path === '/mfa/totp/verify') continue;
    const path = operationPath(op, mounts);
    const responses: Record<string, JsonObject> = {};
    for (const [status, schema] of Object.entries(op.responses)) {
      const own = Object.entries(op.headers ?? {}).filter(([, h]) => h.status === undefined || h.status === Number(status));
      responses[status] = {
        description: STATUS_TEXT[Number(status)] ?? '',
        headers: { ...everyAnswer(), ...Object.fromEntries(own.map(([name, h]) => [name, { description: h.description, required: true, schema: h.schema }])) },
        ...(schema !== null && { content: { 'application/json': { schema: ref(schema) } } }),
      };
    }
    for (const status of problemStatuses(op)) responses[String(status)] = problemResponse(status, op.router, op.method, challenge);
    const parameters = [
      ...(op.pathParams ?? []).map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
      ...(op.query ?? []).map((q) => ({ name: q.name, in: 'query', required: q.required ?? false, schema: q.schema, ...(q.description && { description: q.description }) })),
      ...(op.router === 'internal'
        ? [{ name: tenantHeaders.internal, in: 'header', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' } }]
        : [{ name: tenantHeaders[op.router], in: 'header', required: false, schema: { type: 'string' }, description: 'When sent, must equal the token\'s tenant claim (else 403).' }]),
    ];
    (paths[path] ??= {})[op.method] = {
      tags: [op.tag],
      summary: op.summary,
      ...(op.description && { description: op.description }),
      operationId: `${op.method}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      security: op.router === 'internal' ? [{ internalKey: [] }] : [{ bearerJwt: [] }],
      parameters,
      ...(op.body && { requestBody: { required: true, content: { 'application/json': { schema: ref(op.body) } } } }),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'express-mfa-kit',
      version: options.version ?? '0.1.0',
      description: 'Multi-factor device management for Express: MFA devices, login second factor, recovery codes, trusted devices, encrypted authenticator vault sync, and internal routes for sibling services. Errors are RFC 9457 Problems.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: options.servers ?? [],
    tags: [{ name: 'MFA devices' }, { name: 'Device sync' }, { name: 'Internal' }],
    paths,
    components: {
      schemas,
      headers: structuredClone(HEADERS),
      securitySchemes: {
        bearerJwt: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Claims: sub = user id, tenant_id = tenant.' },
        internalKey: { type: 'apiKey', in: 'header', name: internalKeyHeader },
      },
    },
  };
}
