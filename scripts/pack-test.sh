#!/usr/bin/env bash
# Packs the kit and installs the tarball into fresh ESM, CommonJS and strict TypeScript projects,
# each of which mounts a router and calls it; also runs publint and arethetypeswrong on the tarball.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$(mktemp -d /tmp/mfa-kit-pack.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

echo "=== npm pack"
npm pack --silent --pack-destination "$WORK" >/dev/null
TARBALL="$(ls "$WORK"/express-mfa-kit-*.tgz)"
LISTING="$(tar -tzf "$TARBALL")"
if grep -E '^package/(test|examples|scripts|dist/(esm|cjs)/(test|examples|scripts))/' <<<"$LISTING"; then
  echo "the tarball holds test, example or script files" >&2; exit 1
fi
# The documents the README links to that ship with the package.
for doc in README.md LICENSE CHANGELOG.md SECURITY.md docs/http-api.md docs/errors.md; do
  grep -qx "package/$doc" <<<"$LISTING" || { echo "the tarball lacks $doc" >&2; exit 1; }
done
echo "$(wc -l <<<"$LISTING") files in $(basename "$TARBALL")"

echo "=== publint"
npx --no-install publint run "$TARBALL" --strict
echo "=== arethetypeswrong"
npx --no-install attw "$TARBALL" --profile node16

KEY=pack-test-internal-key-0123456789
CALL='
const server = app.listen(0, "127.0.0.1", async () => {
  const res = await fetch(`http://127.0.0.1:${server.address().port}/internal/mfa/totp/devices?user_id=u`);
  const body = await res.json();
  server.close(); await storage.knex.destroy();
  if (res.status !== 401 || body.status !== 401 || !res.headers.get("content-type").startsWith("application/problem+json")) {
    console.error("unexpected answer", res.status, body); process.exit(1);
  }
  console.log(`${process.argv[1].split("/").pop()}: mounted, answered ${res.status} ${body.title}`);
});'

# With REDIS_URL (.ci/run), each consumer also runs the Redis cache on the ioredis it installed (the lowest version the
# peer range takes in one, the newest in the other): a raise (a change), a fill, a hit, a raise that ends it, a ping.
# (A fill that finds no generation stores nothing for a few seconds: the first raise makes the generation known.)
REDIS_CALL='
const roundTrip = async () => {
  const client = new Redis(process.env.REDIS_URL, { ...REDIS_CACHE_CLIENT_OPTIONS, lazyConnect: true });
  await client.connect();
  const cache = redisCache({ client, keyPrefix: `pack-test:${process.pid}:` });
  const scope = { epoch: 1, tenantId: "t", userId: "u" };
  await cache.invalidate(scope, 1);
  await cache.fill(scope, "fp", 1, { trusted: true, deviceId: "d", trustedUntil: Date.now() + 60000 }, 60000);
  const hit = await cache.get(scope, "fp");
  await cache.invalidate(scope, 2);
  const gone = await cache.get(scope, "fp");
  const up = await cache.ping();
  await cache.close();
  await client.quit();
  if (hit?.trusted !== true || gone != null || up !== true) {
    console.error("the Redis cache did not answer as it should", { hit, gone, up }); process.exit(1);
  }
  console.log(`${process.argv[1].split("/").pop()}: Redis cache on ioredis ${ioredisVersion}: fill, hit, raise, ping`);
};
if (process.env.REDIS_URL) roundTrip().catch((err) => { console.error(err); process.exit(1); });
else console.log("no REDIS_URL: the Redis cache was not run");'

# express, knex, pg and ioredis are peer dependencies: npm installs them beside the kit (@types/express, an optional
# one, only when asked). The ESM consumer takes the lowest versions package.json accepts, the others the newest.
install() { (cd "$1" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "$TARBALL" "${@:2}" >/dev/null); }
# Each peer range must be caret ranges (^x.y.z, or several joined by ||, the lowest first): its lowest version is then
# the first one's x.y.z.
LOWEST=$(node -p 'Object.entries(require("./package.json").peerDependencies).map(([n, r]) => { const ranges = r.split("||").map((p) => p.trim()); if (!ranges.every((p) => /^\^\d+\.\d+\.\d+$/.test(p))) throw new Error(`peer ${n}: ${r} is not caret ranges`); return `${n}@${ranges[0].slice(1)}`; }).join(" ")')

echo "=== ESM consumer ($LOWEST)"
# shellcheck disable=SC2086
mkdir "$WORK/esm"; install "$WORK/esm" $LOWEST
(cd "$WORK/esm" && node -e 'for (const n of Object.keys(require(process.argv[1]).peerDependencies)) console.log(`  ${n} ${require(`${n}/package.json`).version}`)' "$ROOT/package.json")
(cd "$WORK/esm" && npm pkg set type=module >/dev/null)
cat >"$WORK/esm/app.js" <<JS
import express from 'express';
import knex from 'knex';
import { internalRouter, knexStorage, problemJson } from 'express-mfa-kit';
const storage = knexStorage({ knex: knex({ client: 'pg', connection: 'postgres://127.0.0.1:1/none' }) });
const app = express();
app.use('/internal', internalRouter({ storage, internalKeys: '$KEY' }));
app.use(problemJson());
$CALL
JS
(cd "$WORK/esm" && node app.js)
cat >"$WORK/esm/redis.js" <<JS
import { createRequire } from 'node:module';
import { Redis } from 'ioredis';
import { redisCache, REDIS_CACHE_CLIENT_OPTIONS } from 'express-mfa-kit';
const ioredisVersion = createRequire(import.meta.url)('ioredis/package.json').version;
$REDIS_CALL
JS
(cd "$WORK/esm" && node redis.js)

echo "=== CommonJS consumer"
mkdir "$WORK/cjs"; install "$WORK/cjs"
cat >"$WORK/cjs/app.js" <<JS
const express = require('express');
const knex = require('knex');
const { internalRouter, knexStorage, problemJson } = require('express-mfa-kit');
const storage = knexStorage({ knex: knex({ client: 'pg', connection: 'postgres://127.0.0.1:1/none' }) });
const app = express();
app.use('/internal', internalRouter({ storage, internalKeys: '$KEY' }));
app.use(problemJson());
$CALL
JS
(cd "$WORK/cjs" && node app.js)
cat >"$WORK/cjs/redis.js" <<JS
const { Redis } = require('ioredis');
const { redisCache, REDIS_CACHE_CLIENT_OPTIONS } = require('express-mfa-kit');
const ioredisVersion = require('ioredis/package.json').version;
$REDIS_CALL
JS
(cd "$WORK/cjs" && node redis.js)

echo "=== strict TypeScript consumer"
# @types/redis-errors: ioredis 6's own declarations import redis-errors, which has none (skipLibCheck is off here).
mkdir "$WORK/ts"; install "$WORK/ts" typescript@5.9 @types/express@5 @types/node@20 @types/redis-errors@1
(cd "$WORK/ts" && npm pkg set type=module >/dev/null)
(cd "$WORK/ts" && echo "  ioredis $(node -p 'require("ioredis/package.json").version')")
cat >"$WORK/ts/tsconfig.json" <<JSON
{ "compilerOptions": { "strict": true, "module": "NodeNext", "moduleResolution": "NodeNext", "target": "ES2022",
  "noUncheckedIndexedAccess": true, "exactOptionalPropertyTypes": true, "verbatimModuleSyntax": true, "noEmit": true, "skipLibCheck": false, "types": ["node"] } }
JSON
cat >"$WORK/ts/app.ts" <<TS
import express from 'express';
import knex from 'knex';
import { Redis } from 'ioredis';
import { internalRouter, knexStorage, problemJson, ProblemError, redisCache, REDIS_CACHE_CLIENT_OPTIONS, type InternalRouterOptions, type ProblemDetails } from 'express-mfa-kit';
const storage = knexStorage({ knex: knex({ client: 'pg', connection: 'postgres://127.0.0.1:1/none' }) });
// A Redis client of the installed ioredis (the newest the peer range takes), or none: both type-check.
const redis = process.env.REDIS_URL ? new Redis(process.env.REDIS_URL, REDIS_CACHE_CLIENT_OPTIONS) : undefined;
const options: InternalRouterOptions = { storage, internalKeys: ['$KEY'], errors: { format: 'nest' }, redis, cache: redis && redisCache({ client: redis }) };
const app = express();
app.use('/internal', internalRouter(options));
app.use(problemJson({ format: (p: ProblemDetails) => ({ body: { status: p.status } }) }));
const err: ProblemError = ProblemError.from('DEVICE_NOT_FOUND');
console.log(err.status satisfies number);
TS
(cd "$WORK/ts" && npx --no-install tsc -p . && echo "app.ts: strict typecheck passed")
echo "pack test: passed"
