/** The kit's migrations, in order. Knex's migrator runs them through this list (no file globbing), so they work from source and from dist alike. */
import type { Knex } from 'knex';
import * as m0001 from './0001_mfa_devices.js';
import * as m0002 from './0002_trusted_devices.js';
import * as m0003 from './0003_mfa_verification.js';
import * as m0004 from './0004_sync_records.js';
import * as m0005 from './0005_codes.js';
import * as m0006 from './0006_retention.js';
import * as m0007 from './0007_cache_namespace.js';
import * as m0008 from './0008_cache_epoch_bumped_at.js';

export interface Migration {
  name: string;
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

export const MIGRATIONS: readonly Migration[] = [m0001, m0002, m0003, m0004, m0005, m0006, m0007, m0008];
