#!/usr/bin/env node
// `npm run build:lib`: the package's modules and declarations (tsconfig.build.json) to dist/lib/, plus the
// Lua script the Redis broker loads beside its module. `--out-dir DIR` builds elsewhere.
import { spawnSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const at = process.argv.indexOf('--out-dir');
const outDir = at > 0 ? process.argv[at + 1] : join(root, 'dist/lib');

rmSync(outDir, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', outDir], {
  stdio: 'inherit',
});
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
copyFileSync(join(root, 'server/src/broker/publish.lua'), join(outDir, 'server/src/broker/publish.lua'));
console.log(`${outDir}: the modules and declarations of ".", "./client", "./define", "./server", "./react" and "./vue"`);
