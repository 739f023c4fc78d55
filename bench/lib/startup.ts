/**
 * The startup scenario (issue 19): the server as it ran before, through the TypeScript loader
 * (`node --import tsx server/src/main.ts`), against the compiled server `npm start` now runs (`node
 * dist/server/main.js`): the time from spawn to the first 200 on /healthz, the RSS then, and the RSS after two idle
 * seconds. Median of `runs` fresh processes each, alternating, on a redis-server of its own; writes
 * results/startup.md. Alone: `BENCH_TARGETS=ours BENCH_ONLY=startup npm run bench`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rssBytes } from './proc.js';
import { ROOT, freePort, pinned } from './targets.js';

export interface StartupSample {
  readyMs: number;
  rssReady: number;
  rssIdle: number;
}

export interface StartupResult {
  runs: number;
  tsx: StartupSample;
  compiled: StartupSample;
  started: string;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function once(cpu: string, args: string[], redisUrl: string): Promise<StartupSample> {
  const port = await freePort();
  const began = performance.now();
  const child = pinned(cpu, process.execPath, args, {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', REDIS_URL: redisUrl, LOG_LEVEL: 'warn', SSE_ENABLE_DEMO: 'false' },
  });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with ${child.exitCode}`);
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((response) => response.ok, () => false);
      if (ok) break;
      if (performance.now() - began > 30_000) throw new Error(`${args.join(' ')} was not healthy within 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const readyMs = performance.now() - began;
    const rssReady = rssBytes(child.pid!);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    return { readyMs, rssReady, rssIdle: rssBytes(child.pid!) };
  } finally {
    await new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }
}

export async function measureStartup(cpu: string, redisUrl: string, runs = 5): Promise<StartupResult> {
  // The compiled server, built as `npm start` builds it (only when missing or stale).
  const built = spawnSync(process.execPath, ['scripts/build-if-stale.mjs', 'server'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  if (built.status !== 0 || !existsSync(join(ROOT, 'dist/server/main.js'))) throw new Error('building dist/server failed');
  const samples: Record<'tsx' | 'compiled', StartupSample[]> = { tsx: [], compiled: [] };
  // One warm-up each (the file cache, tsx's compile cache), not counted; then alternating, so drift hits both alike.
  await once(cpu, ['--import', 'tsx', 'server/src/main.ts'], redisUrl);
  await once(cpu, ['dist/server/main.js'], redisUrl);
  for (let i = 0; i < runs; i++) {
    samples.tsx.push(await once(cpu, ['--import', 'tsx', 'server/src/main.ts'], redisUrl));
    samples.compiled.push(await once(cpu, ['dist/server/main.js'], redisUrl));
  }
  const summary = (list: StartupSample[]): StartupSample => ({
    readyMs: median(list.map((s) => s.readyMs)),
    rssReady: median(list.map((s) => s.rssReady)),
    rssIdle: median(list.map((s) => s.rssIdle)),
  });
  return { runs, tsx: summary(samples.tsx), compiled: summary(samples.compiled), started: new Date().toISOString() };
}

export function writeStartupReport(result: StartupResult, commit: string): string {
  const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  const ratio = (after: number, before: number) => `${(((after - before) / before) * 100).toFixed(0)}%`;
  const { tsx, compiled } = result;
  const text = `# Startup time and memory: through tsx (before) and compiled (after)

Issue 19: \`npm start\` used to run \`node --import tsx server/src/main.ts\`, compiling TypeScript in the running process; it
now runs \`node dist/server/main.js\`, built by \`npm run build:lib\`. Median of ${result.runs} fresh processes each (after one
warm-up each), alternating, pinned to one core, on a private redis-server; the demo off. "Ready" is the time from spawn
to the first 200 on \`/healthz\` (polled every 5 ms); RSS is read from /proc at that moment and after two idle seconds.

| | ready | RSS when ready | RSS after 2 s idle |
| --- | ---: | ---: | ---: |
| before: \`node --import tsx server/src/main.ts\` | ${tsx.readyMs.toFixed(0)} ms | ${mb(tsx.rssReady)} | ${mb(tsx.rssIdle)} |
| after: \`node dist/server/main.js\` | ${compiled.readyMs.toFixed(0)} ms | ${mb(compiled.rssReady)} | ${mb(compiled.rssIdle)} |
| change | ${ratio(compiled.readyMs, tsx.readyMs)} | ${ratio(compiled.rssReady, tsx.rssReady)} | ${ratio(compiled.rssIdle, tsx.rssIdle)} |

Commit ${commit}, ${result.started}. \`BENCH_TARGETS=ours BENCH_ONLY=startup npm run bench\` runs this alone.
`;
  const file = join(ROOT, 'bench/results/startup.md');
  writeFileSync(file, text);
  return file;
}

