/** Tenant extraction: small composable extractors (as passport-jwt's) and the `tenant()` middleware. */
import type { Request, RequestHandler } from 'express';
import { contextOf } from './context.js';
import { ProblemError } from './errors.js';
import { TENANT_ID, TENANT_ID_RULE } from './validation.js';

/** Reads a tenant id candidate from a request; `undefined` when the source has none. */
export type TenantExtractor = ((req: Request) => unknown) & { readonly label: string };

const extractor = (label: string, fn: (req: Request) => unknown): TenantExtractor => Object.assign(fn, { label });

/** Where a tenant id may come from. */
export const tenantFrom = {
  /** A request header (its name is also the field named in errors). @default 'X-Tenant-ID' */
  header(name = 'X-Tenant-ID'): TenantExtractor {
    const lower = name.toLowerCase();
    return extractor(name, (req) => req.headers[lower]);
  },
  /** A claim of the authenticated user (`req.user`, as passport sets it). @default 'tenant_id' */
  claim(name = 'tenant_id'): TenantExtractor {
    return extractor(name, (req) => {
      const user = (req as { user?: unknown }).user as Record<string, unknown> | undefined;
      return user && typeof user === 'object' ? user[name] : undefined;
    });
  },
  /** The first extractor that yields a value. */
  any(extractors: readonly TenantExtractor[]): TenantExtractor {
    return extractor(extractors.map((e) => e.label).join(' | '), (req) => {
      for (const e of extractors) {
        const v = e(req);
        if (v !== undefined && v !== null && v !== '') return v;
      }
      return undefined;
    });
  },
};

/** Where a tenant id is read: a `tenantFrom` extractor, or a function of one's own (its errors then name `tenant`). */
export type TenantSource = TenantExtractor | ((req: Request) => unknown);

export interface TenantOptions {
  /** Where the tenant comes from. @default tenantFrom.header('X-Tenant-ID') */
  from?: TenantSource;
  /** A second source that, when present, must be well-formed (→ 400) and agree with the first (→ 403). */
  mustMatch?: TenantSource;
}

/**
 * `source` as an extractor with a label, checked at set-up: a header's name where an extractor goes (`tenant:
 * 'X-Tenant-ID'`) would be a 500 on every request. A function of one's own without a label is named `tenant`.
 */
function extractorOf(source: unknown, option: string): TenantExtractor {
  if (typeof source !== 'function') {
    throw new TypeError(`express-mfa-kit: tenant option '${option}' must be tenantFrom.header('X-Tenant-ID'), tenantFrom.claim('tenant_id') or a function of the request, not a string or another value`);
  }
  const fn = source as (req: Request) => unknown;
  const label = (source as { label?: unknown }).label;
  return typeof label === 'string' ? (fn as TenantExtractor) : extractor('tenant', (req) => fn(req));
}

const invalid = (field: string, detail: string, code: 'required' | 'format') => ProblemError.invalid(field, code, detail);
const malformed = (field: string) => invalid(field, `${field} ${TENANT_ID_RULE}`, 'format');
const wellFormed = (value: unknown): value is string => typeof value === 'string' && TENANT_ID.test(value);

/** Sets `req.mfa.tenantId`: 400 when missing or malformed (either source), 403 when the two sources disagree. */
export function tenant(options: TenantOptions = {}): RequestHandler {
  const from = extractorOf(options.from ?? tenantFrom.header(), 'from');
  const mustMatch = options.mustMatch === undefined ? undefined : extractorOf(options.mustMatch, 'mustMatch');
  return (req, _res, next) => {
    const value = from(req);
    if (value === undefined || value === null || value === '') {
      next(invalid(from.label, `${from.label} is required`, 'required'));
      return;
    }
    if (!wellFormed(value)) {
      next(malformed(from.label));
      return;
    }
    if (mustMatch) {
      const other = mustMatch(req);
      // Malformed is a bad request whatever it would have been compared with.
      if (other !== undefined && other !== value) {
        next(wellFormed(other) ? ProblemError.from('TENANT_MISMATCH', `${mustMatch.label} does not match ${from.label}, the caller's tenant.`) : malformed(mustMatch.label));
        return;
      }
    }
    contextOf(req).tenantId = value;
    next();
  };
}
