/**
 * The error formats side by side: one `internalRouter` per format, so the same mistake can be seen
 * answered four ways. test/readme.test.ts checks the README's sample bodies against these answers.
 */
import express, { type Express } from 'express';
import { internalRouter, type ErrorFormat, type MfaStorage, type ProblemFormatter } from 'express-mfa-kit';

// #region readme-formatter
/** Your API's own error envelope: gets the full problem and the catalogue key, returns the body. */
export const envelope: ProblemFormatter = (problem, key) => ({
  body: { ok: false, error: { key, status: problem.status, message: problem.detail, requestId: problem.request_id } },
});
// internalRouter({ storage, internalKeys, errors: { format: envelope } })
// #endregion

/** `/internal` (the default, `problem`), `/simple/internal`, `/nest/internal`, `/function/internal`. */
export function errorFormatsApp(storage: MfaStorage, internalKeys: string, logger: Parameters<typeof internalRouter>[0]['logger']): Express {
  const app = express();
  const formats: Record<string, ErrorFormat> = { '': 'problem', '/simple': 'simple', '/nest': 'nest', '/function': envelope };
  for (const [prefix, format] of Object.entries(formats)) {
    app.use(`${prefix}/internal`, internalRouter({ storage, internalKeys, errors: { format }, ...(logger && { logger }) }));
  }
  return app;
}
