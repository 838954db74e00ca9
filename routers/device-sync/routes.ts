/** The routes of CONTRACT.md §6: list, create/update by device fingerprint, get one, delete. */
import type { Request, Router } from 'express';
import { z } from 'zod';
import { contextOf } from '../../lib/context.js';
import { ProblemError } from '../../lib/errors.js';
import { listEnvelope, paginationShape, toPageRequest } from '../../lib/pagination.js';
import { URL_CREDENTIALS } from '../../lib/user-auth.js';
import { namedKeys, parseOrThrow, refuseDeleteExtras } from '../../lib/validation.js';
import type { DeviceSyncRouterConfig } from './options.js';
import { syncService } from './service.js';
import { SYNC_RECORD_ID, SYNC_TOKEN, writeBodySchema } from './vault.js';

/** Tenant and user set by the auth chain that runs before every route. */
function caller(req: Request): { tenantId: string; userId: string } {
  const { tenantId, userId } = contextOf(req);
  if (tenantId === undefined || userId === undefined) throw ProblemError.from('UNAUTHENTICATED');
  return { tenantId, userId };
}

const notFound = () => ProblemError.from('SYNC_RECORD_NOT_FOUND');

/** A stale token: nothing was written or deleted; the current token lets the client re-read, merge and retry. */
const syncConflict = (current: { id: string; syncToken: string } | null, detail: string) =>
  ProblemError.from('SYNC_CONFLICT', { detail, extensions: { sync_token: current?.syncToken ?? null, ...(current && { id: current.id }) } });

/** `syncToken`, `SYNC_TOKEN`, `sync-token`, `last_sync_token`, `sync_tokens`…: a name the client meant as `sync_token`. */
const meansSyncToken = (name: string): boolean => name !== 'sync_token' && name.toLowerCase().replace(/[^a-z0-9]/g, '').includes('synctoken');

/**
 * A write's condition spelt otherwise (`syncToken` in the body) or sent in the query: dropped as the write's other
 * unknown members are (a client may echo a whole record back), the write would go without it, and a record another
 * device deleted or changed would be made again or overwritten instead of the 409. A 400 instead, nothing written.
 */
function refuseMisspeltToken(req: Request): void {
  const inQuery = Object.keys((req.query ?? {}) as Record<string, unknown>).filter((k) => k === 'sync_token' || meansSyncToken(k));
  const body: unknown = req.body;
  const inBody = typeof body === 'object' && body !== null && !Array.isArray(body) ? Object.keys(body).filter(meansSyncToken) : [];
  if (inQuery.length === 0 && inBody.length === 0) return;
  const [field, names] = inBody.length > 0 ? ['(body)', inBody] : ['(query)', inQuery];
  const description = `${field}: ${namedKeys(names)} is not read: a write's condition is the body member sync_token`;
  throw ProblemError.invalid(field, 'unknown', description);
}

export function mountSyncRecords(router: Router, config: DeviceSyncRouterConfig): void {
  const service = syncService(config);
  const listQuery = z.object(paginationShape(config.maxPageSize));
  const writeBody = writeBodySchema(config.maxEntries);
  const deleteQuery = z.object({ sync_token: SYNC_TOKEN.optional() });

  router.get('/', async (req, res) => {
    const { tenantId, userId } = caller(req);
    const page = toPageRequest(parseOrThrow(listQuery, req.query));
    const { items, total } = await service.list(tenantId, userId, { limit: page.pageSize, offset: page.offset }, contextOf(req).requestId);
    res.json(listEnvelope(items, total, page));
  });

  router.post('/', async (req, res) => {
    const { tenantId, userId } = caller(req);
    refuseMisspeltToken(req);
    const body = parseOrThrow(writeBody, req.body);
    const outcome = await service.write(tenantId, userId, body);
    switch (outcome.status) {
      case 'conflict':
        throw syncConflict(
          outcome.current,
          outcome.current
            ? 'The sync_token is missing or stale: fetch the record, merge, and retry with its current sync_token.'
            : 'The record for this device_fingerprint no longer exists: create it again without a sync_token.',
        );
      case 'limit-reached':
        throw ProblemError.from('DEVICE_LIMIT_REACHED', `A user may sync at most ${config.maxRecords} devices: delete one first.`);
      case 'created':
        res.setHeader('Location', `${req.baseUrl}/${outcome.record.id}`);
        res.status(201).json(outcome.record);
        return;
      case 'updated':
        res.status(200).json(outcome.record);
        return;
    }
  });

  router.get('/:id', async (req, res) => {
    const { tenantId, userId } = caller(req);
    const id = req.params.id;
    // An id the router never hands out cannot exist: no query for it.
    if (id === undefined || !SYNC_RECORD_ID.test(id)) throw notFound();
    const record = await service.get(tenantId, userId, id);
    if (!record) throw notFound();
    res.json(record);
  });

  router.delete('/:id', async (req, res) => {
    const { tenantId, userId } = caller(req);
    const id = req.params.id;
    if (id === undefined || !SYNC_RECORD_ID.test(id)) throw notFound();
    // With `sync_token`, only the version the client last read is deleted: a write since then is not lost unseen.
    refuseDeleteExtras(req, ['sync_token'], URL_CREDENTIALS);
    const { sync_token: expectedToken } = parseOrThrow(deleteQuery, req.query);
    const outcome = await service.delete(tenantId, userId, id, expectedToken);
    if (outcome.status === 'not-found') throw notFound();
    if (outcome.status === 'conflict') throw syncConflict(outcome.current, 'The sync_token is stale: the record changed since; fetch it, and delete it with its current sync_token if it is still to go.');
    res.status(204).end();
  });
}
