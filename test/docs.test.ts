/** docs/ says what the code does: the error page is the catalogue, the route tables are the routers' routes. */
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import type { Router } from 'express';
import { deviceSyncRouter, internalRouter, mfaDevicesRouter, silentLogger } from '../index.js';
import { ERRORS_DOC, renderErrorsDoc } from '../scripts/docs-errors.js';
import { KEY_A, migratedStorage, ring, type TestDb } from './support/fixtures.js';
import { JWT_SECRET } from './support/mfa.js';

/** `METHOD /path` of every route a router registers, with Express's `:id` written as in the docs. */
function routesOf(router: Router, mount: string): string[] {
  return router.stack.flatMap((layer) => {
    const route = layer.route as { path: string; methods: Record<string, boolean> } | undefined;
    if (!route) return [];
    const path = route.path === '/' ? mount : `${mount}${route.path}`;
    return Object.keys(route.methods).map((m) => `${m.toUpperCase()} ${path}`);
  });
}

describe('docs/', () => {
  it(`${ERRORS_DOC} is what \`npm run docs:errors\` renders from ERROR_CATALOGUE`, () => {
    expect(readFileSync(ERRORS_DOC, 'utf8'), 'run `npm run docs:errors`').to.equal(renderErrorsDoc());
  });

  describe('docs/http-api.md', () => {
    let db: TestDb;
    before(async () => {
      db = await migratedStorage();
    });
    after(async () => {
      await db?.drop();
    });

    it('lists exactly the routes the three routers serve', () => {
      const { storage } = db;
      const served = [
        ...routesOf(mfaDevicesRouter({ storage, keyRing: ring, jwt: { secret: JWT_SECRET }, logger: silentLogger }), '/auth/mfa'),
        ...routesOf(deviceSyncRouter({ storage, keyRing: ring, jwt: { secret: JWT_SECRET }, logger: silentLogger }), '/mfa/devices/sync'),
        ...routesOf(internalRouter({ storage, internalKeys: KEY_A, keyRing: ring, logger: silentLogger }), '/internal'),
      ];
      const documented = [...readFileSync('docs/http-api.md', 'utf8').matchAll(/^\| `((?:GET|POST|PUT|PATCH|DELETE) \/[^`]*)` \|/gm)].map((m) => m[1]);
      expect(served.length).to.be.greaterThan(20);
      expect([...documented].sort()).to.deep.equal([...served].sort());
    });
  });
});
