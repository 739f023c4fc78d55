#!/usr/bin/env node
// Runs node's test runner over every *.test.ts under the given folders.
// Node 20 does not expand globs and silently runs nothing when given a folder, so list the files here.
// `--timeout MS` (default 120000) bounds each test, and each file as a whole: the packed-package test takes longer.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';

function find(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name === 'node_modules') return [];
    return statSync(path).isDirectory() ? find(path) : name.endsWith('.test.ts') ? [path] : [];
  });
}

const args = process.argv.slice(2);
const at = args.indexOf('--timeout');
const timeout = at >= 0 ? Number(args.splice(at, 2)[1]) : 120000;
const folders = args;
const files = folders.flatMap(find).sort();
if (files.length === 0) {
  console.error(`no *.test.ts files under ${folders.join(', ')}`);
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-timeout=${timeout}`, '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
