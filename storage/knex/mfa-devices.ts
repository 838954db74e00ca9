/** MFA devices on Postgres. */
import type { Knex } from 'knex';
import type { BeforeTrustedCommit, CreateDeviceResult, DeviceRemoval, MfaDevice, MfaDeviceStore, MfaMethod, NewMfaDevice, Page, PageQuery, TotpAlgorithm, WithoutStepUp } from '../types.js';
import { coalesce } from '../coalesce.js';
import { epochMs, fromEpochMs, query, statement } from './statements.js';
import { bumpGeneration, epochIn, holdsWithoutStepUp, kitTransaction, lockRecoveryCodes, lockUser } from './user-locks.js';

/** A `mfa_devices` row as pg returns it. */
export interface MfaDeviceRow {
  tenant_id: string;
  id: string;
  user_id: string;
  method: MfaMethod;
  device_name: string;
  enabled: boolean;
  verified: boolean;
  secret_key_id: string;
  secret_ciphertext: Buffer;
  totp_algorithm: TotpAlgorithm | null;
  totp_digits: number | null;
  totp_period: number | null;
  /** Added by migration 0003; `null` on rows enrolled before it (→ 1). */
  totp_skew?: number | null;
  last_step: string | null;
  created_at: Date;
  last_used_at: Date | null;
  verified_at: Date | null;
  expires_at: Date | null;
}

/** Skew assumed for TOTP rows that carry none. */
export const DEFAULT_STORED_SKEW = 1;

type DeviceDates = Pick<MfaDevice, 'createdAt' | 'lastUsedAt' | 'verifiedAt' | 'expiresAt'>;

function deviceFrom(row: Omit<MfaDeviceRow, 'created_at' | 'last_used_at' | 'verified_at' | 'expires_at'>, dates: DeviceDates): MfaDevice {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    userId: row.user_id,
    method: row.method,
    deviceName: row.device_name,
    enabled: row.enabled,
    verified: row.verified,
    secret: { keyId: row.secret_key_id, data: row.secret_ciphertext },
    totp:
      row.totp_algorithm && row.totp_digits && row.totp_period
        ? { algorithm: row.totp_algorithm, digits: row.totp_digits, period: row.totp_period, skew: row.totp_skew ?? DEFAULT_STORED_SKEW }
        : null,
    lastStep: row.last_step === null ? null : Number(row.last_step),
    ...dates,
  };
}

export const toMfaDevice = (row: MfaDeviceRow): MfaDevice =>
  deviceFrom(row, { createdAt: row.created_at, lastUsedAt: row.last_used_at, verifiedAt: row.verified_at, expiresAt: row.expires_at });

/** A device as the prepared list and replay guard return it: timestamps as epoch ms (storage/knex/statements.ts). */
type MfaDeviceReadRow = Omit<MfaDeviceRow, 'created_at' | 'last_used_at' | 'verified_at' | 'expires_at'> & {
  created_ms: number;
  last_used_ms: number | null;
  verified_ms: number | null;
  expires_ms: number | null;
};

const DEVICE_COLUMNS =
  'tenant_id, id, user_id, method, device_name, enabled, verified, secret_key_id, secret_ciphertext, totp_algorithm, totp_digits, totp_period, totp_skew, last_step, ' +
  `${epochMs('created_at', 'created_ms')}, ${epochMs('last_used_at', 'last_used_ms')}, ${epochMs('verified_at', 'verified_ms')}, ${epochMs('expires_at', 'expires_ms')}`;
const LIST_COLUMNS = `${DEVICE_COLUMNS}, count(*) over () as full_count`;
/**
 * Not an abandoned enrolment (never verified, past its window): those are gone for every reader, swept or not. The
 * moment is the application's clock (bound), as for the removal and the verification that judge the same rows.
 */
const LIVE = '(verified or expires_at is null or expires_at > ?)';
const pageOf = (user: string, byMethod: boolean) =>
  `select ${LIST_COLUMNS} from mfa_devices where tenant_id = ? and user_id = ${user}${byMethod ? ' and method = ?' : ''} and ${LIVE} order by created_at desc, id desc limit ? offset ?`;
const LIST = statement(pageOf('?', false));
const LIST_BY_METHOD = statement(pageOf('?', true));
/** The same page for several users of one tenant (storage/coalesce.ts): the single-user page, once per user. */
const listMany = (byMethod: boolean) =>
  statement(`select d.* from unnest(?::text[]) with ordinality as u (user_id, n)
    cross join lateral (${pageOf('u.user_id', byMethod)}) d order by u.n, d.created_ms desc, d.id desc`);
const LIST_MANY = listMany(false);
const LIST_MANY_BY_METHOD = listMany(true);

const RECORD_TOTP_STEP = statement(`update mfa_devices set last_step = ?, last_used_at = now()
  where tenant_id = ? and user_id = ? and id = ? and method = 'totp' and verified and enabled and (last_step is null or last_step < ?)
  returning ${DEVICE_COLUMNS}`);

const fromReadRow = (row: MfaDeviceReadRow): MfaDevice =>
  deviceFrom(row, { createdAt: new Date(row.created_ms), lastUsedAt: fromEpochMs(row.last_used_ms), verifiedAt: fromEpochMs(row.verified_ms), expiresAt: fromEpochMs(row.expires_ms) });

type ListRow = MfaDeviceReadRow & { full_count: string };

/** One read of a device page, as the coalescer groups them. */
interface ListRead {
  tenantId: string;
  userId: string;
  method: MfaMethod | undefined;
  page: PageQuery;
  /** What "abandoned" is judged against. */
  now: Date;
}

export class KnexMfaDeviceStore implements MfaDeviceStore {
  /** Device listings and every verification's device list: the reads of one round of the event loop in one statement. */
  private readonly readPage: (read: ListRead) => Promise<ListRow[]>;

  /** @param prepared named prepared statements for the list and the replay guard (storage/knex/statements.ts) */
  constructor(
    private readonly knex: Knex,
    private readonly prepared = true,
  ) {
    this.readPage = coalesce<ListRead, ListRow[]>({
      group: (r) => JSON.stringify([r.tenantId, r.method ?? null, r.page.limit, r.page.offset]),
      one: ({ tenantId, userId, method, page, now }) =>
        method
          ? query<ListRow>(this.knex, LIST_BY_METHOD, [tenantId, userId, method, now, page.limit, page.offset], this.prepared)
          : query<ListRow>(this.knex, LIST, [tenantId, userId, now, page.limit, page.offset], this.prepared),
      many: async (reads) => {
        const { tenantId, method, page } = reads[0]!;
        const users = [...new Set(reads.map((r) => r.userId))];
        // A batch reads "now" once: at the latest of its reads' clocks.
        const now = new Date(Math.max(...reads.map((r) => r.now.getTime())));
        const rows = method
          ? await query<ListRow>(this.knex, LIST_MANY_BY_METHOD, [users, tenantId, method, now, page.limit, page.offset], this.prepared)
          : await query<ListRow>(this.knex, LIST_MANY, [users, tenantId, now, page.limit, page.offset], this.prepared);
        const byUser = new Map<string, ListRow[]>();
        for (const row of rows) {
          const list = byUser.get(row.user_id);
          if (list) list.push(row);
          else byUser.set(row.user_id, [row]);
        }
        return reads.map((r) => byUser.get(r.userId) ?? []);
      },
    });
  }

  async list(tenantId: string, userId: string, filter: { method?: MfaMethod; includeAbandoned?: boolean }, page: PageQuery): Promise<Page<MfaDevice>> {
    if (filter.includeAbandoned) {
      // A reset's read, not a hot one: the query builder, every row of the user.
      const scoped = () => {
        const q = this.knex<MfaDeviceRow>('mfa_devices').where({ tenant_id: tenantId, user_id: userId });
        return filter.method ? q.andWhere({ method: filter.method }) : q;
      };
      const rows = (await scoped().select('*').orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'desc' }]).limit(page.limit).offset(page.offset));
      const total = Number((await scoped().count({ n: '*' }).first())?.n ?? 0);
      return { items: rows.map(toMfaDevice), total };
    }
    // One round trip (shared with the other reads of this moment): the window count rides along with the page.
    const now = new Date();
    const rows = await this.readPage({ tenantId, userId, method: filter.method, page, now });
    let total = rows[0] ? Number(rows[0].full_count) : 0;
    if (!rows[0] && page.offset > 0) {
      // A page past the end: the window count has no row to ride on.
      const scoped = this.knex<MfaDeviceRow>('mfa_devices').where({ tenant_id: tenantId, user_id: userId }).andWhereRaw(LIVE, [now]);
      if (filter.method) void scoped.andWhere({ method: filter.method });
      total = Number((await scoped.count({ n: '*' }).first())?.n ?? 0);
    }
    return { items: rows.map(fromReadRow), total };
  }

  async get(tenantId: string, userId: string, id: string): Promise<MfaDevice | null> {
    const row = await this.knex<MfaDeviceRow>('mfa_devices').where({ tenant_id: tenantId, user_id: userId, id }).first();
    return row ? toMfaDevice(row) : null;
  }

  async create(device: NewMfaDevice, limits: { maxDevices: number; now: Date; withoutStepUp?: WithoutStepUp }): Promise<CreateDeviceResult> {
    return this.knex.transaction(async (trx) => {
      await lockUser(trx, device.tenantId, device.userId);
      if (!(await holdsWithoutStepUp(trx, device.tenantId, device.userId, limits.withoutStepUp))) return { status: 'STEP_UP_REQUIRED' as const };
      const mine = () => trx<MfaDeviceRow>('mfa_devices').where({ tenant_id: device.tenantId, user_id: device.userId });
      // Abandoned enrolments do not hold a slot.
      await mine().where({ verified: false }).andWhere('expires_at', '<=', limits.now).delete();
      const count = Number((await mine().count({ n: '*' }).first())?.n ?? 0);
      if (count >= limits.maxDevices) return { status: 'DEVICE_LIMIT_REACHED' as const };
      const [row] = (await trx('mfa_devices')
        .insert({
          tenant_id: device.tenantId,
          id: device.id,
          user_id: device.userId,
          method: device.method,
          device_name: device.deviceName,
          enabled: true,
          verified: false,
          secret_key_id: device.secret.keyId,
          secret_ciphertext: device.secret.data,
          totp_algorithm: device.totp?.algorithm ?? null,
          totp_digits: device.totp?.digits ?? null,
          totp_period: device.totp?.period ?? null,
          totp_skew: device.totp?.skew ?? null,
          expires_at: device.expiresAt,
        })
        .returning('*')) as MfaDeviceRow[];
      return { status: 'OK' as const, device: toMfaDevice(row!) };
    }, kitTransaction());
  }

  async update(tenantId: string, userId: string, id: string, patch: { deviceName?: string; enabled?: boolean }, options: { withoutStepUp?: WithoutStepUp } = {}): Promise<MfaDevice | null> {
    const changes: Partial<MfaDeviceRow> = {};
    if (patch.deviceName !== undefined) changes.device_name = patch.deviceName;
    if (patch.enabled !== undefined) changes.enabled = patch.enabled;
    const { withoutStepUp } = options;
    if (Object.keys(changes).length === 0) return this.get(tenantId, userId, id);
    const write = async (db: Knex) => {
      const [row] = await db<MfaDeviceRow>('mfa_devices').where({ tenant_id: tenantId, user_id: userId, id }).update(changes).returning('*');
      // A disabled device's pending codes go with its being disabled: none is left to pass once it is enabled again.
      if (row && patch.enabled === false) await db('mfa_otp_codes').where({ tenant_id: tenantId, device_id: id }).delete();
      return row ? toMfaDevice(row) : null;
    };
    // Turning a device on or off is a change of factors: under the user's lock, as every such writer (a change asked
    // without step-up judges its condition under it, and must not meet one committing in between). A rename is not.
    if (patch.enabled === undefined && withoutStepUp === undefined) return write(this.knex);
    return this.knex.transaction(async (trx) => {
      await lockUser(trx, tenantId, userId);
      return (await holdsWithoutStepUp(trx, tenantId, userId, withoutStepUp)) ? write(trx) : null;
    }, kitTransaction());
  }

  async markVerified(tenantId: string, userId: string, id: string, opts: { step: number | null; now: Date; withoutStepUp?: WithoutStepUp }): Promise<MfaDevice | null> {
    // Under the user's lock: a removal deciding that it takes the user's last verified device (and with it their
    // recovery codes and trusted devices) counts the verified devices under that lock, and must not count a moment
    // before this one is verified.
    return this.knex.transaction(async (trx) => {
      await lockUser(trx, tenantId, userId);
      if (!(await holdsWithoutStepUp(trx, tenantId, userId, opts.withoutStepUp))) return null;
      return this.markVerifiedIn(trx, tenantId, userId, id, opts);
    }, kitTransaction());
  }

  private async markVerifiedIn(trx: Knex.Transaction, tenantId: string, userId: string, id: string, opts: { step: number | null; now: Date }): Promise<MfaDevice | null> {
    const query = trx<MfaDeviceRow>('mfa_devices')
      .where({ tenant_id: tenantId, user_id: userId, id, verified: false })
      .andWhere((q) => void q.whereNull('expires_at').orWhere('expires_at', '>', opts.now));
    if (opts.step !== null) {
      const step = opts.step;
      void query.andWhere((q) => void q.whereNull('last_step').orWhere('last_step', '<', step));
    }
    const [row] = await query
      .update({
        verified: true,
        verified_at: trx.fn.now(),
        expires_at: null,
        last_used_at: trx.fn.now(),
        ...(opts.step !== null && { last_step: String(opts.step) }),
      })
      .returning('*');
    return row ? toMfaDevice(row) : null;
  }

  async recordTotpStep(tenantId: string, userId: string, id: string, step: number): Promise<MfaDevice | null> {
    // The whole replay decision is this one statement: of two racers with the same step, the
    // second re-evaluates the WHERE on the committed row and matches nothing.
    // Prepared, like the reads: it runs on every accepted code.
    const [row] = await query<MfaDeviceReadRow>(this.knex, RECORD_TOTP_STEP, [String(step), tenantId, userId, id, String(step)], this.prepared);
    return row ? fromReadRow(row) : null;
  }

  async touch(tenantId: string, userId: string, id: string): Promise<void> {
    await this.knex<MfaDeviceRow>('mfa_devices')
      .where({ tenant_id: tenantId, user_id: userId, id })
      .update({ last_used_at: this.knex.fn.now() });
  }

  async remove(tenantId: string, userId: string, id: string, beforeCommit?: BeforeTrustedCommit, options: { withoutStepUp?: WithoutStepUp } = {}): Promise<DeviceRemoval> {
    return this.knex.transaction(async (trx) => {
      // Serialised with other removals of the same user, so two concurrent removals of the last
      // two devices still see that none is left.
      await lockUser(trx, tenantId, userId);
      const mine = { tenant_id: tenantId, user_id: userId };
      if (!(await holdsWithoutStepUp(trx, tenantId, userId, options.withoutStepUp))) {
        const verified = await trx<MfaDeviceRow>('mfa_devices').where({ ...mine, verified: true }).count({ n: '*' }).first();
        return { removed: null, verifiedRemaining: Number(verified?.n ?? 0) };
      }
      const [row] = await trx<MfaDeviceRow>('mfa_devices').where({ ...mine, id }).delete().returning('*');
      const left = await trx<MfaDeviceRow>('mfa_devices').where({ ...mine, verified: true }).count({ n: '*' }).first();
      const removed = row ? toMfaDevice(row) : null;
      const verifiedRemaining = Number(left?.n ?? 0);
      if (!removed?.verified || verifiedRemaining > 0) return { removed, verifiedRemaining };
      // The user's last verified device: the recovery codes and trusted devices that stood in for it go in this
      // transaction, never after it (a crash in between would leave them). The locks in the erasure's order
      // (storage/knex/user-locks.ts); the generation row's lock also waits for a "remember this device" in flight.
      await lockRecoveryCodes(trx, tenantId, userId);
      const trustedGeneration = await bumpGeneration(trx, tenantId, userId);
      const unused = await trx('mfa_recovery_codes').where(mine).whereNull('used_at').count({ n: '*' }).first();
      await trx('mfa_recovery_codes').where(mine).delete();
      const trustedDevices = await trx('trusted_devices').where(mine).delete();
      if (trustedDevices > 0) await beforeCommit?.(trustedGeneration, epochIn(trx));
      return { removed, verifiedRemaining, revoked: { trustedDevices, recoveryCodes: Number(unused?.n ?? 0), trustedGeneration } };
    }, kitTransaction());
  }
}
