/**
 * `npm run docs:errors`: writes docs/errors.md from `ERROR_CATALOGUE`, so the page cannot drift from
 * the code (test/docs.test.ts fails when the file is not what this renders).
 */
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ERROR_CATALOGUE, type ErrorKey } from '../lib/errors.js';
import { DEFAULT_TYPE_BASE_URI } from '../lib/problem.js';

/** Where the page lives. */
export const ERRORS_DOC = 'docs/errors.md';

/** The whole page, from the catalogue. */
export function renderErrorsDoc(): string {
  const rows = (Object.keys(ERROR_CATALOGUE) as ErrorKey[]).map((key) => {
    const e = ERROR_CATALOGUE[key];
    return `| \`${key}\` | ${e.status} | ${e.code} | ${e.title} | \`${e.slug}\` | \`${e.i18nKey}\` | ${e.detail} |`;
  });
  return `<!-- Generated from ERROR_CATALOGUE (lib/errors.ts) by \`npm run docs:errors\`; test/docs.test.ts checks it is current. Do not edit by hand. -->
# Errors

Every 4xx and 5xx answer of every router comes from one catalogue, \`ERROR_CATALOGUE\` in
[lib/errors.ts](../lib/errors.ts). Clients branch on the integer \`code\` (or, with the \`nest\`
format, on the \`UPPER_SNAKE\` key): it never changes once published; \`detail\` / \`message\` are for
people and may say more than the default below.

| format | what the body carries |
|---|---|
| \`problem\` (default) | RFC 9457 \`application/problem+json\`: \`type\` (\`${DEFAULT_TYPE_BASE_URI}<slug>\`), \`title\`, \`status\`, \`detail\`, \`instance\`, \`code\`, \`i18n_key\`, \`message\`, \`timestamp\`, \`request_id\`, \`trace_id\` / \`span_id\` (a valid \`traceparent\` as seed 002 shows it, \`00-<trace-id>-<parent-id>-<flags>\`, and its parent-id), \`service\`, \`errors[]\` (validation), \`retry_after\` (429, 503) |
| \`simple\` | \`{ code, message, timestamp }\` (seeds 000/001 \`SimpleResponse\`) |
| \`nest\` | \`{ statusCode, error, message, code: '<KEY>' }\` (seed 003 \`ApiErrorResponseDto\`) |
| a function | \`(problem, key, req) => ({ body, contentType? })\` |

Members a route adds (the \`sync_token\` and \`id\` of a \`SYNC_CONFLICT\`) are carried by every format.
429 and 503 also send \`Retry-After\`. A 500 never says what went wrong (the cause is logged with the
request id): \`DECRYPTION_FAILED\` has the same title, type and detail as \`INTERNAL\`, only its code differs.

| key | status | code | title | type slug | i18n_key | default detail |
|---|---|---|---|---|---|---|
${rows.join('\n')}
`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(ERRORS_DOC, renderErrorsDoc());
  console.log(`wrote ${ERRORS_DOC} (${Object.keys(ERROR_CATALOGUE).length} errors)`);
}
