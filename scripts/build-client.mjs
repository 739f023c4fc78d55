#!/usr/bin/env node
// `npm run build:client`: the single-file ESM build of the client kit (client/vite.config.ts), and its size.
// Fails when the gzipped file outgrows its budget. `--out-dir DIR` builds elsewhere (tests do).
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'vite';

/** The size budget of sse-kit.js, gzipped. Lit is about 7 KB of it. */
export const BUDGET_GZIP_BYTES = 32 * 1024;

const root = new URL('..', import.meta.url).pathname;
const at = process.argv.indexOf('--out-dir');
const outDir = at > 0 ? process.argv[at + 1] : join(root, 'dist/client');

// dist/client also holds the library's client modules (scripts/build-lib.mjs): replace sse-kit.js only.
await build({ configFile: join(root, 'client/vite.config.ts'), build: { outDir, emptyOutDir: false } });

const file = join(outDir, 'sse-kit.js');
const code = readFileSync(file);
const gzip = gzipSync(code, { level: 9 }).length;
const kb = (bytes) => `${(bytes / 1024).toFixed(1)} kB`;
console.log(`${relative(process.cwd(), file) || file}  ${kb(code.length)} min, ${kb(gzip)} min+gzip (budget ${kb(BUDGET_GZIP_BYTES)})`);
if (gzip > BUDGET_GZIP_BYTES) {
  console.error(`sse-kit.js is over its budget by ${kb(gzip - BUDGET_GZIP_BYTES)}: find what grew (npx vite-bundle-visualizer, or the source map).`);
  process.exit(1);
}
