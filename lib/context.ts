/** Per-request state the kit's middleware attaches: request id, tenant, user. */
import type { Request } from 'express';

export interface MfaRequestContext {
  /** Set by `requestId()`. */
  requestId: string;
  /** Set by `tenant()`. */
  tenantId?: string;
  /** Set by user authentication on the user-facing routers. */
  userId?: string;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The kit's per-request context. */
      mfa?: MfaRequestContext;
    }
  }
}

/** The request's context, creating an empty one when no middleware has run yet. */
export function contextOf(req: Request): MfaRequestContext {
  req.mfa ??= { requestId: '' };
  return req.mfa;
}
