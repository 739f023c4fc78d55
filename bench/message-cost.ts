/**
 * CPU time per message, in the hub and in its Redis, for the many-small-jobs shape (one subscriber per project):
 * `node --import tsx bench/message-cost.ts`. A fixed, moderate rate that both keep up with, so the figure is the
 * work each message costs rather than a throughput the machine's other load would move: the CPU seconds the
 * server's and Redis's processes used (from /proc) divided by the messages delivered. For A/B runs of a hot-path
 * change on a shared machine (the throughput trials of `npm run bench` need a quiet one). Not part of
 * `npm run bench`.
 *
 * Knobs: COST_PROJECTS (400), COST_MESSAGES (40000), COST_RATE (4000 msg/s), COST_RUNS (3, the median is printed),
 * BENCH_SERVER_CPU / BENCH_REDIS_CPU / BENCH_LOADGEN_CPU, BENCH_SERVER_NODE_FLAGS (e.g. `--cpu-prof`).
 */
import { LatencyHistogram } from './lib/histogram.js';
import { cpuSeconds } from './lib/proc.js';
import { RawRedisBenchPublisher } from './lib/publishers.js';
import { now, SseConnection, type Tally } from './lib/sse-connection.js';
import { startOurs, startRedis } from './lib/targets.js';

const PROJECTS = Number(process.env.COST_PROJECTS ?? 400);
const MESSAGES = Number(process.env.COST_MESSAGES ?? 40_000);
const RATE = Number(process.env.COST_RATE ?? 4000);
const RUNS = Number(process.env.COST_RUNS ?? 3);
const SERVER_CPU = process.env.BENCH_SERVER_CPU ?? '0';
const REDIS_CPU = process.env.BENCH_REDIS_CPU ?? '0';
const PAD = 'x'.repeat(120);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const redis = await startRedis(REDIS_CPU);
const server = await startOurs(SERVER_CPU, redis.url);
const tally: Tally = { events: 0, reads: 0, dupes: 0, gaps: 0, late: 0, bytes: 0, histogram: new LatencyHistogram() };
const connections: SseConnection[] = [];
for (let i = 0; i < PROJECTS; i++) {
  connections.push(new SseConnection({ port: server.port, path: `/api/v1/sse/projects/cost${i}/stages/rewrite/`, localAddress: '127.0.0.1', readyOn: 'connected-event' }, tally));
}
await Promise.all(connections.map((c) => c.whenReady(30_000)));
const publisher = new RawRedisBenchPublisher(redis.url);
await publisher.ready();

const hub: number[] = [];
const store: number[] = [];
let k = 0;
const counts = new Array<number>(PROJECTS).fill(0);
for (let run = 0; run <= RUNS; run++) {
  const expected = tally.events + MESSAGES;
  const cpu = [cpuSeconds(server.pid), cpuSeconds(redis.pid)];
  const started = now();
  connections.forEach((c, i) => (c.next = c.floor = counts[i]!));
  let sent = 0;
  while (sent < MESSAGES) {
    const due = Math.min(MESSAGES, Math.floor(((now() - started) * RATE) / 1000) + 1);
    for (; sent < due; sent++, k++) {
      const project = k % PROJECTS;
      publisher.send(`cost${project}`, 'rewrite', 'progress', { seq: counts[project]!++, t: Math.round(now() * 1000) / 1000, item_name: PAD });
    }
    await sleep(1);
  }
  await publisher.drain();
  const deadline = now() + 10_000;
  while (tally.events < expected && now() < deadline) await sleep(5);
  await sleep(200);
  const used = [cpuSeconds(server.pid) - cpu[0]!, cpuSeconds(redis.pid) - cpu[1]!];
  const delivered = tally.events - (expected - MESSAGES);
  // The first run warms the server's JIT and Redis's keys up; it is not counted.
  if (run > 0) {
    hub.push((used[0]! / MESSAGES) * 1e6);
    store.push((used[1]! / MESSAGES) * 1e6);
  }
  console.log(
    `${run === 0 ? 'warm-up' : `run ${run}`}: ${delivered} of ${MESSAGES} delivered, ${tally.dupes} repeated, ${tally.gaps} skipped, publisher errors ${publisher.errors}; ` +
      `hub ${((used[0]! / MESSAGES) * 1e6).toFixed(1)} µs/msg, redis ${((used[1]! / MESSAGES) * 1e6).toFixed(1)} µs/msg`,
  );
}
console.log(`median of ${RUNS}: hub ${median(hub).toFixed(1)} µs of CPU per message, redis ${median(store).toFixed(1)} µs (${PROJECTS} projects, one subscriber each, ${RATE} msg/s)`);
await publisher.close();
for (const c of connections) c.close();
await server.stop();
await redis.stop();
