/**
 * The benchmark's reference: a bare Express 5 app answering, at the kit's paths, the JSON the kit
 * answered to a probe request (no auth, no database, no cache). `npm run bench` runs it as a child
 * process, exactly like the example server, and reports every scenario as a ratio to it.
 *
 * Env: `PORT`, `HOST` (default 127.0.0.1), `BENCH_ROUTES` (a JSON file: [{ method, path, status, body }]),
 * `BARE_MIDDLEWARE` (optional, comma-separated `helmet`, `pino`: the example server's API security headers
 * (examples/security-headers.ts: helmet configured for JSON) and a pino-http line per request (the example
 * server's request log before it wrote its own), to measure what they cost on their own; the log goes to
 * stdout at level info).
 */
import { readFileSync } from 'node:fs';
import express, { type RequestHandler } from 'express';
import { pino } from 'pino';
import { pinoHttp } from 'pino-http';
import { apiSecurityHeaders } from '../examples/security-headers.js';

/** One canned answer, as `scripts/bench.ts` writes them. */
export interface BareRoute {
  method: 'GET' | 'POST';
  path: string;
  status: number;
  body: unknown;
  /** Answer only when this query parameter starts with `prefix` (two scenarios on one path). */
  when?: { query: string; prefix: string };
}

const routes = JSON.parse(readFileSync(process.env.BENCH_ROUTES ?? '', 'utf8')) as BareRoute[];
const middleware = new Set((process.env.BARE_MIDDLEWARE ?? '').split(',').filter(Boolean));

const app = express();
app.disable('x-powered-by');
if (middleware.has('helmet')) app.use(apiSecurityHeaders());
if (middleware.has('pino')) {
  // Configured as in examples/app.ts, so the line costs the same.
  app.use(
    pinoHttp({
      logger: pino({ level: 'info' }),
      customSuccessObject: (_req, _res, val: object) => ({ ...val, request_id: 'req_00000000-0000-0000-0000-000000000000', tenant_id: 'bench' }),
      wrapSerializers: false,
      serializers: {
        req: (req: { method?: string; originalUrl?: string; url?: string }) => ({ method: req.method, path: (req.originalUrl ?? req.url ?? '').split('?', 1)[0] }),
        res: (res: { statusCode?: number }) => ({ status: res.statusCode }),
        err: pino.stdSerializers.err,
      },
    }),
  );
}

app.get('/healthz', (_req, res) => {
  res.json({ status: 'ok' });
});
for (const route of routes) {
  const { when } = route;
  // res.json() serialises per request, as the kit does: a pre-serialised string would flatter the reference.
  const answer: RequestHandler = (req, res, next) => {
    if (when) {
      const value = req.query[when.query];
      if (typeof value !== 'string' || !value.startsWith(when.prefix)) {
        next();
        return;
      }
    }
    res.status(route.status).json(route.body);
  };
  if (route.method === 'POST') app.post(route.path, express.json(), answer);
  else app.get(route.path, answer);
}

const server = app.listen(Number(process.env.PORT ?? 3001), process.env.HOST ?? '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
