/** Recovery codes on real Postgres: format and entropy, hashed at rest, single use (also under a race), regeneration. */
import { expect } from 'chai';
import { createRecoveryCodes, normalizeRecoveryCode, type RecoveryCodes } from '../index.js';
import { dumpTables } from './support/dump.js';
import { migratedStorage, type TestDb } from './support/fixtures.js';

const CROCKFORD = /^[0-9abcdefghjkmnpqrstvwxyz]{4}-[0-9abcdefghjkmnpqrstvwxyz]{4}-[0-9abcdefghjkmnpqrstvwxyz]{4}$/;

describe('recovery codes', () => {
  let db: TestDb;
  let codes: RecoveryCodes;

  before(async () => {
    db = await migratedStorage();
    codes = createRecoveryCodes({ storage: db.storage });
  });
  after(async () => {
    await db.drop();
  });

  it('makes 10 distinct codes of 12 Crockford base32 symbols (60 bits) shown as xxxx-xxxx-xxxx', async () => {
    const set = await codes.regenerate('acme', 'format');
    expect(set).to.have.length(10);
    expect(new Set(set).size).to.equal(10);
    for (const c of set) {
      expect(c).to.match(CROCKFORD);
      // 12 symbols of a 32-letter alphabet = 60 bits ≥ 50.
      expect(c.replaceAll('-', '')).to.have.length(12);
    }
    expect(Math.log2(32) * 12).to.be.at.least(50);
    expect(await codes.remaining('acme', 'format')).to.equal(10);
  });

  it('uses the whole alphabet over many codes (no symbol stuck, none outside it)', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) for (const c of await codes.regenerate('acme', 'alphabet')) for (const ch of c.replaceAll('-', '')) seen.add(ch);
    // 1200 symbols drawn from 32: missing one has probability ~32·(31/32)^1200 ≈ 1e-15.
    expect(seen.size).to.equal(32);
  });

  it('accepts a code once, then refuses it', async () => {
    const [first, second] = await codes.regenerate('acme', 'once');
    expect(await codes.consume('acme', 'once', first!)).to.equal(true);
    expect(await codes.remaining('acme', 'once')).to.equal(9);
    expect(await codes.consume('acme', 'once', first!)).to.equal(false);
    expect(await codes.remaining('acme', 'once')).to.equal(9);
    expect(await codes.consume('acme', 'once', second!)).to.equal(true);
    expect(await codes.remaining('acme', 'once')).to.equal(8);
  });

  it('tolerates case, spaces, dashes and Crockford look-alikes in what the user types', async () => {
    const set = await codes.regenerate('acme', 'typing');
    const plain = set[0]!.replaceAll('-', '');
    expect(await codes.consume('acme', 'typing', ` ${plain.toUpperCase().slice(0, 6)} ${plain.slice(6)} `)).to.equal(true);
    expect(await codes.consume('acme', 'typing', set[1]!.toUpperCase().replaceAll('-', ' – '))).to.equal(true);
    // A code with a 1 or 0 typed as l / O still works.
    const withOne = set.slice(2).find((c) => c.includes('1') || c.includes('0'));
    if (withOne) expect(await codes.consume('acme', 'typing', withOne.replaceAll('1', 'l').replaceAll('0', 'O'))).to.equal(true);
    expect(normalizeRecoveryCode('abcd-efgh-jkmn')).to.equal('ABCDEFGHJKMN');
    expect(normalizeRecoveryCode('iLoO-1l0o-ABCD')).to.equal('1100110' + '0ABCD');
    expect(normalizeRecoveryCode('abcd-efgh-jkm')).to.equal(null);
    expect(normalizeRecoveryCode('abcd-efgh-jkmu')).to.equal(null);
    expect(normalizeRecoveryCode('x'.repeat(1000))).to.equal(null);
  });

  it('refuses wrong, malformed and empty codes without using any', async () => {
    await codes.regenerate('acme', 'wrong');
    for (const bad of ['0000-0000-0000', '', 'not a code', 'zzzz-zzzz-zzz', '\u0000'.repeat(12)]) {
      expect(await codes.consume('acme', 'wrong', bad), bad).to.equal(false);
    }
    expect(await codes.remaining('acme', 'wrong')).to.equal(10);
  });

  it('keeps users and tenants apart', async () => {
    const [code] = await codes.regenerate('acme', 'owner');
    expect(await codes.consume('acme', 'someone-else', code!)).to.equal(false);
    expect(await codes.consume('other', 'owner', code!)).to.equal(false);
    expect(await codes.remaining('other', 'owner')).to.equal(0);
    expect(await codes.consume('acme', 'owner', code!)).to.equal(true);
  });

  it('regenerating invalidates every earlier code, used or not, and resets the count', async () => {
    const old = await codes.regenerate('acme', 'regen');
    expect(await codes.consume('acme', 'regen', old[0]!)).to.equal(true);
    const fresh = await codes.regenerate('acme', 'regen');
    expect(await codes.remaining('acme', 'regen')).to.equal(10);
    for (const c of old) expect(await codes.consume('acme', 'regen', c)).to.equal(false);
    expect(fresh.some((c) => old.includes(c))).to.equal(false);
    expect(await codes.consume('acme', 'regen', fresh[9]!)).to.equal(true);
  });

  it('reports 0 remaining for a user who never made codes', async () => {
    expect(await codes.remaining('acme', 'nobody')).to.equal(0);
  });

  it('lets exactly one of many concurrent uses of one code through', async () => {
    for (let round = 0; round < 5; round++) {
      const [code] = await codes.regenerate('acme', 'race');
      const results = await Promise.all(Array.from({ length: 8 }, () => codes.consume('acme', 'race', code!)));
      expect(results.filter(Boolean), `round ${round}`).to.have.length(1);
      expect(await codes.remaining('acme', 'race')).to.equal(9);
    }
  });

  it('leaves exactly one whole set after concurrent regenerations', async () => {
    const sets = await Promise.all(Array.from({ length: 6 }, () => codes.regenerate('acme', 'regen-race')));
    expect(await codes.remaining('acme', 'regen-race')).to.equal(10);
    const winners = [];
    for (const set of sets) {
      const ok = await Promise.all(set.map((c) => codes.consume('acme', 'regen-race', c)));
      if (ok.some(Boolean)) winners.push(ok);
    }
    expect(winners).to.have.length(1);
    expect(winners[0]!.every(Boolean)).to.equal(true);
  });

  it('stores hashes only: no code appears in the database', async () => {
    const set = await codes.regenerate('acme', 'dump');
    const dump = await dumpTables(db.knex);
    for (const c of set) {
      for (const form of [c, c.toUpperCase(), c.replaceAll('-', ''), c.replaceAll('-', '').toUpperCase()]) {
        expect(dump.contains(form), form).to.equal(false);
      }
    }
    expect(dump.rowCount).to.be.greaterThan(0);
  });

  it('checks its options at set-up', () => {
    expect(() => createRecoveryCodes({ storage: undefined as never })).to.throw(TypeError, /needs 'storage'/);
    expect(() => createRecoveryCodes({ storage: db.storage, count: 0 })).to.throw(TypeError, /count/);
    expect(() => createRecoveryCodes({ storage: db.storage, count: 2.5 })).to.throw(TypeError, /count/);
  });

  it('honours count', async () => {
    const five = createRecoveryCodes({ storage: db.storage, count: 5 });
    expect(await five.regenerate('acme', 'five')).to.have.length(5);
    expect(await five.remaining('acme', 'five')).to.equal(5);
  });
});
