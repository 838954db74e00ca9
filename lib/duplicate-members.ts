/**
 * I-JSON (RFC 7493 §2.3): an object's member names MUST be unique. `JSON.parse` keeps the last of two, another
 * parser on the way (a gateway, the caller's own) may keep the first: `{"user_id":"alice","user_id":"bob"}` would
 * then be checked as one user and acted on as another. `jsonBody()` refuses such a body instead (400).
 */

import { namedKeys } from './validation.js';

/** The `type` of the error `jsonBody()` throws for a body with a repeated member (body-parser keeps it), for `problemJson`. */
export const DUPLICATE_MEMBER = 'entity.member.duplicate';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Where a number, `true`, `false` or `null` ends: `,` `]` `}` `:` or white space. */
const endsLiteral = (c: number): boolean => c === 0x2c || c === 0x5d || c === 0x7d || c === 0x3a || c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * The first member name that an object of `text` repeats (names compared after unescaping, as `JSON.parse` does),
 * or `undefined`. One pass, no recursion; strings are crossed with `indexOf`, so it costs less than `JSON.parse`
 * of the same text. Text that is not JSON is not judged here: the scan stops and the parser reports it.
 */
export function firstDuplicateMember(text: string): string | undefined {
  // One entry per open container: the names seen so far for an object, `null` for an array.
  const open: Array<Set<string> | null> = [];
  let expectName = false;
  // body-parser drops a leading byte order mark before JSON.parse: so does the scan (else it reads it as a literal).
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const length = text.length;
  while (i < length) {
    const c = text.charCodeAt(i);
    if (c === 0x7b) {
      // {
      open.push(new Set());
      expectName = true;
      i++;
    } else if (c === 0x5b) {
      // [
      open.push(null);
      expectName = false;
      i++;
    } else if (c === 0x7d || c === 0x5d) {
      // } ]
      open.pop();
      expectName = false;
      i++;
    } else if (c === 0x2c) {
      // ,
      expectName = open.at(-1) instanceof Set;
      i++;
    } else if (c === QUOTE) {
      let end = text.indexOf('"', i + 1);
      // A quote after an odd run of backslashes is part of the string.
      while (end !== -1 && text.charCodeAt(end - 1) === BACKSLASH) {
        let run = 1;
        while (text.charCodeAt(end - 1 - run) === BACKSLASH) run++;
        if (run % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      if (end === -1) return undefined; // unterminated: the parser says so
      const names = open.at(-1);
      if (expectName && names) {
        let name = text.slice(i + 1, end);
        if (name.includes('\\')) {
          try {
            name = JSON.parse(text.slice(i, end + 1)) as string;
          } catch {
            return undefined;
          }
        }
        if (names.has(name)) return name;
        names.add(name);
        expectName = false;
      }
      i = end + 1;
    } else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x3a) {
      i++;
    } else {
      i++;
      while (i < length && !endsLiteral(text.charCodeAt(i))) i++;
    }
  }
  return undefined;
}

/** What a refusal of a repeated member says (after the field it is in). */
export const duplicateMemberMessage = (member: string): string => `the member ${namedKeys([member])} is given more than once in one object`;
