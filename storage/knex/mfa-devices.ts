/** MFA devices on Postgres. */
import type { Knex } from 'knex';
import type { MfaDevice, MfaDeviceStore, MfaMethod, Page, PageQuery, TotpAlgorithm } from '../types.js';

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
  last_step: string | null;
  created_at: Date;
  last_used_at: Date | null;
  verified_at: Date | null;
  expires_at: Date | null;
}

export function toMfaDevice(row: MfaDeviceRow): MfaDevice {
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
        ? { algorithm: row.totp_algorithm, digits: row.totp_digits, period: row.totp_period }
        : null,
    lastStep: row.last_step === null ? null : Number(row.last_step),
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    verifiedAt: row.verified_at,
    expiresAt: row.expires_at,
  };
}

export class KnexMfaDeviceStore implements MfaDeviceStore {
  constructor(private readonly knex: Knex) {}

  async list(tenantId: string, userId: string, filter: { method?: MfaMethod }, page: PageQuery): Promise<Page<MfaDevice>> {
    const scoped = this.knex<MfaDeviceRow>('mfa_devices').where({ tenant_id: tenantId, user_id: userId });
    if (filter.method) void scoped.andWhere({ method: filter.method });
    // One round trip: the window count rides along with the page.
    const rows = (await scoped
      .clone()
      .select('*', this.knex.raw('count(*) over () as full_count'))
      .orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'desc' }])
      .limit(page.limit)
      .offset(page.offset)) as Array<MfaDeviceRow & { full_count: string }>;
    const total = rows[0] ? Number(rows[0].full_count) : page.offset === 0 ? 0 : Number((await scoped.clone().count({ n: '*' }).first())?.n ?? 0);
    return { items: rows.map(toMfaDevice), total };
  }
}
