#!/usr/bin/env node
// `npm start` runs this first: builds what is missing or older than its sources, so a fresh clone starts with one
// command and plain node runs the server. `demo`: the demo page (Vite, demo/dist). `server`: the compiled server
// and library (scripts/build-lib.mjs, dist/). No argument: both.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

/** What each part is built from, the file whose age stands for the build, and how it is built. */
const PARTS = {
  demo: {
    built: 'demo/dist/index.html',
    sources: ['demo', 'client/src', 'protocol'],
    command: [join(root, 'node_modules/vite/bin/vite.js'), 'build', '--config', 'demo/vite.config.ts', '--logLevel', 'warn'],
  },
  server: {
    built: 'dist/server/main.js',
    sources: ['server/src', 'protocol', 'client/src', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build-lib.mjs'],
    command: [join(root, 'scripts/build-lib.mjs')],
  },
};

function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let latest = 0;
  for (const name of readdirSync(path)) {
    if (name === 'dist' || name === 'node_modules') continue;
    latest = Math.max(latest, newest(join(path, name)));
  }
  return latest;
}

const wanted = process.argv.slice(2);
for (const name of wanted.length > 0 ? wanted : Object.keys(PARTS)) {
  const part = PARTS[name];
  if (!part) {
    console.error(`build-if-stale: unknown part "${name}" (${Object.keys(PARTS).join(', ')})`);
    process.exit(2);
  }
  const built = join(root, part.built);
  const builtAt = existsSync(built) ? statSync(built).mtimeMs : 0;
  const changedAt = Math.max(...part.sources.map((source) => join(root, source)).filter(existsSync).map(newest));
  if (builtAt >= changedAt) continue;
  console.log(builtAt ? `${name} sources changed: rebuilding the ${name}` : `building the ${name} (first start)`);
  const result = spawnSync(process.execPath, part.command, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
