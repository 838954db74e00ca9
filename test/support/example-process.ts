/** How the tests start `examples/server.ts` as a child process, from any working directory. */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** tsx's loader by absolute URL, so the server can run from another working directory. */
const TSX = pathToFileURL(createRequire(path.join(ROOT, 'package.json')).resolve('tsx')).href;

/** `node` arguments that run the example server under tsx. */
export const EXAMPLE_SERVER_ARGS: readonly string[] = ['--import', TSX, path.join(ROOT, 'examples', 'server.ts')];
