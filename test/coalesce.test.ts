/**
 * Read coalescing (storage/coalesce.ts): the logic on its own, then the coalesced hot reads of
 * `knexStorage()` on a real Postgres — reads asked for at once answer exactly what each would answer alone,
 * per tenant, in one statement, with and without prepared statements.
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { knexStorage } from '../index.js';
import { DEFAULT_MAX_BATCH, coalesce } from '../storage/coalesce.js';
import { query } from '../storage/knex/statements.js';
import { FIND_MANY } from '../storage/knex/trusted-devices.js';
import type { MfaDevice } from '../storage/types.js';
import { ring } from './support/fixtures.js';
import { freshDatabase, type FreshDatabase } from './support/postgres.js';

describe('coalesce()', () => {
  const recorder = (fail?: Error, maxBatch: number | null = 3) => {
    const calls: Array<{ kind: 'one' | 'many'; reads: string[] }> = [];
    const read = coalesce<string, string>({
      group: (r) => r.split(':')[0]!,
      one: (r) => {
        calls.push({ kind: 'one', reads: [r] });
        return fail ? Promise.reject(fail) : Promise.resolve(`answer ${r}`);
      },
      many: (reads) => {
        calls.push({ kind: 'many', reads: [...reads] });
        return fail ? Promise.reject(fail) : Promise.resolve(reads.map((r) => `answer ${r}`));
      },
      ...(maxBatch !== null && { maxBatch }),
    });
    return { calls, read };
  };

  it('answers reads asked for in one turn with one call per group, each read its own answer, in order', async () => {
    const { calls, read } = recorder();
    const answers = await Promise.all(['a:1', 'b:1', 'a:2', 'a:1'].map(read));
    expect(answers).to.deep.equal(['answer a:1', 'answer b:1', 'answer a:2', 'answer a:1']);
    expect(calls).to.deep.equal([
      { kind: 'many', reads: ['a:1', 'a:2', 'a:1'] },
      { kind: 'one', reads: ['b:1'] },
    ]);
  });

  it('sends a lone read by itself, and reads of later turns in later calls', async () => {
    const { calls, read } = recorder();
    expect(await read('a:1')).to.equal('answer a:1');
    expect(await read('a:2')).to.equal('answer a:2');
    expect(calls).to.deep.equal([
      { kind: 'one', reads: ['a:1'] },
      { kind: 'one', reads: ['a:2'] },
    ]);
  });

  it('sends a group as soon as it holds maxBatch reads', async () => {
    const { calls, read } = recorder();
    const answers = await Promise.all(['a:1', 'a:2', 'a:3', 'a:4'].map(read));
    expect(answers).to.deep.equal(['answer a:1', 'answer a:2', 'answer a:3', 'answer a:4']);
    expect(calls).to.deep.equal([
      { kind: 'many', reads: ['a:1', 'a:2', 'a:3'] },
      { kind: 'one', reads: ['a:4'] },
    ]);
  });

  it(`bounds a batch at ${DEFAULT_MAX_BATCH} reads by default, so Postgres starts on a statement while the server reads the rest`, async () => {
    const { calls, read } = recorder(undefined, null);
    const asked = Array.from({ length: 2 * DEFAULT_MAX_BATCH + 1 }, (_, i) => `a:${i}`);
    expect(await Promise.all(asked.map(read))).to.deep.equal(asked.map((r) => `answer ${r}`));
    expect(calls.map((c) => c.reads.length)).to.deep.equal([DEFAULT_MAX_BATCH, DEFAULT_MAX_BATCH, 1]);
    expect(DEFAULT_MAX_BATCH).to.equal(16);
  });

  it('fails every read of a batch with the error of its call, and only those', async () => {
    const boom = new Error('boom');
    const { read } = recorder(boom);
    const settled = await Promise.allSettled(['a:1', 'a:2'].map(read));
    expect(settled.map((s): unknown => (s.status === 'rejected' ? s.reason : s.value))).to.deep.equal([boom, boom]);
    const ok = recorder();
    expect(await ok.read('a:1')).to.equal('answer a:1');
  });
});

describe('knexStorage() coalesced reads on Postgres', function () {
  let db: FreshDatabase;
  const now = new Date();
  const until = new Date(now.getTime() + 3_600_000);
  const past = new Date(now.getTime() - 1000);
  before(async function () {
    this.timeout(60_000);
    db = await freshDatabase();
    const storage = knexStorage({ knex: db.knex });
    await storage.migrate();
    // Tenants acme and other; users with 0, 1, 3 and 25 trusted devices (one of them expired), and devices of each method.
    for (const tenant of ['acme', 'other']) {
      for (const [user, count] of [
        ['one', 1],
        ['three', 3],
        ['many', 25],
      ] as const) {
        for (let i = 0; i < count; i++) {
          const at = new Date(now.getTime() - (count - i) * 1000);
          await storage.trustedDevices.upsert(tenant, user, { fingerprint: `${tenant}-${user}-${i}`, trustedUntil: i === 1 ? past : until, deviceName: `${tenant} ${user} ${i}` }, at);
        }
      }
      for (const [user, methods] of [
        ['one', ['totp']],
        ['three', ['totp', 'sms', 'email']],
      ] as const) {
        for (const method of methods) {
          const created = await storage.mfaDevices.create(
            {
              id: randomUUID(),
              tenantId: tenant,
              userId: user,
              method,
              deviceName: `${tenant} ${user} ${method}`,
              secret: ring.seal(Buffer.from(`${tenant}-${user}-${method}`), 'test'),
              totp: method === 'totp' ? { algorithm: 'SHA1', digits: 6, period: 30, skew: 1 } : null,
              expiresAt: new Date(now.getTime() + 600_000),
            },
            { maxDevices: 5, now },
          );
          if (created.status !== 'OK') throw new Error('device not created');
        }
      }
    }
  });
  after(async () => {
    await db?.drop();
  });

  /** Runs `reads` one by one, then all at once, counting the statements of the concurrent run. */
  const compare = async <T>(reads: Array<() => Promise<T>>): Promise<{ serial: T[]; together: T[]; statements: number }> => {
    const serial: T[] = [];
    for (const r of reads) serial.push(await r());
    let statements = 0;
    const count = () => statements++;
    db.knex.on('query', count);
    try {
      const together = await Promise.all(reads.map((r) => r()));
      return { serial, together, statements };
    } finally {
      db.knex.off('query', count);
    }
  };
  const ids = (page: { items: Array<{ id: string }> }) => page.items.map((d) => d.id);

  for (const prepared of [true, false]) {
    describe(`preparedStatements: ${prepared}`, () => {
      const storage = () => knexStorage({ knex: db.knex, preparedStatements: prepared });

      it('finds many (user, fingerprint) pairs at once as each alone: trusted, expired, unknown, another tenant; one statement per tenant', async () => {
        const s = storage();
        const asked: Array<[string, string, string]> = [
          ['acme', 'three', 'acme-three-0'],
          ['acme', 'three', 'acme-three-1'], // expired
          ['acme', 'three', 'acme-three-0'], // twice in one batch
          ['acme', 'one', 'acme-one-0'],
          ['acme', 'nobody', 'acme-one-0'],
          ['acme', 'one', 'other-one-0'], // the other tenant's fingerprint
          ['other', 'one', 'other-one-0'],
        ];
        const { serial, together, statements } = await compare(asked.map(([t, u, fp]) => () => s.trustedDevices.find(t, u, fp, new Date())));
        expect(together).to.deep.equal(serial);
        expect(serial.map((r) => r.device?.fingerprint ?? null)).to.deep.equal(['acme-three-0', null, 'acme-three-0', 'acme-one-0', null, null, 'other-one-0']);
        expect(serial.map((r) => r.device?.tenantId ?? null)).to.deep.equal(['acme', null, 'acme', 'acme', null, null, 'other']);
        // Generations: one trust each (3 and 1), none for a user without devices.
        expect(serial.map((r) => r.generation)).to.deep.equal([3, 3, 3, 1, 0, 1, 1]);
        expect(statements).to.equal(2);
      });

      it('lists many users\' pages at once as each alone: sizes 0 to 25, offsets, expired in or out; one statement per tenant and page', async () => {
        const s = storage();
        const asked: Array<[string, string, boolean, number]> = [
          ['acme', 'many', false, 0],
          ['acme', 'three', false, 0],
          ['acme', 'one', false, 0],
          ['acme', 'nobody', false, 0],
          ['acme', 'many', false, 0],
          ['other', 'many', false, 0],
          ['acme', 'many', true, 0],
          ['acme', 'three', true, 0],
          ['acme', 'many', false, 20],
          ['acme', 'three', false, 20], // past the end: the total comes from a count of its own
        ];
        const { serial, together, statements } = await compare(
          asked.map(([t, u, includeExpired, offset]) => () => s.trustedDevices.list(t, u, { includeExpired, now: new Date() }, { limit: 20, offset })),
        );
        expect(together).to.deep.equal(serial);
        expect(serial.map((p) => [p.items.length, p.total])).to.deep.equal([[20, 24], [2, 2], [1, 1], [0, 0], [20, 24], [20, 24], [20, 25], [3, 3], [4, 24], [0, 2]]);
        for (const [i, [t, u]] of asked.entries()) for (const d of serial[i]!.items) expect(d).to.include({ tenantId: t, userId: u });
        expect(ids(serial[0]!)).not.to.deep.equal(ids(serial[5]!));
        // Groups: acme active offset 0, other active offset 0, acme all offset 0, acme active offset 20; plus the one count.
        expect(statements).to.equal(5);
      });

      it("lists many users' MFA devices at once as each alone, with and without a method; one statement per group", async () => {
        const s = storage();
        const asked: Array<[string, string, MfaDevice['method'] | undefined, number]> = [
          ['acme', 'three', undefined, 0],
          ['acme', 'one', undefined, 0],
          ['acme', 'nobody', undefined, 0],
          ['other', 'three', undefined, 0],
          ['acme', 'three', 'totp', 0],
          ['acme', 'one', 'totp', 0],
          ['acme', 'three', 'sms', 0],
          ['acme', 'three', undefined, 2],
          ['acme', 'one', undefined, 2], // past the end
        ];
        const { serial, together, statements } = await compare(asked.map(([t, u, method, offset]) => () => s.mfaDevices.list(t, u, method ? { method } : {}, { limit: 2, offset })));
        expect(together).to.deep.equal(serial);
        expect(serial.map((p) => [p.items.map((d) => d.method), p.total])).to.deep.equal([
          [['email', 'sms'], 3],
          [['totp'], 1],
          [[], 0],
          [['email', 'sms'], 3],
          [['totp'], 1],
          [['totp'], 1],
          [['sms'], 1],
          [['totp'], 3],
          [[], 1],
        ]);
        for (const [i, [t, u]] of asked.entries()) for (const d of serial[i]!.items) expect(d).to.include({ tenantId: t, userId: u });
        // The sealed secret comes back whole.
        expect(ring.open(serial[1]!.items[0]!.secret, 'test').toString()).to.equal('acme-one-totp');
        // Groups: acme all 0, other all 0, acme totp 0, acme sms 0, acme all 2; plus the one count.
        expect(statements).to.equal(6);
      });
    });
  }
});

describe('the batched cache-miss lookup on Postgres (FIND_MANY)', function () {
  let db: FreshDatabase;
  before(async function () {
    this.timeout(60_000);
    db = await freshDatabase();
    await knexStorage({ knex: db.knex }).migrate();
    // One tenant's 1,000 trusted devices (40 users × 25): a table small enough that a plain join hashed all of it.
    await db.knex.raw(`insert into trusted_devices (tenant_id, id, user_id, fingerprint, created_at, updated_at, trusted_until)
      select 'acme', gen_random_uuid(), 'u' || (i / 25), 'fp-' || i, now(), now(), now() + interval '1 day' from generate_series(0, 999) i`);
  });
  after(async () => {
    await db?.drop();
  });

  interface PlanNode {
    'Node Type': string;
    'Relation Name'?: string;
    Plans?: PlanNode[];
  }
  const nodes = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodes)];

  /** The plan Postgres picks for 16 asked pairs, as the custom plan of one execution and as the generic plan of a prepared statement. */
  const plans = (): Promise<PlanNode[][]> =>
    db.knex.transaction(async (trx) => {
      const users = Array.from({ length: 16 }, (_, i) => `u${i % 40}`);
      const bindings = ['acme', users, users.map((_, i) => `fp-${i * 25}`), 'acme', new Date()];
      const explain = { name: 'explain-find-many', text: `explain (format json) ${FIND_MANY.text}` };
      const planOf = async () => nodes((await query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(trx, explain, bindings, false))[0]!['QUERY PLAN'][0]!.Plan);
      const custom = await planOf();
      await trx.raw('set local plan_cache_mode = force_generic_plan');
      return [custom, await planOf()];
    });

  for (const analyzed of [false, true]) {
    it(`looks each pair up by index, never reading the tenant's devices whole (${analyzed ? 'after' : 'before'} ANALYZE)`, async () => {
      if (analyzed) await db.knex.raw('analyze trusted_devices');
      for (const plan of await plans()) {
        const scans = plan.filter((n) => n['Relation Name'] === 'trusted_devices');
        expect(scans.map((n) => n['Node Type'])).to.deep.equal(['Index Scan']);
        expect(plan.map((n) => n['Node Type'])).to.not.include.members(['Hash Join', 'Hash']);
      }
    });
  }
});
