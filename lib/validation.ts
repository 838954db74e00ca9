/** Request validation with zod: one schema per body or query, failures become the Problem's `errors[]`. */
import { z } from 'zod';
import { ProblemError, type FieldViolation } from './errors.js';

/** Formats a zod path as `a.b[0].c`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/** Names for fields that are not plain body members (headers, for example). */
export type FieldNames = Readonly<Record<string, string>>;

function violationCode(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined ? 'required' : 'type';
    case 'too_small':
    case 'too_big':
    case 'not_multiple_of':
      return 'range';
    case 'invalid_format':
      return 'format';
    case 'unrecognized_keys':
      return 'unknown';
    case 'invalid_value':
      return 'enum';
    case 'custom': {
      const kind: unknown = (issue.params as Record<string, unknown> | undefined)?.kind;
      return typeof kind === 'string' ? kind : 'invalid';
    }
    case 'invalid_element':
    case 'invalid_key':
    case 'invalid_union':
      return 'invalid';
  }
}

/** Control characters (C0, DEL, C1), the line and paragraph separators, and the bidirectional embeddings, overrides and isolates. */
const NOT_DISPLAYABLE = /[\p{Cc}\p{Zl}\p{Zp}\u202A-\u202E\u2066-\u2069]/u;
const NOT_DISPLAYABLE_ALL = new RegExp(NOT_DISPLAYABLE.source, 'gu');

/** Longest part of an unknown member's name, and most names, that a description repeats: the client chose them. */
const NAMED_KEY_CHARS = 40;
const NAMED_KEYS = 5;

/** The name as JSON quotes it, but with what display text refuses (a line separator, a bidi override) escaped too. */
const quoteKey = (key: string): string => JSON.stringify(key).replace(NOT_DISPLAYABLE_ALL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** `"a", "b", … and 3 more`: unknown member names as a description quotes them, each cut short (by code point), a few at most. */
export function namedKeys(keys: readonly string[]): string {
  const named = keys.slice(0, NAMED_KEYS).map((k) => {
    const points = Array.from(k);
    return quoteKey(points.length > NAMED_KEY_CHARS ? `${points.slice(0, NAMED_KEY_CHARS).join('')}…` : k);
  });
  return keys.length > NAMED_KEYS ? `${named.join(', ')} and ${keys.length - NAMED_KEYS} more` : named.join(', ');
}

/** zod's own message for unknown members quotes every name in full; a strict schema's is rebuilt with `namedKeys`. */
const issueMessage = (issue: z.core.$ZodIssue): string =>
  issue.code === 'unrecognized_keys' && issue.message.startsWith('Unrecognized key')
    ? `Unrecognized key${issue.keys.length > 1 ? 's' : ''}: ${namedKeys(issue.keys)}`
    : issue.message;

/** What a request body that is JSON but not an object is told, whichever parser found it. */
export const BODY_NOT_OBJECT = '(body) must be a JSON object';

/** Turns zod issues into field violations with a readable description that never echoes the value. */
export function toViolations(error: z.ZodError, prefix = ''): FieldViolation[] {
  return error.issues.map((issue) => {
    const path = fieldPath(issue.path);
    const field = prefix && path ? `${prefix}.${path}` : prefix || path || '(body)';
    const code = violationCode(issue);
    // A refinement's own message says what is missing better than "is required" ("give code or recoveryCode"),
    // and a message that names its field already ("page must be an integer") is not prefixed with it again.
    const message = issueMessage(issue);
    // A body that is JSON but no object (an array): the words the body parser uses for a scalar (lib/problem.ts).
    if (field === '(body)' && code === 'type' && issue.code === 'invalid_type' && issue.expected === 'object') return { field, code, description: BODY_NOT_OBJECT };
    const description = code === 'required' && issue.code !== 'custom' ? `${field} is required` : message.startsWith(`${field} `) ? message : `${field}: ${message}`;
    return { field, code, description };
  });
}

/**
 * Most violations a 400 lists: a body of 500 wrong vault entries has 3,500, and listing each made a 41 KB request a
 * 470 KB answer. The detail says how many there were.
 */
export const MAX_LISTED_VIOLATIONS = 20;

/** Parses `input` with `schema` or throws a 400 `VALIDATION_FAILED` Problem listing its violations (the first `MAX_LISTED_VIOLATIONS`). */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, prefix = ''): z.output<S> {
  // Schemas are pure, so a failure is parsed again with reportInput: it keeps `issue.input` on the issues, which
  // tells `required` (absent) from `type` (present but wrong) in violationCode; the input itself is never copied
  // into a description. The first parse goes without it: a parse given params measured ~6× slower here (zod 4).
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const failed = schema.safeParse(input, { reportInput: true });
  const errors = toViolations(failed.success ? result.error : failed.error, prefix);
  const first = errors[0]?.description ?? 'Invalid request.';
  if (errors.length <= MAX_LISTED_VIOLATIONS) throw ProblemError.from('VALIDATION_FAILED', { detail: first, errors });
  const detail = `${first} (${errors.length} violations; the first ${MAX_LISTED_VIOLATIONS} are listed)`;
  throw ProblemError.from('VALIDATION_FAILED', { detail, errors: errors.slice(0, MAX_LISTED_VIOLATIONS) });
}

/**
 * What a DELETE is given, checked before anything is deleted: a query with no parameter but `known` (its schema's
 * members), and no body. Dropped as other routes drop them, a misspelt or bracketed condition (`sync_token[]=…`,
 * `SYNC_TOKEN=…`) or a narrowing the route does not have (`?id=…` on a revoke-all) would leave a delete wider than the
 * client meant: an unconditional one instead of its 409, every device instead of one. They are a 400, nothing deleted.
 */
export function refuseDeleteExtras(req: { query: unknown; body: unknown }, known: readonly string[] = [], credentials: readonly string[] = []): void {
  const query = (req.query ?? {}) as Record<string, unknown>;
  // `credentials`: what a host's own authentication may read from the URL (RFC 6750 §2.3 `access_token`); not the route's.
  const unknown = Object.keys(query).filter((k) => !known.includes(k) && !credentials.includes(k));
  const takes = known.length ? `it takes ${known.join(', ')} only` : 'it takes none';
  if (unknown.length > 0) {
    const description = `(query): Unrecognized parameter${unknown.length > 1 ? 's' : ''} ${namedKeys(unknown)}: ${takes}`;
    throw ProblemError.invalid('(query)', 'unknown', description);
  }
  const { body } = req;
  // An empty body a host's own parser read first (`express.text()`: '') is no body either.
  const empty = body === undefined || body === '' || (typeof body === 'object' && body !== null && !Array.isArray(body) && Object.keys(body).length === 0);
  if (!empty) {
    const description = `(body): a DELETE takes no body${known.length ? `: send ${known.join(', ')} in the query` : ''}`;
    throw ProblemError.invalid('(body)', 'unknown', description);
  }
}

/**
 * How many characters `s` has, counted as the schemas count them (zod's `min` / `max`: code points, so an emoji is one),
 * not in UTF-16 units (`length`, where it is two). For the checks made without zod, which must draw the same line.
 */
export function characterCount(s: string): number {
  let count = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const unit = s.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        count--;
        i++;
      }
    }
  }
  return count;
}

/** `min`–`max` characters of well-formed text (no lone surrogate) that `allowed` accepts; else a `format` violation. */
const text = (min: number, max: number, allowed: (s: string) => boolean, message: string) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => s.isWellFormed() && allowed(s), { message, params: { kind: 'format' } });

/** The violation messages of `storableText` and `displayText`, for checks made without zod (lib/trusted-devices.ts). */
export const STORABLE_RULE = 'must be well-formed text without NUL';
export const DISPLAYABLE_RULE = 'must be well-formed text without control characters, line separators or bidirectional overrides';
/** Text Postgres can store faithfully: well-formed (no lone surrogate) and without NUL. */
export const isStorable = (s: string): boolean => s.isWellFormed() && !s.includes('\u0000');
/** Rejects strings JSON can carry but Postgres text cannot store faithfully: NUL and lone surrogates. */
export const storableText = (min: number, max: number) => text(min, max, (s) => !s.includes('\u0000'), STORABLE_RULE);

/**
 * Text people read (device names, type, browser, os): storable, and without control characters (C0, DEL, C1),
 * line separators or bidirectional overrides: a line break, tab or escape sequence in a name would forge lines
 * in a device list, a log viewer or a terminal, and an override (U+202E) shows "Phone\u202Eenod" as "Phonedone".
 * Joiners (emoji sequences) and the left-to-right / right-to-left marks stay allowed.
 */
export const displayText = (min: number, max: number) => text(min, max, (s) => !NOT_DISPLAYABLE.test(s), DISPLAYABLE_RULE);
/** What `displayText` accepts, as a predicate (length aside). */
export const isDisplayable = (s: string): boolean => s.isWellFormed() && !NOT_DISPLAYABLE.test(s);

const INVISIBLE_ONLY = /^[\s\p{Cf}]*$/u;

/** Whether `s` shows nothing: empty, or only white space and invisible format characters (U+200B, U+2060, U+FEFF…). */
export const isBlank = (s: string): boolean => INVISIBLE_ONLY.test(s);

/** A name people give a device: trimmed first (a pasted "Phone\n" is "Phone"), then 1–`max` characters of display text, not blank. */
export const deviceNameText = (max: number) =>
  z.preprocess(
    (v) => (typeof v === 'string' ? v.trim() : v),
    displayText(0, max).refine((s) => !isBlank(s), { message: 'must not be blank', params: { kind: 'format' } }),
  );

/**
 * Route parameter `:id` of an MFA device: anything but a UUID cannot name a device (→ 404, not 400). Lower-cased, as
 * Postgres writes a uuid: the id also binds what is derived from it (a sent code's digest, a lockout's key), and an
 * upper-case spelling of the same device must reach the same ones.
 */
export const deviceIdParam = z.uuid().transform((id) => id.toLowerCase());

/** A one-time code: 6 to 8 digits, with the spaces or dash authenticator apps show tolerated (and removed). */
export const otpCode = z
  .string({ error: (iss) => (iss.input === undefined ? 'code is required' : 'code must be a string') })
  .max(32, { message: 'must be 6 to 8 digits' })
  .transform((s) => s.replace(/[\s-]/g, ''))
  .refine((s) => /^\d{6,8}$/.test(s), { message: 'must be 6 to 8 digits', params: { kind: 'format' } });

/** An integer query parameter (a decimal string), with a default when absent. */
export function intQuery(name: string, bounds: { min: number; max: number; default: number }) {
  return z
    .union([z.string(), z.array(z.string())], { error: `${name} must be a single integer` })
    .optional()
    .transform((raw, ctx): number => {
      if (raw === undefined) return bounds.default;
      if (Array.isArray(raw)) {
        ctx.addIssue({ code: 'custom', message: `${name} must be given once`, params: { kind: 'type' } });
        return z.NEVER;
      }
      if (!/^[+-]?\d{1,15}$/.test(raw)) {
        ctx.addIssue({ code: 'custom', message: `${name} must be an integer`, params: { kind: 'type' } });
        return z.NEVER;
      }
      const n = Number(raw);
      if (n < bounds.min || n > bounds.max) {
        ctx.addIssue({ code: 'custom', message: `${name} must be between ${bounds.min} and ${bounds.max}`, params: { kind: 'range' } });
        return z.NEVER;
      }
      return n;
    });
}

/** A boolean query parameter: `true`/`false`/`1`/`0`, absent means `fallback`. */
export function boolQuery(name: string, fallback: boolean) {
  return z
    .string({ error: `${name} must be true or false` })
    .optional()
    .transform((raw, ctx): boolean => {
      if (raw === undefined) return fallback;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      ctx.addIssue({ code: 'custom', message: `${name} must be true or false`, params: { kind: 'type' } });
      return z.NEVER;
    });
}

/** Longest user id (characters). */
export const USER_ID_MAX_LENGTH = 128;
/**
 * User id: 1–128 characters, no control characters (CONTRACT.md §1), and, as in text people read, no line or
 * paragraph separator and no bidirectional embedding, override or isolate (the marks U+200E, U+200F and U+061C stay
 * allowed, as in device names): a user id is written into every log line and event of the user,
 * and shown beside their devices, where U+2028 would start a forged line and U+202E ("admin\u202Enimda") would show
 * another name.
 */
export const USER_ID = new RegExp(`^[^\\p{Cc}\\p{Zl}\\p{Zp}\\u202A-\\u202E\\u2066-\\u2069]{1,${USER_ID_MAX_LENGTH}}$`, 'u');
/** A well-formed user id (USER_ID, no lone surrogate): the schema's rule as a predicate. */
export const isUserId = (s: string): boolean => USER_ID.test(s) && s.isWellFormed();
/** What a malformed user id is told. */
export const USER_ID_RULE = `must be 1-${USER_ID_MAX_LENGTH} characters without control characters, line separators or bidirectional controls`;
/** Tenant id: 1–64 characters of `[A-Za-z0-9_.-]` (CONTRACT.md §1). */
export const TENANT_ID = /^[A-Za-z0-9_.-]{1,64}$/;
/** What a malformed tenant id is told. */
export const TENANT_ID_RULE = 'must be 1-64 characters of A-Z a-z 0-9 _ . -';

export const userIdSchema = z
  .string({ error: (iss) => (iss.input === undefined ? 'user_id is required' : 'user_id must be a string') })
  .min(1, { message: 'must not be empty' })
  .refine(isUserId, { message: USER_ID_RULE, params: { kind: 'format' } });
