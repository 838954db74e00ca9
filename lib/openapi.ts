/**
 * The kit's OpenAPI 3.1 document. Response and request shapes are zod schemas registered here once;
 * the document's JSON Schemas are generated from them (`z.toJSONSchema`), and the test suite checks
 * real responses of every route against the same schemas.
 */
import { z } from 'zod';

/** Schemas by component name; `openApiDocument()` turns each into `#/components/schemas/<name>`. */
export const schemaRegistry = z.registry<{ id: string; description?: string }>();

const component = <S extends z.ZodType>(id: string, schema: S, description?: string): S => {
  schemaRegistry.add(schema, description === undefined ? { id } : { id, description });
  return schema;
};

const isoTime = z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/).meta({ example: '2026-05-12T12:00:00Z' });

// ---------------------------------------------------------------- errors

export const FieldViolationSchema = component(
  'FieldViolation',
  z.object({
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
    trace_id: z.string().optional(),
    span_id: z.string().optional(),
    service: z.string().meta({ example: 'mfa-kit' }),
    errors: z.array(FieldViolationSchema).optional(),
    retry_after: z.number().int().optional().meta({ description: 'Seconds to wait (429, 503); also the Retry-After header.' }),
  }),
  'RFC 9457 Problem Details (seed 002 dto.Problem); the default error body of every route.',
);

// ---------------------------------------------------------------- envelopes

export const PageInfoSchema = component(
  'PageInfo',
  z.object({
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
    z.object({
      code: z.literal(0),
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
  z.object({
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
  z.object({
    id: z.string(),
    tenant_id: z.string(),
    user_id: z.string(),
    device_fingerprint: z.string(),
    device_name: z.string().nullable(),
    device_type: z.string().nullable(),
    browser: z.string().nullable(),
    os: z.string().nullable(),
    ip: z.string().nullable(),
    created_at: isoTime,
    trusted_until: isoTime,
  }),
  'Seed 002 dto.TrustedDeviceResponse.',
);
export const TrustedDeviceListSchema = envelope('TrustedDeviceListResponse', TrustedDeviceSchema);

export const TrustedDeviceCheckSchema = component(
  'TrustedDeviceCheckResponse',
  z.object({ trusted: z.boolean(), device_id: z.string().optional(), trusted_until: isoTime.optional() }),
);
export const RevokedCountSchema = component('RevokedCount', z.object({ revoked: z.number().int().min(0) }));

export const TrustDeviceRequestSchema = component(
  'TrustDeviceRequest',
  z.object({
    user_id: z.string().meta({ example: 'alice' }),
    device_fingerprint: z.string().meta({ example: 'fp-abc123' }),
    device_name: z.string().optional().meta({ example: 'MacBook Pro' }),
    device_type: z.string().optional().meta({ example: 'desktop' }),
    browser: z.string().optional().meta({ example: 'Firefox 140' }),
    os: z.string().optional().meta({ example: 'macOS 15' }),
    ip: z.string().optional().meta({ example: '203.0.113.7' }),
    ttl_seconds: z.number().int().optional().meta({ example: 2592000 }),
  }),
);

export const TotpVerifyRequestSchema = component('InternalTotpVerifyRequest', z.object({ user_id: z.string(), code: z.string().meta({ example: '123456' }) }));
export const TotpVerifyResponseSchema = component('InternalTotpVerifyResponse', z.object({ valid: z.literal(true), device_id: z.string() }));

// ---------------------------------------------------------------- device sync router

export const DeviceSyncSchema = component(
  'DeviceSyncResponse',
  z.object({
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
export const DeviceSyncListSchema = envelope('DeviceSyncListResponse', DeviceSyncSchema);

export const TotpEntrySchema = component(
  'TotpEntry',
  z.object({
    secret: z.string().meta({ example: 'JBSWY3DPEHPK3PXP' }),
    issuer: z.string().optional(),
    account: z.string().optional(),
    digits: z.number().int().min(6).max(8).optional(),
    period: z.number().int().min(15).max(120).optional(),
    algorithm: z.enum(['SHA1', 'SHA256', 'SHA512']).optional(),
  }),
);
export const DeviceSyncRequestSchema = component(
  'DeviceSyncRequest',
  z.object({
    device_fingerprint: z.string(),
    device_name: z.string(),
    totp_devices: z.union([z.string(), z.array(TotpEntrySchema)]),
    sync_token: z.string().optional().meta({ description: 'Required to update an existing record: the sync_token it was last read with.' }),
  }),
);
