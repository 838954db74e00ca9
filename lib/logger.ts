/** The logger seam: any pino-compatible logger; the kit logs nothing secret through it. */
import { pino } from 'pino';

/** The subset of pino's API the kit calls. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Header and field paths that are never written to a log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-internal-api-key"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
] as const;

let defaultLogger: Logger | undefined;

/** The logger used when a router is given none: pino at `LOG_LEVEL` (default `info`) on stdout. */
export function getDefaultLogger(): Logger {
  defaultLogger ??= pino({ name: 'express-mfa-kit', level: process.env.LOG_LEVEL ?? 'info', redact: [...REDACT_PATHS] });
  return defaultLogger;
}

/** A logger that drops everything (tests, or hosts that log elsewhere). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
