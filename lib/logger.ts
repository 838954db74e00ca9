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

/** pino's levels: what `LOG_LEVEL` may name. */
export const LOG_LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * The logger used when a router is given none: pino at `LOG_LEVEL` (default `info`, also when empty) on stdout. A
 * `LOG_LEVEL` that is no level is not the host's start failing in a router: `info`, and a warning that says so.
 */
export function getDefaultLogger(): Logger {
  if (defaultLogger) return defaultLogger;
  const asked = process.env.LOG_LEVEL?.trim() || 'info';
  const known = LOG_LEVELS.includes(asked);
  const logger = pino({ name: 'express-mfa-kit', level: known ? asked : 'info', redact: [...REDACT_PATHS] });
  if (!known) logger.warn({ LOG_LEVEL: asked.slice(0, 32) }, `LOG_LEVEL is none of ${LOG_LEVELS.join(', ')}: logging at info`);
  defaultLogger = logger;
  return logger;
}

/** A logger that drops everything (tests, or hosts that log elsewhere). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
