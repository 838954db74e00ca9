/**
 * I-JSON (RFC 7493 §2.3): an object's member names MUST be unique. `JSON.parse` keeps the last of two, another
 * parser on the way (a gateway, the caller's own) may keep the first: `{"user_id":"alice","user_id":"bob"}` would
 * then be checked as one user and acted on as another. `jsonBody()` refuses such a body instead (400).
 */

/** The `type` of the error `jsonBody()` throws for a body with a repeated member (body-parser keeps it), for `problemJson`. */
export const DUPLICATE_MEMBER = 'entity.member.duplicate';

const WHITESPACE = new Set([' ', '\t', '\n', '\r']);
/** Where a number, `true`, `false` or `null` ends. */
const LITERAL_END = new Set([',', ']', '}', ':', ' ', '\t', '\n', '\r']);

/**
 * The first member name that an object of `text` repeats (names compared after unescaping, as `JSON.parse` does),
 * or `undefined`. One pass, no recursion. Text that is not JSON is not judged here: the scan stops and the parser
 * reports it.
 */
export function firstDuplicateMember(text: string): string | undefined {
  // One entry per open container: the names seen so far for an object, `null` for an array.
  const open: Array<Set<string> | null> = [];
  let expectName = false;
  // body-parser drops a leading byte order mark before JSON.parse: so does the scan (else it reads it as a literal).
  let i = text.startsWith('\uFEFF') ? 1 : 0;
  while (i < text.length) {
    const c = text[i]!;
    if (WHITESPACE.has(c) || c === ':') {
      i++;
    } else if (c === '{') {
      open.push(new Set());
      expectName = true;
      i++;
    } else if (c === '[') {
      open.push(null);
      expectName = false;
      i++;
    } else if (c === '}' || c === ']') {
      open.pop();
      expectName = false;
      i++;
    } else if (c === ',') {
      expectName = open.at(-1) instanceof Set;
      i++;
    } else if (c === '"') {
      let end = i + 1;
      let escaped = false;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? ((escaped = true), 2) : 1;
      if (end >= text.length) return undefined; // unterminated: the parser says so
      const names = open.at(-1);
      if (expectName && names) {
        let name: string;
        try {
          name = escaped ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        } catch {
          return undefined;
        }
        if (names.has(name)) return name;
        names.add(name);
        expectName = false;
      }
      i = end + 1;
    } else {
      while (i < text.length && !LITERAL_END.has(text[i]!)) i++;
    }
  }
  return undefined;
}
