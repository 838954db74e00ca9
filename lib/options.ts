/** Set-up checks shared by the router factories: they fail at start-up with the fix in the message. */

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** An HTTP header name, lower-cased (RFC 9110 §5.1 `token`). */
export const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

const looksLikeRequest = (value: object): boolean => 'method' in value && 'headers' in value && ('socket' in value || 'url' in value);

/**
 * Checks a factory's options object: present, not an Express request (the factory was mounted
 * without being called), and no unknown key (with a "did you mean" hint).
 */
export function checkOptionsObject(factory: string, options: unknown, known: readonly string[], example: string): asserts options is Record<string, unknown> {
  if (options === undefined || options === null || typeof options !== 'object') {
    throw new TypeError(`express-mfa-kit: ${factory}() needs an options object, e.g. ${factory}(${example})`);
  }
  if (looksLikeRequest(options)) {
    throw new TypeError(`express-mfa-kit: ${factory} was mounted without being called: use app.use(path, ${factory}(${example})), not app.use(path, ${factory})`);
  }
  checkKnownKeys(`${factory}() got`, options, known);
}

/**
 * Checks that a (nested) options object names only known members, with a "did you mean" hint: a misspelt
 * `lockout: { maxAttempts: 3 }` would otherwise leave the default in force without a word.
 */
function checkKnownKeys(where: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const best = known.map((k) => ({ k, d: distance(key, k) })).sort((x, y) => x.d - y.d)[0];
    const hint = best && best.d <= Math.max(2, Math.floor(key.length / 3)) ? ` Did you mean '${best.k}'?` : ` Known options: ${known.join(', ')}.`;
    throw new TypeError(`express-mfa-kit: ${where} an unknown option '${key}'.${hint}`);
  }
}

/** Checks that a nested option is an object of known members (`name`: its path, e.g. `lockout`). */
export function checkNestedOptions(factory: string, name: string, value: unknown, known: readonly string[], example: string): void {
  if (value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`express-mfa-kit: ${factory}() option '${name}' must be an object, e.g. ${name}: ${example}`);
  }
  checkKnownKeys(`${factory}() option '${name}' has`, value, known);
}

/** Checks that an injected part has the methods the router calls. */
export function checkInjected(factory: string, name: string, value: unknown, methods: readonly string[], fix: string): void {
  if (value === undefined || value === null) {
    throw new TypeError(`express-mfa-kit: ${factory}() needs '${name}': ${fix}`);
  }
  const missing = methods.filter((m) => {
    const parts = m.split('.');
    let cur: unknown = value;
    for (const p of parts) cur = typeof cur === 'object' && cur !== null ? (cur as Record<string, unknown>)[p] : undefined;
    return typeof cur !== 'function';
  });
  if (missing.length > 0) {
    throw new TypeError(`express-mfa-kit: ${factory}() option '${name}' lacks ${missing.join(', ')}: ${fix}`);
  }
}

/** Checks a whole number option within bounds. */
export function checkInteger(factory: string, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new TypeError(`express-mfa-kit: ${factory}() option '${name}' must be an integer from ${min} to ${max}`);
  }
  return value;
}

/**
 * The entries of a comma-separated string or a list of strings (a secret from the environment, or keys in code),
 * trimmed, empty ones dropped. `undefined` (an unset variable) is an empty list: the caller says what to set.
 * Anything else is a TypeError with `fix`.
 */
export function commaList(value: string | readonly string[] | undefined, fix: string): string[] {
  const given: unknown = value ?? [];
  if (typeof given !== 'string' && !(Array.isArray(given) && given.every((k) => typeof k === 'string'))) {
    throw new TypeError(`express-mfa-kit: ${fix}`);
  }
  return (typeof given === 'string' ? given.split(',') : given).map((k) => k.trim()).filter((k) => k !== '');
}

/**
 * Whether `NODE_ENV` names development: unset (or empty), `development` or `test`. Only there does the example server
 * generate secrets and `demoSender` print codes; `production`, and `staging` or `prod` alike, are not development.
 */
export function isDevelopment(nodeEnv: string | undefined = process.env.NODE_ENV): boolean {
  const value = nodeEnv?.trim() ?? '';
  return value === '' || value === 'development' || value === 'test';
}
