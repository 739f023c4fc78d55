/**
 * The batching scenario (issue 17, item 4): what StreamPublisher's `batch` option saves when a model streams
 * 150 tokens/s. One fresh redis-server and one fresh server; the same answer is published twice at that rate, once a
 * message per token and once batched (10 tokens or 50 ms), each on its own project with the same viewers (compact
 * streams, as the kit's client opens them). For each: the Redis commands (`INFO commandstats`, differenced), Redis's
 * and the hub's CPU time (/proc), the messages the hub received, the bytes on the viewers' sockets, the token events
 * they got, and whether every viewer ended with the exact text.
 *
 * Runs from bench/run.ts (`BENCH_ONLY=batching`, ours only) and writes bench/results/batching.md (+ batching.json).
 */
import { writeFileSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisBroker } from '../../server/src/broker/redis-broker.js';
import { StreamPublisher, type TokenBatching } from '../../server/src/publisher.js';
import { longAnswerPieces } from './long-answer.js';
import { cpuSeconds } from './proc.js';
import { ROOT } from './targets.js';

export const BATCH_RATE = 150;
export const BATCH_OPTIONS: Required<TokenBatching> = { maxTokens: 10, maxDelayMs: 50 };

export interface BatchingRun {
  label: string;
  batch: Required<TokenBatching> | false;
  tokens: number;
  /** Seconds from the first token to the done. */
  seconds: number;
  /** Achieved token rate. */
  rate: number;
  /** Commands Redis ran meanwhile (INFO commandstats, differenced; those run by publish.lua included), by name. */
  commands: Record<string, number>;
  commandsTotal: number;
  /** Messages (and payload bytes) the pub/sub channel carried: what each hub process receives. */
  pubsubMessages: number;
  pubsubBytes: number;
  /** CPU seconds of the hub process and of redis-server while the answer streamed. */
  hubCpuSeconds: number;
  redisCpuSeconds: number;
  /** Per viewer: bytes read from its socket (HTTP, chunk framing, SSE), token events, whether its text is exact. */
  viewers: number;
  wireBytesPerViewer: number;
  tokenEventsPerViewer: number;
  allExact: boolean;
  /** A piece's delay as the viewers see it: from its publishToken call to the event that carries it, ms (p50, p99, max). */
  latencyMs: { p50: number; p99: number; max: number };
}

export interface BatchingResult {
  started: string;
  seconds: number;
  rate: number;
  viewers: number;
  tokens: number;
  runs: BatchingRun[];
}

/** A compact SSE stream read with node:http: socket bytes, token events, the text rebuilt from their pieces. */
function viewer(port: number, path: string) {
  let response: IncomingMessage | undefined;
  let buffer = '';
  let text = '';
  let tokenEvents = 0;
  let done = false;
  const arrivals: number[] = [];
  const textLengths: number[] = [];
  let onDone: (() => void) | undefined;
  const connected = new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { Accept: 'text/event-stream' } }, (res) => {
      response = res;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
          if (event === 'connected') resolve();
          if (event === 'token') {
            const message = JSON.parse(data) as { content: string; full_text?: string };
            text = message.full_text ?? text + message.content;
            tokenEvents++;
            arrivals.push(performance.now());
            textLengths.push(text.length);
          } else if (event === 'done') {
            done = true;
            onDone?.();
          }
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  return {
    connected,
    finished: () => new Promise<void>((resolve) => (done ? resolve() : (onDone = resolve))),
    result: () => ({ text, tokenEvents, wireBytes: response?.socket?.bytesRead ?? 0, arrivals, textLengths }),
    close: () => response?.destroy(),
  };
}

function commandStats(info: string): Record<string, number> {
  const stats: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats[match[1]!] = Number(match[2]);
  return stats;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]! : 0;
}

/** Publishes `pieces` at BATCH_RATE to `viewers` compact streams of a fresh project, batched or not, and measures it. */
async function runOnce(
  label: string,
  batch: Required<TokenBatching> | false,
  pieces: string[],
  env: { redisUrl: string; redisPid: number; hubPid: number; port: number; viewers: number },
): Promise<BatchingRun> {
  const project = `batching-${batch ? 'on' : 'off'}`;
  const admin = new Redis(env.redisUrl);
  const sniffer = new Redis(env.redisUrl);
  const broker = new RedisBroker({ url: env.redisUrl });
  const views = Array.from({ length: env.viewers }, () => viewer(env.port, `/api/v1/sse/projects/${project}/stages/rewrite/?compact=1`));
  try {
    await Promise.all(views.map((v) => v.connected));
    let pubsubMessages = 0;
    let pubsubBytes = 0;
    sniffer.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
      pubsubMessages++;
      pubsubBytes += message.length;
    });
    await sniffer.subscribe(`ai_story:project:${project}:stage:rewrite`);
    // Warm the connection and the script (not measured): a message of another project.
    const warm = new StreamPublisher({ projectId: `${project}-warm`, stage: 'rewrite', broker, leaseMs: false });
    await warm.publishDone('warm');
    await warm.close();
    const publisher = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, batch });
    await new Promise((r) => setTimeout(r, 300));
    const before = commandStats(await admin.info('commandstats'));
    const hubBefore = cpuSeconds(env.hubPid);
    const redisBefore = cpuSeconds(env.redisPid);
    const started = performance.now();
    // When each piece was handed to the publisher, and the text length it completes.
    const sentAt: number[] = [];
    const ends: number[] = [];
    let text = '';
    for (let i = 0; i < pieces.length; i++) {
      const due = started + (i * 1000) / BATCH_RATE;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      text += pieces[i]!;
      sentAt.push(performance.now());
      ends.push(text.length);
      await publisher.publishToken(pieces[i]!, text);
    }
    await publisher.publishDone(text);
    await Promise.all(views.map((v) => v.finished()));
    const seconds = (performance.now() - started) / 1000;
    const hubCpuSeconds = cpuSeconds(env.hubPid) - hubBefore;
    const redisCpuSeconds = cpuSeconds(env.redisPid) - redisBefore;
    const after = commandStats(await admin.info('commandstats'));
    await publisher.close();
    const commands: Record<string, number> = {};
    for (const [name, calls] of Object.entries(after)) {
      const delta = calls - (before[name] ?? 0);
      // The two INFO calls of the measurement itself are not the workload's.
      if (name === 'info') continue;
      if (delta > 0) commands[name] = delta;
    }
    const results = views.map((v) => v.result());
    const latencies: number[] = [];
    for (const r of results) {
      let piece = 0;
      r.arrivals.forEach((at, i) => {
        for (; piece < ends.length && ends[piece]! <= r.textLengths[i]!; piece++) latencies.push(at - sentAt[piece]!);
      });
    }
    latencies.sort((a, b) => a - b);
    return {
      label,
      batch,
      tokens: pieces.length,
      seconds,
      rate: pieces.length / seconds,
      commands,
      commandsTotal: Object.values(commands).reduce((a, b) => a + b, 0),
      pubsubMessages,
      pubsubBytes,
      hubCpuSeconds,
      redisCpuSeconds,
      viewers: env.viewers,
      wireBytesPerViewer: results.reduce((a, r) => a + r.wireBytes, 0) / results.length,
      tokenEventsPerViewer: results.reduce((a, r) => a + r.tokenEvents, 0) / results.length,
      allExact: results.every((r) => r.text === text),
      latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? 0 },
    };
  } finally {
    for (const v of views) v.close();
    await sniffer.quit().catch(() => sniffer.disconnect());
    await admin.quit().catch(() => admin.disconnect());
    await broker.close();
  }
}

/** The scenario: unbatched, then batched, on the same redis-server and hub. */
export async function runBatching(env: { redisUrl: string; redisPid: number; hubPid: number; port: number; quick: boolean }): Promise<BatchingResult> {
  const started = new Date().toISOString();
  const seconds = env.quick ? 4 : 10;
  const viewers = env.quick ? 20 : 50;
  const pieces = longAnswerPieces(BATCH_RATE * seconds);
  const runs = [
    await runOnce('a message per token (default)', false, pieces, { ...env, viewers }),
    await runOnce(`batched: ${BATCH_OPTIONS.maxTokens} tokens or ${BATCH_OPTIONS.maxDelayMs} ms`, BATCH_OPTIONS, pieces, { ...env, viewers }),
  ];
  return { started, seconds, rate: BATCH_RATE, viewers, tokens: pieces.length, runs };
}

export function writeBatchingReport(r: BatchingResult, commit: string): string {
  const [off, on] = r.runs as [BatchingRun, BatchingRun];
  const n = (v: number) => Math.round(v).toLocaleString('en-US');
  const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : '–');
  const saved = (a: number, b: number) => (a > 0 ? `${Math.round((1 - b / a) * 100)}%` : '–');
  const row = (what: string, a: number, b: number, format: (v: number) => string = n) => `| ${what} | ${format(a)} | ${format(b)} | ${ratio(b, a)} | ${saved(a, b)} |`;
  const ms = (v: number) => v.toFixed(0);
  const cpu = (v: number) => `${(v * 1000).toFixed(0)} ms`;
  const names = [...new Set([...Object.keys(off.commands), ...Object.keys(on.commands)])].sort((a, b) => (off.commands[b] ?? 0) - (off.commands[a] ?? 0));
  const text = `# Batched publishing (issue 17, item 4): ${r.rate} tokens/s, with and without \`batch\`

Written by \`npm run bench\` (scenario \`batching\`, ours only; alone: \`BENCH_TARGETS=ours BENCH_ONLY=batching npm run bench\`). Run ${r.started.replace('T', ' ').slice(0, 19)} UTC on commit ${commit}.
Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}; Node ${process.version}. One fresh redis-server and one server (each pinned as in the rest of the bench); the publisher (the kit's \`StreamPublisher\`, awaiting each call, as a worker does) runs in the bench's process.

The same ${n(r.tokens)}-token answer (the long-answer scenario's pieces, about 6 bytes each) is published at ${r.rate} tokens/s (${r.seconds} s), then its \`done\`, once with a message per token and once with \`batch: { maxTokens: ${BATCH_OPTIONS.maxTokens}, maxDelayMs: ${BATCH_OPTIONS.maxDelayMs} }\`, each on a project of its own watched by ${r.viewers} compact streams (\`?compact=1\`, as the kit's client opens them).

| | per token | batched | batched ÷ per token | saved |
| --- | ---: | ---: | ---: | ---: |
${row('Redis commands (INFO commandstats, all)', off.commandsTotal, on.commandsTotal)}
${names.map((name) => row(`  \`${name}\``, off.commands[name] ?? 0, on.commands[name] ?? 0)).join('\n')}
${row('pub/sub messages to each hub process', off.pubsubMessages, on.pubsubMessages)}
${row('pub/sub payload bytes to each hub process', off.pubsubBytes, on.pubsubBytes)}
${row('hub CPU while streaming', off.hubCpuSeconds, on.hubCpuSeconds, cpu)}
${row('redis-server CPU while streaming', off.redisCpuSeconds, on.redisCpuSeconds, cpu)}
${row('token events per viewer', off.tokenEventsPerViewer, on.tokenEventsPerViewer)}
${row('bytes on the wire per viewer', off.wireBytesPerViewer, on.wireBytesPerViewer)}
${row(`bytes on the wire, all ${r.viewers} viewers`, off.wireBytesPerViewer * r.viewers, on.wireBytesPerViewer * r.viewers)}
| achieved rate (tokens/s) | ${off.rate.toFixed(1)} | ${on.rate.toFixed(1)} | | |
| every viewer's text exact | ${off.allExact ? 'yes' : '**NO**'} | ${on.allExact ? 'yes' : '**NO**'} | | |
| a piece's delay to the viewers: p50 / p99 / max (ms) | ${ms(off.latencyMs.p50)} / ${ms(off.latencyMs.p99)} / ${ms(off.latencyMs.max)} | ${ms(on.latencyMs.p50)} / ${ms(on.latencyMs.p99)} / ${ms(on.latencyMs.max)} | | |

- **Redis commands**: each message is one \`EVALSHA\` of publish.lua, and the commands the script runs (\`XADD\`, \`HSET\`, \`APPEND\`, \`PUBLISH\`, the TTLs, the control hash) are counted as calls too. A batch costs what one token costs, so the work falls by about the batch size; what is left is the lease's \`ZADD\`, heartbeats and the \`done\`.
- **hub CPU and bytes**: the hub frames and writes one event per message to every viewer, so its CPU and the bytes on the wire follow the number of events; the text itself is the same in both (the SSE and HTTP chunk framing, \`id\`, \`type\`, \`stage\`, \`project_id\`, \`timestamp\` are paid once per event instead of once per token).
- **the price**: a piece waits in the publisher until its batch is full or ${BATCH_OPTIONS.maxDelayMs} ms after the batch's first piece. At ${r.rate} tokens/s, ${BATCH_OPTIONS.maxTokens} tokens take about ${Math.round((BATCH_OPTIONS.maxTokens * 1000) / r.rate)} ms, so ${(BATCH_OPTIONS.maxTokens * 1000) / r.rate > BATCH_OPTIONS.maxDelayMs ? `the time bound fires first (batches of about ${(on.tokens / Math.max(1, on.tokenEventsPerViewer)).toFixed(1)} tokens here)` : 'the count fires first'}; the first piece of a batch is shown up to ${BATCH_OPTIONS.maxDelayMs} ms later than without batching, the last one at once (the delay row: each piece, from its \`publishToken\` call to the event that carries it, over every viewer).
- Batching is off by default; turn it on where a model streams faster than viewers can read: \`batch: true\` (Node), \`batch=True\` (Python).
`;
  const file = join(ROOT, 'bench/results/batching.md');
  writeFileSync(file, text);
  writeFileSync(join(ROOT, 'bench/results/batching.json'), `${JSON.stringify({ ...r, commit }, null, 2)}\n`);
  return file;
}
