/** Trusted devices on Postgres, with the per-user generation and the global cache epoch the cache relies on. */
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { BeforeTrustedCommit, Page, PageQuery, TrustedDevice, TrustedDeviceStore, TrustedDeviceUpsert, TrustedDeviceWrite } from '../types.js';
import { coalesce } from '../coalesce.js';
import { bumpEpoch, bumpGeneration, epochIn, epochOf, hasVerifiedMfaDevice, kitTransaction, READ_CACHE_EPOCH } from './user-locks.js';
import { epochMs, query, statement } from './statements.js';

/** A `trusted_devices` row as pg returns it. */
export interface TrustedDeviceRow {
  tenant_id: string;
  id: string;
  user_id: string;
  fingerprint: string;
  device_name: string | null;
  device_type: string | null;
  browser: string | null;
  os: string | null;
  ip: string | null;
  created_at: Date;
  updated_at: Date;
  trusted_until: Date;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type DeviceFields = Omit<TrustedDeviceRow, 'created_at' | 'updated_at' | 'trusted_until'>;

function deviceFrom(row: DeviceFields, createdAt: Date, trustedUntil: Date): TrustedDevice {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    userId: row.user_id,
    fingerprint: row.fingerprint,
    deviceName: row.device_name,
    deviceType: row.device_type,
    browser: row.browser,
    os: row.os,
    ip: row.ip,
    createdAt,
    trustedUntil,
  };
}

export const toTrustedDevice = (row: TrustedDeviceRow): TrustedDevice => deviceFrom(row, row.created_at, row.trusted_until);

/** A device as the prepared reads return it: timestamps as epoch ms (storage/knex/statements.ts). */
type TrustedDeviceReadRow = DeviceFields & { created_ms: number; until_ms: number };

/** The columns read as they are stored; the two timestamps follow as epoch ms. */
const PLAIN_COLUMNS = ['tenant_id', 'id', 'user_id', 'fingerprint', 'device_name', 'device_type', 'browser', 'os', 'ip'] as const;
const columns = (t: string) =>
  `${PLAIN_COLUMNS.map((c) => `${t}.${c}`).join(', ')}, ${epochMs(`${t}.created_at`, 'created_ms')}, ${epochMs(`${t}.trusted_until`, 'until_ms')}`;

/** The stored columns `columns()` reads, for a subquery that feeds it. */
const ROW_COLUMNS = [...PLAIN_COLUMNS, 'created_at', 'trusted_until'].map((c) => `d.${c}`).join(', ');

const fromReadRow = (row: TrustedDeviceReadRow): TrustedDevice => deviceFrom(row, new Date(row.created_ms), new Date(row.until_ms));

// One statement, so one snapshot: the row and the generation belong together. A revocation
// commits both at once, so this never pairs a revoked row with the generation after it.
const FIND = statement(`select coalesce((select generation from trusted_device_generations where tenant_id = ? and user_id = ?), 0) as generation, ${columns('d')}
  from (values (1)) as one (x)
  left join trusted_devices d on d.tenant_id = ? and d.user_id = ? and d.fingerprint = ? and d.trusted_until > ?`);
/**
 * FIND for several (user, fingerprint) pairs of one tenant (storage/coalesce.ts): still one statement, one snapshot.
 * Each pair is looked up on its own (`lateral … limit 1`: a nested loop over the unique index), whatever the table's
 * size. As a plain join, a small table (a thousand rows) was read whole into a hash for every batch: Postgres spent
 * 101–149 µs of CPU a cache miss at 1k rows, 17 at 1M; 19 at 1k this way (BENCHMARKS.md, eleventh round).
 */
export const FIND_MANY = statement(`select u.user_id as asked_user, u.fingerprint as asked_fingerprint,
    coalesce((select generation from trusted_device_generations g where g.tenant_id = ? and g.user_id = u.user_id), 0) as generation, ${columns('d')}
  from unnest(?::text[], ?::text[]) as u (user_id, fingerprint)
  left join lateral (
    select ${ROW_COLUMNS} from trusted_devices d
    where d.tenant_id = ? and d.user_id = u.user_id and d.fingerprint = u.fingerprint and d.trusted_until > ? limit 1) d on true`);
/**
 * A page as ONE json value that Postgres builds: a tuple per device (PAGE_COLUMNS, then the times), newest first,
 * each carrying the window count. pg then parses one field with JSON.parse instead of a dozen text fields per row,
 * and the tenant and user come from the query: a page costs about half the CPU it did as rows.
 */
type PageTuple = [id: string, fingerprint: string, deviceName: string | null, deviceType: string | null, browser: string | null, os: string | null, ip: string | null, createdMs: number, untilMs: number, fullCount: number];
/** The columns of a tuple, in PageTuple's order; the timestamps and the count follow them. */
const PAGE_COLUMNS = ['id', 'fingerprint', 'device_name', 'device_type', 'browser', 'os', 'ip'] as const;
const PAGE_FIELDS = [...PAGE_COLUMNS, 'created_ms', 'until_ms', 'full_count'].map((c) => `p.${c}`).join(', ');
const pageOf = (where: string, alias = '') =>
  `select coalesce(json_agg(json_build_array(${PAGE_FIELDS}) order by p.created_at desc, p.id desc), '[]')${alias} from (
    select ${PAGE_COLUMNS.map((c) => `d.${c}`).join(', ')}, d.created_at, ${epochMs('d.created_at', 'created_ms')}, ${epochMs('d.trusted_until', 'until_ms')},
      count(*) over () as full_count
    from trusted_devices d where ${where} order by d.created_at desc, d.id desc limit ? offset ?) p`;
const LIST_ALL = statement(pageOf('d.tenant_id = ? and d.user_id = ?', ' as page'));
const LIST_ACTIVE = statement(pageOf('d.tenant_id = ? and d.user_id = ? and d.trusted_until > ?', ' as page'));
/** The same page for several users of one tenant (storage/coalesce.ts): the single-user page, once per user. */
const LIST_ALL_MANY = statement(`select u.user_id, (${pageOf('d.tenant_id = ? and d.user_id = u.user_id')}) as page from unnest(?::text[]) as u (user_id)`);
const LIST_ACTIVE_MANY = statement(`select u.user_id, (${pageOf('d.tenant_id = ? and d.user_id = u.user_id and d.trusted_until > ?')}) as page from unnest(?::text[]) as u (user_id)`);

const fromTuple = (tenantId: string, userId: string, t: PageTuple): TrustedDevice => ({
  id: t[0],
  tenantId,
  userId,
  fingerprint: t[1],
  deviceName: t[2],
  deviceType: t[3],
  browser: t[4],
  os: t[5],
  ip: t[6],
  createdAt: new Date(t[7]),
  trustedUntil: new Date(t[8]),
});

type FoundRow = Partial<TrustedDeviceReadRow> & { generation: string };
type AskedRow = FoundRow & { asked_user: string; asked_fingerprint: string };
interface FindRead {
  tenantId: string;
  userId: string;
  fingerprint: string;
  now: Date;
}
interface PageRead {
  tenantId: string;
  userId: string;
  filter: { includeExpired: boolean; now: Date };
  page: PageQuery;
}
/** A batch reads "now" once: at the latest of its reads' clocks (each read still happens after its request asked). */
const latest = (reads: ReadonlyArray<{ now: Date }>): Date => new Date(Math.max(...reads.map((r) => r.now.getTime())));
const pair = (userId: string, fingerprint: string): string => JSON.stringify([userId, fingerprint]);

export class KnexTrustedDeviceStore implements TrustedDeviceStore {
  /** The cache-miss reads and the page reads of one round of the event loop, one statement each (storage/coalesce.ts). */
  private readonly readFind: (read: FindRead) => Promise<FoundRow>;
  private readonly readPage: (read: PageRead) => Promise<unknown>;

  /** `TrustedDeviceStore.inHostTransaction`: knex bound to a transaction of the host's. */
  get inHostTransaction(): boolean {
    return this.knex.isTransaction === true;
  }

  /** @param prepared named prepared statements for the hot reads (storage/knex/statements.ts) */
  constructor(
    private readonly knex: Knex,
    private readonly prepared = true,
  ) {
    this.readFind = coalesce<FindRead, FoundRow>({
      group: (r) => r.tenantId,
      one: async ({ tenantId, userId, fingerprint, now }) => (await query<FoundRow>(this.knex, FIND, [tenantId, userId, tenantId, userId, fingerprint, now], this.prepared))[0]!,
      many: async (reads) => {
        const { tenantId } = reads[0]!;
        const rows = await query<AskedRow>(this.knex, FIND_MANY, [tenantId, reads.map((r) => r.userId), reads.map((r) => r.fingerprint), tenantId, latest(reads)], this.prepared);
        const byPair = new Map(rows.map((row) => [pair(row.asked_user, row.asked_fingerprint), row]));
        return reads.map((r) => byPair.get(pair(r.userId, r.fingerprint))!);
      },
    });
    this.readPage = coalesce<PageRead, unknown>({
      group: (r) => JSON.stringify([r.tenantId, r.filter.includeExpired, r.page.limit, r.page.offset]),
      one: async ({ tenantId, userId, filter, page }) => {
        const [row] = filter.includeExpired
          ? await query<{ page: unknown }>(this.knex, LIST_ALL, [tenantId, userId, page.limit, page.offset], this.prepared)
          : await query<{ page: unknown }>(this.knex, LIST_ACTIVE, [tenantId, userId, filter.now, page.limit, page.offset], this.prepared);
        return row!.page;
      },
      many: async (reads) => {
        const { tenantId, filter, page } = reads[0]!;
        const users = [...new Set(reads.map((r) => r.userId))];
        const rows = filter.includeExpired
          ? await query<{ user_id: string; page: unknown }>(this.knex, LIST_ALL_MANY, [tenantId, page.limit, page.offset, users], this.prepared)
          : await query<{ user_id: string; page: unknown }>(this.knex, LIST_ACTIVE_MANY, [tenantId, latest(reads.map((r) => r.filter)), page.limit, page.offset, users], this.prepared);
        const byUser = new Map(rows.map((row) => [row.user_id, row.page]));
        return reads.map((r) => byUser.get(r.userId));
      },
    });
  }

  async upsert(tenantId: string, userId: string, write: TrustedDeviceWrite, now: Date, beforeCommit?: BeforeTrustedCommit): Promise<TrustedDeviceUpsert | null> {
    return this.inTransaction(async (trx) => {
      const generation = await bumpGeneration(trx, tenantId, userId);
      // After the generation lock, which the removal of the last device (and an erasure) takes in its own transaction
      // before deleting the trusted devices: either it committed before this read (nothing is written, the bump
      // rolled back), or it waits for this commit and then deletes in a snapshot that holds this row.
      if (write.requireVerifiedMfaDevice && !(await hasVerifiedMfaDevice(trx, tenantId, userId))) throw new RolledBack(null);
      // A renew keeps the id and created_at; details not given keep their stored value.
      const { rows } = await trx.raw<{ rows: Array<TrustedDeviceRow & { created: boolean }> }>(
        `insert into trusted_devices (tenant_id, id, user_id, fingerprint, device_name, device_type, browser, os, ip, created_at, updated_at, trusted_until)
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         on conflict (tenant_id, user_id, fingerprint) do update set
           device_name = coalesce(excluded.device_name, trusted_devices.device_name),
           device_type = coalesce(excluded.device_type, trusted_devices.device_type),
           browser = coalesce(excluded.browser, trusted_devices.browser),
           os = coalesce(excluded.os, trusted_devices.os),
           ip = coalesce(excluded.ip, trusted_devices.ip),
           updated_at = excluded.updated_at,
           trusted_until = excluded.trusted_until
         returning *, (xmax = 0) as created`,
        [
          tenantId,
          randomUUID(),
          userId,
          write.fingerprint,
          write.deviceName ?? null,
          write.deviceType ?? null,
          write.browser ?? null,
          write.os ?? null,
          write.ip ?? null,
          now,
          now,
          write.trustedUntil,
        ],
      );
      await beforeCommit?.(generation, epochIn(trx));
      const row = rows[0]!;
      return { device: toTrustedDevice(row), created: row.created, generation };
    });
  }

  async find(tenantId: string, userId: string, fingerprint: string, now: Date): Promise<{ device: TrustedDevice | null; generation: number }> {
    const row = await this.readFind({ tenantId, userId, fingerprint, now });
    return { device: row.id ? fromReadRow(row as TrustedDeviceReadRow) : null, generation: Number(row.generation) };
  }

  async list(tenantId: string, userId: string, filter: { includeExpired: boolean; now: Date }, page: PageQuery): Promise<Page<TrustedDevice>> {
    // One round trip (shared with the other reads of this moment): the window count rides along with the page.
    // Every form uses trusted_devices_user_idx, whatever the table's size.
    // pg parses json with JSON.parse unless the app told it otherwise (pg.types.setTypeParser(114, …)).
    const raw = await this.readPage({ tenantId, userId, filter, page });
    const tuples = (typeof raw === 'string' ? JSON.parse(raw) : raw) as PageTuple[];
    let total = tuples[0] ? Number(tuples[0][9]) : 0;
    if (!tuples[0] && page.offset > 0) {
      // A page past the end: the window count has no row to ride on.
      const scoped = this.knex<TrustedDeviceRow>('trusted_devices').where({ tenant_id: tenantId, user_id: userId });
      if (!filter.includeExpired) void scoped.andWhere('trusted_until', '>', filter.now);
      total = Number((await scoped.count({ n: '*' }).first())?.n ?? 0);
    }
    return { items: tuples.map((t) => fromTuple(tenantId, userId, t)), total };
  }

  async revoke(tenantId: string, userId: string, id: string, beforeCommit?: BeforeTrustedCommit): Promise<{ revoked: boolean; generation: number | null }> {
    if (!UUID.test(id)) return { revoked: false, generation: null }; // cannot exist; and would be a type error in SQL
    const { count, generation } = await this.deleteAndBump(tenantId, userId, (q) => q.andWhere({ id }), beforeCommit);
    return { revoked: count > 0, generation };
  }

  async revokeAll(tenantId: string, userId: string, beforeCommit?: BeforeTrustedCommit): Promise<{ revoked: number; generation: number | null }> {
    const { count, generation } = await this.deleteAndBump(tenantId, userId, (q) => q, beforeCommit);
    return { revoked: count, generation };
  }

  async cacheEpoch(): Promise<number> {
    return epochOf((await this.knex.raw<{ rows: Array<{ epoch: string }> }>(READ_CACHE_EPOCH)).rows);
  }

  async bumpCacheEpoch(): Promise<number> {
    return this.knex.transaction((trx) => bumpEpoch(trx), kitTransaction());
  }

  /** Deletes in one transaction with the generation bump; rolls the bump back when nothing matched. */
  private async deleteAndBump(
    tenantId: string,
    userId: string,
    narrow: (q: Knex.QueryBuilder<TrustedDeviceRow>) => Knex.QueryBuilder<TrustedDeviceRow>,
    beforeCommit: BeforeTrustedCommit | undefined,
  ): Promise<{ count: number; generation: number | null }> {
    return this.inTransaction(async (trx) => {
      const generation = await bumpGeneration(trx, tenantId, userId);
      const count = await narrow(trx<TrustedDeviceRow>('trusted_devices').where({ tenant_id: tenantId, user_id: userId })).delete();
      if (count === 0) throw new RolledBack({ count: 0, generation: null });
      await beforeCommit?.(generation, epochIn(trx));
      return { count, generation };
    });
  }

  /**
   * `work` in a transaction of the kit's that is committed once it returns, or rolled back when it throws (a
   * `RolledBack` is its answer). knex's callback form: its promise rejects when the COMMIT fails (a connection lost
   * at that moment), where a `commit()` called by hand resolves all the same and a change that never happened was
   * answered as done; and a BEGIN that fails rejects it too, instead of a transaction that is already over.
   */
  private async inTransaction<T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    try {
      return await this.knex.transaction(work, kitTransaction());
    } catch (err) {
      if (err instanceof RolledBack) return err.answer as T;
      throw err;
    }
  }
}

/** Thrown in `inTransaction`'s work to roll back with an answer: nothing to change after all. */
class RolledBack extends Error {
  constructor(readonly answer: unknown) {
    super('rolled back: nothing to change');
  }
}
