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
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const best = known.map((k) => ({ k, d: distance(key, k) })).sort((x, y) => x.d - y.d)[0];
    const hint = best && best.d <= Math.max(2, Math.floor(key.length / 3)) ? ` Did you mean '${best.k}'?` : ` Known options: ${known.join(', ')}.`;
    throw new TypeError(`express-mfa-kit: ${factory}() got an unknown option '${key}'.${hint}`);
  }
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
