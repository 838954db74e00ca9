/** `DELETE /mfa/user-data`: the identity service erases everything the kit keeps about a user (account deletion). */
import type { Router } from 'express';
import { z } from 'zod';
import { contextOf } from '../../lib/context.js';
import { emitSafely, eventBase } from '../../lib/events.js';
import { sendJson } from '../../lib/send-json.js';
import { parseOrThrow, refuseDeleteExtras, userIdSchema } from '../../lib/validation.js';
import type { InternalRouterConfig } from './options.js';

/** The answer: what was deleted, per kind of record (all 0 for a user the kit knows nothing about). */
export interface ErasedUserDataResponse {
  erased: { mfa_devices: number; recovery_codes: number; trusted_devices: number; sync_records: number };
}

export function mountUserData(router: Router, config: InternalRouterConfig): void {
  const query = z.object({ user_id: userIdSchema });

  router.delete('/mfa/user-data', async (req, res) => {
    refuseDeleteExtras(req, ['user_id']);
    const q = parseOrThrow(query, req.query);
    const { tenantId, requestId } = contextOf(req);
    // As a revocation: the cache is told in the erasure's transaction, and the next check, on every instance, answers
    // from the erased state.
    const change = config.trustedDevices.beginChange(tenantId!, q.user_id);
    const { erased, trustedGeneration } = await change.run((beforeCommit) => config.storage.users.erase(tenantId!, q.user_id, beforeCommit));
    if (erased.trustedDevices > 0) await change.committed(trustedGeneration);
    emitSafely(config.events, config.logger, 'user.erased', { ...eventBase({ tenantId: tenantId!, userId: q.user_id, requestId }), ...erased });
    const body: ErasedUserDataResponse = {
      erased: { mfa_devices: erased.mfaDevices, recovery_codes: erased.recoveryCodes, trusted_devices: erased.trustedDevices, sync_records: erased.syncRecords },
    };
    sendJson(req, res, body);
  });
}
