/** The kit's one error catalogue and the one error type every middleware and handler passes to `next()`. */
import { STATUS_CODES } from 'node:http';

/** What a catalogue entry says about one kind of problem. */
export interface ErrorSpec {
  /** HTTP status sent with it. */
  readonly status: number;
  /** Stable integer business code (`<status><5 digits>`): clients branch on it. */
  readonly code: number;
  /** Short summary; the same for every instance of the kind (RFC 9457 `title`). */
  readonly title: string;
  /** Client-side translation key. */
  readonly i18nKey: string;
  /** Last segment of the problem `type` URI. */
  readonly slug: string;
  /** Detail used when the thrower gives none. */
  readonly detail: string;
}

const spec = (status: number, code: number, slug: string, title: string, detail: string): ErrorSpec => ({
  status,
  code,
  slug,
  title,
  detail,
  i18nKey: `error.${slug.replaceAll('-', '_')}`,
});

/** Every problem the kit can answer with, by `UPPER_SNAKE` key. Codes never change once published. */
export const ERROR_CATALOGUE = {
  VALIDATION_FAILED: spec(400, 40000001, 'invalid-request', 'Invalid Request Parameters', 'The request has invalid parameters.'),
  MALFORMED_JSON: spec(400, 40000002, 'malformed-json', 'Malformed JSON', 'The request body is not valid JSON.'),
  BAD_HTTP_REQUEST: spec(400, 40000003, 'bad-http-request', 'Bad Request', 'The request is not valid HTTP.'),
  INVALID_CODE: spec(400, 40000010, 'invalid-code', 'Invalid Code', 'Invalid or expired code.'),
  DEVICE_NOT_VERIFIED: spec(400, 40000011, 'device-not-verified', 'Device Not Verified', 'The device has not been verified yet.'),
  DEVICE_ALREADY_VERIFIED: spec(400, 40000012, 'device-already-verified', 'Device Already Verified', 'The device is already verified.'),
  MFA_NOT_ENROLLED: spec(400, 40000013, 'mfa-not-enrolled', 'MFA Not Enrolled', 'The user has no usable second factor.'),
  // [3/7] MFA devices
  METHOD_NOT_ENABLED: spec(400, 40000020, 'method-not-enabled', 'Method Not Enabled', 'This second-factor method is not enabled on this server.'),
  DEVICE_DISABLED: spec(400, 40000021, 'device-disabled', 'Device Disabled', 'The device is disabled.'),
  CHALLENGE_NOT_SUPPORTED: spec(400, 40000022, 'challenge-not-supported', 'Challenge Not Supported', 'Only sms and email devices are sent codes.'),
  UNAUTHENTICATED: spec(401, 40100001, 'unauthenticated', 'Unauthorized', 'Missing, invalid or expired authentication.'),
  INVALID_INTERNAL_KEY: spec(401, 40100002, 'invalid-internal-key', 'Unauthorized', 'Missing or invalid internal API key.'),
  STEP_UP_REQUIRED: spec(401, 40100003, 'step-up-required', 'Second Factor Required', 'This change needs a recent second factor: pass one (POST /verify) and retry with the token your sign-in issues for it.'),
  TENANT_MISMATCH: spec(403, 40300001, 'tenant-mismatch', 'Tenant Mismatch', 'The tenant sent does not match the caller\'s tenant.'),
  NOT_FOUND: spec(404, 40400001, 'not-found', 'Not Found', 'The requested resource does not exist.'),
  DEVICE_NOT_FOUND: spec(404, 40400002, 'device-not-found', 'Device Not Found', 'The device does not exist.'),
  TRUSTED_DEVICE_NOT_FOUND: spec(404, 40400003, 'trusted-device-not-found', 'Trusted Device Not Found', 'The trusted device does not exist.'),
  SYNC_RECORD_NOT_FOUND: spec(404, 40400004, 'sync-record-not-found', 'Sync Record Not Found', 'The sync record does not exist.'),
  METHOD_NOT_ALLOWED: spec(405, 40500001, 'method-not-allowed', 'Method Not Allowed', 'The method is not allowed on this resource.'),
  REQUEST_TIMEOUT: spec(408, 40800001, 'request-timeout', 'Request Timeout', 'The request was not received in time.'),
  CONFLICT: spec(409, 40900001, 'conflict', 'Conflict', 'The request conflicts with the current state.'),
  DEVICE_LIMIT_REACHED: spec(409, 40900002, 'device-limit-reached', 'Device Limit Reached', 'The user has reached the maximum number of devices.'),
  SYNC_CONFLICT: spec(409, 40900003, 'sync-conflict', 'Sync Conflict', 'The sync_token is stale: fetch the record and retry with its current sync_token.'),
  PAYLOAD_TOO_LARGE: spec(413, 41300001, 'payload-too-large', 'Payload Too Large', 'The request body is larger than allowed.'),
  URI_TOO_LONG: spec(414, 41400001, 'uri-too-long', 'URI Too Long', 'The request target is longer than allowed.'),
  EXPECTATION_FAILED: spec(417, 41700001, 'expectation-failed', 'Expectation Failed', 'The Expect header asks for what this server does not do: only 100-continue is met.'),
  UNSUPPORTED_MEDIA_TYPE: spec(415, 41500001, 'unsupported-media-type', 'Unsupported Media Type', 'The request body must be application/json.'),
  TOO_MANY_REQUESTS: spec(429, 42900001, 'too-many-requests', 'Too Many Requests', 'Too many requests: retry later.'),
  MFA_LOCKED: spec(429, 42900002, 'mfa-locked', 'Too Many Failed Attempts', 'Too many failed attempts: verification is locked for a while.'),
  HEADERS_TOO_LARGE: spec(431, 43100001, 'request-header-fields-too-large', 'Request Header Fields Too Large', 'The request line or headers are larger than allowed.'),
  // An error of the host's own (http-errors: `createError(410)`) whose status has no entry of its own here: answered
  // with that status (the 400 below is a placeholder), its reason phrase as title, code `<status>00000`.
  HTTP_ERROR: spec(400, 40000000, 'http-error', 'Bad Request', "An error of the host's own: its status, and its message when it is one to show."),
  INTERNAL: spec(500, 50000001, 'internal', 'Internal Server Error', 'An unexpected error occurred.'),
  DECRYPTION_FAILED: spec(500, 50000002, 'internal', 'Internal Server Error', 'An unexpected error occurred.'),
  STORAGE_UNAVAILABLE: spec(503, 50300001, 'storage-unavailable', 'Service Unavailable', 'Storage is temporarily unavailable: retry later.'),
  CODE_DELIVERY_FAILED: spec(503, 50300010, 'code-delivery-failed', 'Service Unavailable', 'The code could not be sent: retry later.'),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorKey = keyof typeof ERROR_CATALOGUE;

/** One field-level violation (seed 002 `dto.FieldViolation`). */
export interface FieldViolation {
  /** Dot path of the field, `a.b[0].c`. */
  field: string;
  /** Machine code: `required`, `type`, `format`, `range`, `unknown`, … */
  code: string;
  description: string;
}

export interface ProblemInit {
  detail?: string;
  errors?: FieldViolation[];
  /** Seconds, for 429 and 503; also sent as `Retry-After`. */
  retryAfter?: number;
  /** Extension members added to the body (e.g. `sync_token`). Never put secrets here. */
  extensions?: Record<string, unknown>;
  /**
   * The `WWW-Authenticate` challenge of a 401 (RFC 9110 §11.6.1: a 401 carries at least one), e.g.
   * `Bearer error="invalid_token"` (RFC 6750 §3), or of a 400 for a malformed credential (`error="invalid_request"`,
   * RFC 6750 §3.1). Without it a 401 gets its key's default (`Bearer` for `UNAUTHENTICATED`, `ApiKey` for
   * `INVALID_INTERNAL_KEY`), and another status none.
   */
  challenge?: string;
  /**
   * Other header fields the answer calls for, e.g. `Accept-Encoding` on a 415 for a Content-Encoding the server does
   * not decode (RFC 9110 §12.5.3). Set after the kit's own headers (`Retry-After`, `WWW-Authenticate`): not those.
   */
  headers?: Readonly<Record<string, string>>;
  /**
   * Fields the log line of an unexpected (5xx) problem carries, beside its request id; never sent to the client.
   * Ids and names only: nothing of a secret or of the content.
   */
  logFields?: Readonly<Record<string, string | number>>;
  cause?: unknown;
}

/** The error every part of the kit raises; the formatter turns it into a response. */
export class ProblemError extends Error {
  readonly key: ErrorKey;
  readonly spec: ErrorSpec;
  readonly status: number;
  readonly detail: string;
  readonly errors: FieldViolation[] | undefined;
  readonly retryAfter: number | undefined;
  readonly extensions: Record<string, unknown> | undefined;
  readonly challenge: string | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  readonly logFields: Readonly<Record<string, string | number>> | undefined;

  constructor(key: ErrorKey, init: ProblemInit = {}) {
    const entry = ERROR_CATALOGUE[key];
    const detail = init.detail ?? entry.detail;
    super(detail, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'ProblemError';
    this.key = key;
    this.spec = entry;
    this.status = entry.status;
    this.detail = detail;
    this.errors = init.errors;
    this.retryAfter = init.retryAfter;
    this.extensions = init.extensions;
    this.challenge = init.challenge;
    this.headers = init.headers;
    this.logFields = init.logFields;
  }

  static from(key: ErrorKey, init?: ProblemInit | string): ProblemError {
    return new ProblemError(key, typeof init === 'string' ? { detail: init } : init);
  }

  /** 400 `VALIDATION_FAILED` for one field's violation: its description is the Problem's detail too. */
  static invalid(field: string, code: string, description: string, init: Omit<ProblemInit, 'detail' | 'errors'> = {}): ProblemError {
    return new ProblemError('VALIDATION_FAILED', { ...init, detail: description, errors: [{ field, code, description }] });
  }

  /**
   * `HTTP_ERROR` with `status` (400–599): an error of the host's own with a status the catalogue has no entry for. Its
   * title is the status's reason phrase, its code `<status>00000`, its detail `init.detail` or the reason phrase.
   */
  static forStatus(status: number, init: ProblemInit = {}): ProblemError {
    const title = STATUS_CODES[status] ?? 'Error';
    const problem = new ProblemError('HTTP_ERROR', { ...init, detail: init.detail ?? `${title}.` });
    const own: ErrorSpec = { ...problem.spec, status, code: status * 100_000, title, i18nKey: `error.http_${status}` };
    return Object.assign(problem, { spec: own, status });
  }
}

export const isProblemError = (err: unknown): err is ProblemError => err instanceof ProblemError;

/** The `type` of the error `jsonBody()` throws for a body that is not UTF-8 (body-parser keeps it), for `problemJson`. */
export const INVALID_UTF8 = 'entity.utf8.invalid';

// 57P0x admin/crash shutdown, cannot connect now, idle-session timeout; 53xxx out of resources;
// 57014 statement timeout; 55P03 lock timeout; 25P03 idle-in-transaction timeout; 3D000 database gone;
// 25006 a write on a server that takes none (a standby during a fail-over); 40001 serialization failure and 40P01
// deadlock: Postgres rolled the statement back after it lost a race (a single statement under a host's REPEATABLE READ
// or SERIALIZABLE default: the kit's own transactions run at READ COMMITTED), and the same request again runs on
// fresh data.
const PG_UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '57P05', '53300', '53400', '57014', '55P03', '25P03', '3D000', '25006', '40001', '40P01']);
const NET_UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/**
 * Messages of pg / knex errors that carry no code: a dropped or timed-out connection ("Connection
 * terminated unexpectedly", "… due to connection timeout"), pg's client-side `query_timeout`
 * ("Query read timeout"), a client or pool already closed (during a restart or shutdown).
 */
const STORAGE_DOWN_MESSAGES =
  /Connection terminated|Connection ended unexpectedly|connection is closed|Client has encountered a connection error|Client was closed and is not queryable|timeout exceeded when trying to connect|(?:^| - )timeout expired$|Query read timeout|Unable to acquire a connection/i;

/**
 * Whether an error from the storage layer means "the database is unreachable or overloaded"
 * (answer 503 and let the client retry) rather than a bug: refused or dropped connections,
 * a pool that could not hand out a connection in time, an admin shutdown, a statement timeout.
 */
export function isStorageUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; name?: unknown; message?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && (PG_UNAVAILABLE_CODES.has(e.code) || NET_UNAVAILABLE_CODES.has(e.code) || e.code.startsWith('08'))) return true;
  if (e.name === 'KnexTimeoutError') return true;
  // 55000 is a broad class; only its "ALTER DATABASE … ALLOW_CONNECTIONS false" form means unavailable.
  if (e.code === '55000' && typeof e.message === 'string' && /not currently accepting connections/i.test(e.message)) return true;
  if (typeof e.message === 'string' && STORAGE_DOWN_MESSAGES.test(e.message)) return true;
  if (Array.isArray(e.errors)) return e.errors.some(isStorageUnavailable); // AggregateError from dual-stack connects
  return false;
}
