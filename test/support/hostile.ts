/**
 * fast-check arbitraries for hostile HTTP input: strings (unicode edge cases, NUL, lone surrogates,
 * SQL and header injection, huge), absurd numbers, JSON values with prototype-pollution keys, raw
 * bodies (malformed, huge, deeply nested), query strings (repeated and odd parameters) and headers.
 */
import fc from 'fast-check';

/** A query string value as it goes on the wire: already percent-encoded (or deliberately not). */
export type RawQuery = Array<[name: string, rawValue: string]>;

/** A request body as bytes on the wire. */
export interface RawBody {
  /** JSON text, or anything else. */
  text: string;
  /** `undefined`: no Content-Type header at all. */
  contentType: string | undefined;
}

export const SQL_INJECTION = [
  "' OR '1'='1",
  "'; DROP TABLE mfa_devices; --",
  '" OR ""="',
  "1; SELECT pg_sleep(10) --",
  "alice' UNION SELECT secret_ciphertext FROM mfa_devices --",
  '\\x27 OR 1=1',
  "$$; DELETE FROM sync_records; $$",
  "') OR tenant_id <> ('",
  '%27%20OR%201%3D1',
  '?', '$1', ':id', '??', '\\',
];

export const HEADER_INJECTION = [
  '\r\nSet-Cookie: injected=1',
  '\nX-Injected: 1',
  'a\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n',
  '%0d%0aX-Injected:%201',
  '\u560d\u560aX-Injected: 1', // code units whose low bytes are CR LF
  '\u0000X-Injected: 1',
];

export const UNICODE_EDGE = [
  '\u0000',
  'a\u0000b',
  '\uD800',
  '\uDFFF',
  'x\uDC00y',
  '\uD83D', // first half of an emoji
  '\uFEFF',
  '\u202Eevil',
  '\u200B',
  '\u0085',
  '\u2028\u2029',
  'İıſK', // case-folding oddities
  '１２３', // full-width digits
  '٣', // Arabic-Indic digit
  'e\u0301', // combining mark
  '👩‍👩‍👧‍👦',
  '\uFFFF',
  '\u{10FFFF}',
  '\x7F',
  '\t\n\r\v\f',
];

export const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', '__defineGetter__', 'hasOwnProperty', 'toString', 'valueOf'];

export const ODD_NUMBER_STRINGS = ['-0', '0', '-1', '1e309', '-1e309', '1e-400', 'NaN', 'Infinity', '-Infinity', '0x10', '0o7', '0b1', '1_000', '00001', '1.0', '1.5', '+1', ' 1', '1 ', '9'.repeat(400), '9007199254740993', '-9007199254740993', '2147483648', '4294967296', ''];

/** Absurd JSON numbers (JSON cannot carry NaN/Infinity: those become strings above). */
export const absurdNumber = (): fc.Arbitrary<number> =>
  fc.oneof(
    fc.constantFrom(0, -0, -1, 1, 0.5, 1e308, -1e308, 5e-324, 2 ** 53 + 2, -(2 ** 53) - 2, 2 ** 31, 2 ** 32, 2 ** 63, 6, 8, 30, 100, 101),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
  );

/** Strings a client should never be able to hurt the server with. */
export const hostileString = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
    { weight: 2, arbitrary: fc.constantFrom(...SQL_INJECTION, ...HEADER_INJECTION, ...UNICODE_EDGE, ...PROTO_KEYS, ...ODD_NUMBER_STRINGS) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...UNICODE_EDGE, ...SQL_INJECTION), fc.string({ maxLength: 10 })).map(([a, b]) => `${b}${a}${b}`) },
    { weight: 1, arbitrary: fc.nat({ max: 3_000 }).map((n) => 'x'.repeat(n)) },
  );

/** Any JSON value, now and then with hostile strings, absurd numbers or prototype keys. */
export const hostileJson = (): fc.Arbitrary<unknown> =>
  fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      hostileString(),
      absurdNumber(),
      fc.boolean(),
      fc.constant(null),
      fc.array(tie('value'), { maxLength: 5 }),
      fc.dictionary(fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom(...PROTO_KEYS)), tie('value'), { maxKeys: 5 }),
    ),
  })).value;

/** JSON text for a value, with `__proto__`-style keys made own members (as JSON.parse on the server will). */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value);
}

/** Raw JSON text that is not produced by JSON.stringify: pollution payloads, nesting, malformed. */
export const rawJsonText = (): fc.Arbitrary<string> =>
  fc.oneof(
    fc.constantFrom(
      '{"__proto__":{"polluted":"yes"}}',
      '{"constructor":{"prototype":{"polluted":"yes"}}}',
      '{"__proto__":{"toString":"x"},"constructor":{"prototype":{"isAdmin":true}}}',
      '[{"__proto__":{"polluted":"yes"}}]',
      '',
      ' ',
      'null',
      'true',
      '0',
      '"string"',
      '[]',
      '{}',
      '{',
      '{"a":',
      '{"a":1,}',
      "{'a':1}",
      '{"a":1}{"b":2}',
      '\uFEFF{}',
      '{"a":"\\ud800"}',
      '{"a":"\\u0000"}',
      '{"a":1e999}',
      '{"a":-1e999}',
      'NaN',
      '{"a":NaN}',
      '[1,2,3',
      '\u0000',
      '{"a":1,"a":2,"a":{"__proto__":null}}',
    ),
    // Deep nesting (well under the body limit): arrays, objects, mixed.
    fc.integer({ min: 100, max: 30_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
    fc.integer({ min: 100, max: 10_000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)),
    fc.integer({ min: 100, max: 10_000 }).map((n) => '{"__proto__":'.repeat(n) + '{}' + '}'.repeat(n)),
    // Unbalanced nesting.
    fc.integer({ min: 1, max: 50_000 }).map((n) => '['.repeat(n)),
  );

/** Bodies over a limit: `bytes` of valid-looking JSON. */
export const hugeJsonText = (bytes: number): fc.Arbitrary<string> =>
  fc.constantFrom(
    `{"a":"${'x'.repeat(bytes)}"}`,
    `[${'1,'.repeat(Math.ceil(bytes / 2))}1]`,
    `{${Array.from({ length: Math.ceil(bytes / 12) }, (_, i) => `"k${i}":1`).join(',')}}`,
  );

export const contentTypes = (): fc.Arbitrary<string | undefined> =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constant('application/json') },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        undefined,
        'application/json; charset=utf-8',
        'application/json; charset=utf-16',
        'application/json; charset=latin1',
        'application/json; charset=nonsense',
        'application/merge-patch+json',
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/xml',
        'APPLICATION/JSON',
        'application/jsonx',
        'json',
        '',
        '*/*',
      ),
    },
  );

/** Percent-encodes a string for a URL; lone surrogates (which encodeURIComponent refuses) become WTF-8 bytes. */
export function encodeLoose(value: string): string {
  let out = '';
  for (const ch of value) {
    const code = ch.codePointAt(0)!;
    if (code >= 0xd800 && code <= 0xdfff) {
      out += `%${(0xe0 | (code >> 12)).toString(16)}%${(0x80 | ((code >> 6) & 0x3f)).toString(16)}%${(0x80 | (code & 0x3f)).toString(16)}`.toUpperCase();
    } else {
      out += encodeURIComponent(ch);
    }
  }
  return out;
}

/** A raw (already encoded) query or path segment value, now and then malformed percent-encoding. */
export const rawComponent = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: hostileString().map(encodeLoose) },
    { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '%E0%A4%A', '%C0%AF', '%FF%FE', '%00', '%0D%0AX-Injected:%201', '+', '%2B', '..%2F..%2F', '%252e%252e%252f', '%u0041', '[]', '[0]', '=') },
  );

/** Extra query parameters: odd names (qs-style brackets, prototype keys), repeated, empty. */
export const extraQuery = (): fc.Arbitrary<RawQuery> =>
  fc.array(
    fc.tuple(
      fc.oneof(
        fc.constantFrom('__proto__', 'constructor', '__proto__[polluted]', 'constructor[prototype][polluted]', 'a[b][c]', 'a[]', '', 'user_id[]', 'page[$gt]', 'x-internal-api-key', 'api_key', 'tenant_id'),
        fc.string({ maxLength: 8 }).map(encodeLoose),
      ),
      rawComponent(),
    ),
    { maxLength: 4 },
  );

export function queryString(query: RawQuery): string {
  if (query.length === 0) return '';
  return '?' + query.map(([name, value]) => (value === '' && name.endsWith('=') ? name : `${name}=${value}`)).join('&');
}

const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Header values Node's client can send (no CR/LF/controls: those never reach the app, the HTTP parser refuses them). */
export const headerValue = (): fc.Arbitrary<string> =>
  fc.oneof(
    hostileString().map((s) => (HEADER_VALUE.test(s) ? s : encodeLoose(s))),
    fc.constantFrom('', ' ', 'null', 'undefined', '[object Object]', 'a'.repeat(4_000), '%0d%0aX-Injected: 1', '\x80\xff', 'acme, other', 'acme;other'),
  );
