/**
 * The README's snippets are the tested ones. Every fenced block must say how it is checked:
 * - ```ts file=examples/x.ts region=name: byte-identical to that `#region` of the file (its common
 *   indentation removed), and the file is imported by a test under test/ (which runs it);
 * - ```json sample=<format>: the body the kit really answers in that error format (examples/error-formats.ts),
 *   with only the timestamp taken from the README;
 * - ```sh: every npm script it names exists in package.json (`npm run migrate` is also run here).
 * A block of any other kind fails, so an untested snippet cannot slip in.
 */
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect } from 'chai';
import request from 'supertest';
import { errorFormatsApp } from '../examples/error-formats.js';
import { silentLogger } from '../index.js';
import { KEY_A, migratedStorage, type TestDb } from './support/fixtures.js';
import { freshDatabase } from './support/postgres.js';

interface Block {
  lang: string;
  attrs: Record<string, string>;
  body: string;
  line: number;
}

const README = readFileSync('README.md', 'utf8');

function blocks(markdown: string): Block[] {
  return [...markdown.matchAll(/^```([^\n]*)\n([\s\S]*?)^```$/gm)].map((m) => {
    const [lang = '', ...rest] = (m[1] ?? '').trim().split(/\s+/);
    const attrs = Object.fromEntries(rest.map((kv) => kv.split('=', 2) as [string, string]));
    return { lang, attrs, body: m[2] ?? '', line: markdown.slice(0, m.index).split('\n').length };
  });
}

/** The lines between `// #region name` and the next `// #endregion`, common indentation removed. */
function region(source: string, name: string): string {
  const lines = source.split('\n');
  const start = lines.findIndex((l) => l.trim() === `// #region ${name}`);
  if (start === -1) throw new Error(`no region ${name}`);
  const end = lines.findIndex((l, i) => i > start && l.trim() === '// #endregion');
  const body = lines.slice(start + 1, end);
  const indent = Math.min(...body.filter((l) => l.trim() !== '').map((l) => l.length - l.trimStart().length));
  return body.map((l) => l.slice(indent)).join('\n') + '\n';
}

const testSources = readdirSync('test')
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => readFileSync(`test/${f}`, 'utf8'));

describe('README.md', () => {
  const all = blocks(README);

  it('keeps the two commands and a mount example of at most 20 lines', () => {
    expect(README).to.contain('npm install && npm start');
    expect(README).to.contain('npm test');
    const mount = all.find((b) => b.attrs.region === 'readme-mount');
    expect(mount, 'the "mount into your existing app" snippet').to.not.equal(undefined);
    expect(mount!.body.trimEnd().split('\n').length).to.be.at.most(20);
  });

  it('has only snippets of a kind this suite checks', () => {
    expect(all.length).to.be.greaterThan(8);
    for (const b of all) {
      const checked = (b.lang === 'ts' && b.attrs.file !== undefined) || (b.lang === 'json' && b.attrs.sample !== undefined) || b.lang === 'sh';
      expect(checked, `README.md:${b.line}: \`\`\`${b.lang} ${JSON.stringify(b.attrs)} is not checked by test/readme.test.ts`).to.equal(true);
    }
  });

  it('ts snippets are byte-identical to regions of example files that tests import', () => {
    const ts = all.filter((b) => b.lang === 'ts');
    expect(ts.length).to.be.at.least(5);
    for (const b of ts) {
      const file = b.attrs.file!;
      const source = readFileSync(file, 'utf8');
      const expected = b.attrs.region === undefined ? source : region(source, b.attrs.region);
      expect(b.body, `README.md:${b.line} differs from ${file}${b.attrs.region ? ` #region ${b.attrs.region}` : ''}`).to.equal(expected);
      const module = `../${file.replace(/\.ts$/, '.js')}`;
      expect(
        testSources.some((t) => t.includes(`from '${module}'`)),
        `${file} must be imported (and so run) by a test`,
      ).to.equal(true);
    }
  });

  it('sh snippets name only npm scripts that exist', () => {
    const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts;
    const sh = all.filter((b) => b.lang === 'sh');
    expect(sh.length).to.be.at.least(3);
    for (const b of sh) {
      for (const m of b.body.matchAll(/\bnpm (run \S+|start|test|install)\b/g)) {
        const name = m[1]!.replace(/^run /, '');
        if (name === 'install') continue;
        expect(scripts, `README.md:${b.line}: npm ${m[1]}`).to.have.property(name);
      }
    }
  });

  describe('with a database', () => {
    let db: TestDb;
    before(async () => {
      db = await migratedStorage();
    });
    after(async () => {
      await db?.drop();
    });

    it('json samples are the bodies each error format really answers', async () => {
      const app = errorFormatsApp(db.storage, KEY_A, silentLogger);
      const prefixes: Record<string, string> = { problem: '', simple: '/simple', nest: '/nest', function: '/function' };
      const samples = all.filter((b) => b.lang === 'json');
      expect(samples.map((b) => b.attrs.sample)).to.have.members(Object.keys(prefixes));
      for (const b of samples) {
        const prefix = prefixes[b.attrs.sample!];
        expect(prefix, `README.md:${b.line}: unknown sample ${b.attrs.sample}`).to.be.a('string');
        const res = await request(app)
          .get(`${prefix}/internal/mfa/totp/devices?page_size=500`)
          .set('X-Internal-API-Key', KEY_A)
          .set('X-Tenant-ID', 'acme')
          .set('X-Request-ID', 'req_readme')
          .set('traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
        const sample = JSON.parse(b.body) as Record<string, unknown>;
        const actual = { ...(res.body as Record<string, unknown>) };
        if ('timestamp' in actual) {
          expect(actual.timestamp).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
          actual.timestamp = sample.timestamp;
        }
        expect(actual, `README.md:${b.line} (${b.attrs.sample})`).to.deep.equal(sample);
        if (b.attrs.sample === 'problem') expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      }
    });
  });

  it('`npm run migrate` (the deploy step) migrates a database, then says it is up to date', async function () {
    this.timeout(60_000);
    const fresh = await freshDatabase();
    try {
      const run = () => promisify(execFile)(process.execPath, ['--import', 'tsx', 'storage/knex/migrate-cli.ts'], { env: { ...process.env, DATABASE_URL: fresh.url } });
      expect((await run()).stdout).to.match(/^applied: 0001_mfa_devices, /);
      expect((await run()).stdout.trim()).to.equal('already up to date');
    } finally {
      await fresh.drop();
    }
  });
});
