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

export interface TenantOptions {
  /** Where the tenant comes from. @default tenantFrom.header('X-Tenant-ID') */
  from?: TenantExtractor;
  /** A second source that, when present, must be well-formed (→ 400) and agree with the first (→ 403). */
  mustMatch?: TenantExtractor;
}

const invalid = (field: string, detail: string, code: 'required' | 'format') =>
  ProblemError.from('VALIDATION_FAILED', { detail, errors: [{ field, code, description: detail }] });
const malformed = (field: string) => invalid(field, `${field} ${TENANT_ID_RULE}`, 'format');
const wellFormed = (value: unknown): value is string => typeof value === 'string' && TENANT_ID.test(value);

/** Sets `req.mfa.tenantId`: 400 when missing or malformed (either source), 403 when the two sources disagree. */
export function tenant(options: TenantOptions = {}): RequestHandler {
  const given = options.from ?? tenantFrom.header();
  // A header's name where an extractor goes (`tenant: 'X-Tenant-ID'`) would be a 500 on every request: said at set-up.
  // A function of one's own without a label names the tenant `tenant` in its errors.
  if (typeof given !== 'function') {
    throw new TypeError("express-mfa-kit: the tenant must come from tenantFrom.header('X-Tenant-ID'), tenantFrom.claim('tenant_id') or a function of the request, not a string or another value");
  }
  const from: TenantExtractor = typeof given.label === 'string' ? given : Object.assign((req: Request) => given(req), { label: 'tenant' });
  if (options.mustMatch !== undefined && typeof options.mustMatch !== 'function') {
    throw new TypeError("express-mfa-kit: tenant() option 'mustMatch' must be a function of the request, e.g. tenantFrom.claim('tenant_id')");
  }
  const { mustMatch } = options;
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
        next(wellFormed(other) ? ProblemError.from('TENANT_MISMATCH') : malformed(mustMatch.label));
        return;
      }
    }
    contextOf(req).tenantId = value;
    next();
  };
}
