#!/usr/bin/env node
// `npm run check:package`: the package linters on the tarball users get. publint (package.json against the files:
// exports, bin, files, types) and @arethetypeswrong/cli (every typed entry point resolves to its declarations under
// node16 ESM and bundler resolution; the package is ESM only, so the esm-only profile). Fails on their errors
// (attw's exit code is 1 for any problem it reports; publint's for errors).
// `--tarball FILE` checks an existing `npm pack` output (examples/package.test.ts passes its own); else packs one.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const bin = (name) => join(root, 'node_modules/.bin', name);
const at = process.argv.indexOf('--tarball');
let tarball = at > 0 ? process.argv[at + 1] : undefined;
let work;
if (!tarball) {
  work = mkdtempSync(join(tmpdir(), 'ai-story-sse-check-'));
  const pack = spawnSync('npm', ['pack', '--pack-destination', work], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (pack.status !== 0) process.exit(pack.status ?? 1);
  tarball = join(work, readdirSync(work).find((name) => name.endsWith('.tgz')));
}

let failed = false;
for (const [name, args] of [
  ['publint', ['run', tarball, '--level', 'warning']],
  // sse-kit.js and sse-kit-worker.js are the single-file build for a <script type="module"> and its SharedWorker,
  // served as files, never imported from TypeScript: no declarations to check.
  ['attw', [tarball, '--profile', 'esm-only', '--format', 'table', '--exclude-entrypoints', './sse-kit.js', './sse-kit-worker.js']],
]) {
  console.log(`\n$ ${name} ${args.join(' ')}`);
  const result = spawnSync(bin(name), args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`${name} found errors in the package (exit ${result.status})`);
    failed = true;
  }
}
if (work) rmSync(work, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
