/**
 * `npm run bench`: the same scenarios, in one run and with the same core placement, against our server,
 * nginx + nchan and a naive one-Redis-subscriber-per-client server; prints a table with ratios and writes
 * bench/results/<timestamp>.md (+ .svg, .json) and bench/results/latest.md + latest.svg.
 *
 * Env: BENCH_QUICK=1 (small N, short trials), BENCH_TARGETS=ours,nchan,naive (subset, in order),
 * BENCH_ONLY=fanout,allstages,projects,idle,tokens,render,resume,long-answer,late-join,batching,pressure,storm,churn (subset of the scenarios),
 * BENCH_SERVER_CPU / BENCH_LOADGEN_CPU / BENCH_REDIS_CPU (taskset lists; default 0 / 1 / 0),
 * BENCH_P99_LIMIT_MS (what "keeps up" allows, default 200), BENCH_COMPACT_QUERY (the query that asks our
 * server for compact token events, default `compact=1`), BENCH_NO_INSTALL=1 (never apt-get nginx),
 * BENCH_FIXED_ONLY=1 (fan-out: only the fixed-rate trial), BENCH_OURS_DIR (another checkout whose server/src/main.ts to measure as ours, e.g. with a proposed patch).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { meanOtherCpu, writeReport, type BenchRun, type TargetName, type TargetResults } from './lib/report.js';
import { Redis } from 'ioredis';
import { peakRssBytes, resetPeakRss, rssBytes } from './lib/proc.js';
import { CHROMIUM, renderMissing, startRenderPage } from './lib/render-page.js';
import { LONG_TOKENS, LONG_WARMUP_TOKENS, PubsubCounter, gitCommit, projectMemory, usedMemory, writeLongAnswerReport, type LongAnswerResult, type LongPublishResult, type LongViewResult } from './lib/long-answer.js';
import { LATE_MID_AT, LATE_TOKENS, writeLateJoinReport, type LateJoinResult } from './lib/late-join.js';
import { measureStartup, writeStartupReport } from './lib/startup.js';
import { BATCH_RATE, runBatching, writeBatchingReport } from './lib/batching.js';
import { PRESSURE_READ_BYTES_PER_SECOND, runPressure, writePressureReport } from './lib/pressure.js';
import { runStorm, stormCheck, stormSizes, writeStormReport } from './lib/storm.js';
import type { ChurnResult, CommandBody, OpenResult, RenderResult, Reply, ResumeResult, Routing, SearchResult, Target, TokensResult, TrialResult } from './lib/protocol.js';
import { ROOT, NOFILE, nchanMissing, nginxVersion, pinned, startNaive, startNchan, startOurs, startRedis, type Running } from './lib/targets.js';

const quick = process.env.BENCH_QUICK === '1';
const SERVER_CPU = process.env.BENCH_SERVER_CPU ?? '0';
const LOADGEN_CPU = process.env.BENCH_LOADGEN_CPU ?? '1';
const REDIS_CPU = process.env.BENCH_REDIS_CPU ?? SERVER_CPU;
const P99_LIMIT_MS = Number(process.env.BENCH_P99_LIMIT_MS ?? 200);
const COMPACT_QUERY = process.env.BENCH_COMPACT_QUERY ?? 'compact=1';
const ONLY = process.env.BENCH_ONLY?.split(',').map((s) => s.trim());
const wanted = (scenario: string) => !ONLY || ONLY.includes(scenario);
const TARGETS = (process.env.BENCH_TARGETS ?? 'ours,nchan,naive').split(',').map((s) => s.trim()) as TargetName[];

/** Scenario sizes: the issue's, or a fifth of them for a quick run. */
export const SIZES = {
  fanout: process.env.BENCH_FANOUT ? process.env.BENCH_FANOUT.split(',').map(Number) : quick ? [200, 1000] : [1000, 5000],
  allStages: quick ? 200 : 1000,
  projects: quick ? 400 : 2000,
  idle: quick ? 2000 : 10_000,
  tokens: quick ? 1000 : 5000,
  renderTokens: quick ? 5000 : 20_000,
  fixedRate: Number(process.env.BENCH_FIXED_RATE ?? 20),
  fixedMs: quick ? 3000 : 5000,
  trialMs: quick ? 1500 : 3000,
  graceMs: 1000,
  maxTrials: quick ? 6 : 8,
  resolution: quick ? 1.25 : 1.2,
  churnMs: quick ? 2000 : 5000,
  churnConcurrency: 32,
  /** The long resume: this many non-compact clients at once, of an answer of `resumeTokens` tokens of 20 bytes. */
  resumeClients: quick ? 16 : 64,
  resumeTokens: 1000,
  /** The reconnect storm (issue 20): clients, over projects. */
  stormClients: stormSizes(quick).clients,
  stormProjects: stormSizes(quick).projects,
};
const STAGES = ['rewrite', 'storyboard', 'image_generation', 'video_generation'];

class Loadgen {
  readonly #child: ChildProcess;
  readonly #waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  #id = 0;

  constructor() {
    this.#child = spawn('prlimit', [`--nofile=${NOFILE}:${NOFILE}`, 'taskset', '-c', LOADGEN_CPU, process.execPath, '--import', 'tsx', 'bench/loadgen.ts'], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child.on('message', (reply: Reply) => {
      const waiter = this.#waiting.get(reply.id);
      this.#waiting.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.result);
      else waiter?.reject(new Error(reply.error));
    });
    this.#child.on('exit', (code) => {
      for (const waiter of this.#waiting.values()) waiter.reject(new Error(`the load generator exited (${code})`));
      this.#waiting.clear();
    });
  }

  call<T>(command: CommandBody): Promise<T> {
    const id = ++this.#id;
    return new Promise<T>((resolve, reject) => {
      if (!this.#child.connected) return reject(new Error('the load generator is gone'));
      this.#waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#child.send({ ...command, id }, (error) => {
        if (!error) return;
        this.#waiting.delete(id);
        reject(error);
      });
    });
  }

  async exit(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    await this.call({ cmd: 'exit' }).catch(() => {});
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (this.#child.exitCode === null) this.#child.kill('SIGKILL');
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line: string) => process.stderr.write(`${line}\n`);

function stagePath(project: string, stage: string): string {
  return `/api/v1/sse/projects/${project}/stages/${stage}/`;
}

async function step<T>(results: TargetResults, name: string, run: () => Promise<T>): Promise<T | undefined> {
  const started = Date.now();
  log(`  ${name} ...`);
  try {
    const value = await run();
    log(`  ${name}: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return value;
  } catch (error) {
    const message = (error as Error).message.split('\n')[0]!;
    log(`  ${name}: FAILED: ${message}`);
    results.errors.push(`${name}: ${message}`);
    return undefined;
  } finally {
    await results.loadgen?.call({ cmd: 'closeAll' }).catch(() => {});
  }
}

function checkOpen(open: OpenResult, what: string): void {
  if (open.failed > 0) log(`    ${what}: ${open.failed} connections failed (${open.firstError})`);
  if (open.opened === 0) throw new Error(`${what}: no connection opened (${open.firstError})`);
}

async function runTarget(name: TargetName, loadgen: Loadgen): Promise<TargetResults> {
  const results: TargetResults = { name, errors: [], fanout: {}, loadgen };
  if (name === 'nchan') {
    const missing = nchanMissing();
    if (missing) {
      results.skipped = missing;
      log(`  skipped: ${missing}`);
      return results;
    }
    results.version = nginxVersion();
  }

  let redis: (Running & { url: string }) | undefined;
  let server: Running;
  let target: Target;
  if (name === 'nchan') {
    const nchan = await startNchan(SERVER_CPU);
    server = nchan;
    target = { name, port: nchan.port, readyOn: 'headers', publish: { via: 'nchan-http' }, pids: [nchan.pid] };
    results.pidLabels = ['nginx worker'];
  } else {
    redis = await startRedis(REDIS_CPU);
    server = name === 'ours' ? await startOurs(SERVER_CPU, redis.url) : await startNaive(SERVER_CPU, redis.url);
    target = { name, port: server.port, readyOn: 'connected-event', publish: { via: 'redis', url: redis.url }, pids: [server.pid, redis.pid] };
    results.pidLabels = ['server', 'redis'];
  }
  await loadgen.call({ cmd: 'target', target });

  try {
    // The naive peer holds two descriptors per client (the client's socket and its Redis connection).
    const idle = name === 'naive' ? Math.min(SIZES.idle, Math.floor((NOFILE - 200) / 2)) : SIZES.idle;
    if (wanted('idle')) await step(results, `${idle} idle connections`, async () => {
      // First, on a fresh process (a Node heap that earlier scenarios grew would hide the growth), after a warm-up.
      const warm = await loadgen.call<OpenResult>({ cmd: 'open', paths: Array(200).fill(stagePath('warmup', 'rewrite')) });
      checkOpen(warm, 'idle warm-up');
      await loadgen.call({ cmd: 'closeAll' });
      await sleep(2000);
      const before = target.pids.map(rssBytes);
      const open = await loadgen.call<OpenResult>({ cmd: 'open', paths: Array(idle).fill(stagePath('idle', 'rewrite')) });
      checkOpen(open, 'idle');
      await sleep(3000);
      const after = target.pids.map(rssBytes);
      // BENCH_IDLE_SIGNAL (e.g. SIGUSR2 with BENCH_SERVER_NODE_FLAGS=--heapsnapshot-signal=SIGUSR2): a heap snapshot now.
      if (process.env.BENCH_IDLE_SIGNAL && name === 'ours') {
        process.kill(server.pid, process.env.BENCH_IDLE_SIGNAL as NodeJS.Signals);
        await sleep(Number(process.env.BENCH_IDLE_HOLD_MS ?? 20_000));
      }
      const perConnection = after.map((rss, i) => (rss - before[i]!) / open.opened);
      log(`    ${perConnection.map((b, i) => `${results.pidLabels![i]} ${(b / 1024).toFixed(2)} KB`).join(', ')} per connection; opened in ${(open.ms / 1000).toFixed(1)} s`);
      results.idle = { open, before, after, perConnection };
    });

    for (const n of wanted('fanout') ? SIZES.fanout : []) {
      await step(results, `fan-out to ${n}`, async () => {
        const project = `fan${n}`;
        const open = await loadgen.call<OpenResult>({ cmd: 'open', paths: Array(n).fill(stagePath(project, 'rewrite')) });
        checkOpen(open, `fan-out ${n}`);
        const routing: Routing = { kind: 'stage', project, stage: 'rewrite' };
        const fixedTrial = () =>
          loadgen.call<TrialResult>({ cmd: 'trial', routing, rate: SIZES.fixedRate, durationMs: SIZES.fixedMs, p99LimitMs: P99_LIMIT_MS, graceMs: SIZES.graceMs });
        let fixed = await fixedTrial();
        // A latency figure taken while other processes held a good part of a core is taken again; the quieter one counts.
        if (fixed.otherCpu > 0.25) {
          log(`    ${SIZES.fixedRate} msg/s: other processes used ${Math.round(fixed.otherCpu * 100)}% of a core: again`);
          await sleep(2000);
          const again = await fixedTrial();
          if (again.otherCpu < fixed.otherCpu) fixed = again;
        }
        log(`    ${SIZES.fixedRate} msg/s: p50 ${fixed.p50.toFixed(2)} ms p99 ${fixed.p99.toFixed(2)} ms ${fixed.pass ? 'ok' : fixed.why}`);
        if (process.env.BENCH_FIXED_ONLY === '1') return void (results.fanout[n] = { open, fixed, search: { best: undefined, trials: [] } });
        const search = await loadgen.call<SearchResult>({
          cmd: 'search', routing, startRate: 100_000 / n, durationMs: SIZES.trialMs, p99LimitMs: P99_LIMIT_MS, graceMs: SIZES.graceMs,
          maxTrials: SIZES.maxTrials, resolution: SIZES.resolution,
        });
        results.fanout[n] = { open, fixed, search };
      });
    }

    if (wanted('allstages')) await step(results, `all-stages endpoint, ${SIZES.allStages} subscribers`, async () => {
      const project = 'allstages';
      const open = await loadgen.call<OpenResult>({ cmd: 'open', paths: Array(SIZES.allStages).fill(`/api/v1/sse/projects/${project}/`) });
      checkOpen(open, 'all-stages');
      const search = await loadgen.call<SearchResult>({
        cmd: 'search', routing: { kind: 'stages', project, stages: STAGES }, startRate: 100_000 / SIZES.allStages, durationMs: SIZES.trialMs,
        p99LimitMs: P99_LIMIT_MS, graceMs: SIZES.graceMs, maxTrials: SIZES.maxTrials, resolution: SIZES.resolution,
      });
      results.allStages = { open, search };
    });

    if (wanted('projects')) await step(results, `${SIZES.projects} subscribers on ${SIZES.projects} projects`, async () => {
      const paths = Array.from({ length: SIZES.projects }, (_, i) => stagePath(`proj${i}`, 'rewrite'));
      const open = await loadgen.call<OpenResult>({ cmd: 'open', paths });
      checkOpen(open, 'projects');
      const search = await loadgen.call<SearchResult>({
        cmd: 'search', routing: { kind: 'projects', prefix: 'proj', count: SIZES.projects, stage: 'rewrite' }, startRate: 10_000,
        durationMs: SIZES.trialMs, p99LimitMs: P99_LIMIT_MS, graceMs: SIZES.graceMs, maxTrials: SIZES.maxTrials, resolution: SIZES.resolution,
      });
      results.projects = { open, search };
    });

    if (wanted('tokens')) await step(results, `one ${SIZES.tokens}-token generation`, async () => {
      results.tokens = await loadgen.call<TokensResult>({ cmd: 'tokens', project: 'tok1', stage: 'rewrite', path: stagePath('tok1', 'rewrite'), tokens: SIZES.tokens });
      log(`    ${results.tokens.wireBytes} bytes on the wire, client ${results.tokens.clientCpuMs.toFixed(0)} ms CPU`);
      if (name === 'ours') {
        const compact = await loadgen.call<TokensResult>({
          cmd: 'tokens', project: 'tok2', stage: 'rewrite', path: `${stagePath('tok2', 'rewrite')}?${COMPACT_QUERY}`, tokens: SIZES.tokens,
        });
        results.tokensCompact = compact;
        log(`    compact (?${COMPACT_QUERY}): ${compact.wireBytes} bytes, ${compact.withFullText * 2 < compact.events ? 'honoured' : 'NOT honoured (full_text still sent)'}`);
      }
    });

    if (name === 'ours' && wanted('render')) {
      const missing = renderMissing();
      if (missing) results.errors.push(`render: skipped, ${missing}`);
      else
        await step(results, `${SIZES.renderTokens}-token stream rendered in Chromium`, async () => {
          const pageServer = await startRenderPage(server.port, 'render', 'rewrite');
          try {
            // Chromium runs alone on the load generator's core; the publisher runs with the server and Redis.
            await loadgen.call({ cmd: 'renderStart', url: pageServer.url, chromium: CHROMIUM });
            const started = Date.now();
            const publish = pinned(SERVER_CPU, process.execPath, ['--import', 'tsx', 'bench/token-publisher.ts', redis!.url, 'render', 'rewrite', String(SIZES.renderTokens)]);
            const code = await new Promise<number | null>((resolve) => publish.once('exit', resolve));
            if (code !== 0) throw new Error(`the token publisher exited with ${code}`);
            const r = await loadgen.call<RenderResult>({ cmd: 'renderFinish', tokens: SIZES.renderTokens });
            r.ms = Date.now() - started;
            results.render = r;
            log(`    ${r.tokenEvents} token events in ${(r.ms / 1000).toFixed(1)} s; ${r.longTasks.length} tasks over 50 ms${r.longTasks.length ? ` (longest ${r.longTasks[0]!.toFixed(0)} ms)` : ''}; longest frame gap ${r.maxFrameGap.toFixed(0)} ms; text shown ${r.shown ? 'exactly' : 'WRONG'}`);
          } finally {
            await pageServer.close();
          }
        });
    }

    if (name === 'ours' && wanted('resume')) await step(results, `${SIZES.resumeClients} long non-compact resumes at once`, async () => {
      const admin = new Redis(redis!.url);
      try {
        const sent = async () => Number(/^total_net_output_bytes:(\d+)/m.exec(await admin.info('stats'))?.[1]);
        const redisBefore = await sent();
        resetPeakRss(server.pid);
        const rssBefore = rssBytes(server.pid);
        const r = await loadgen.call<ResumeResult>({
          cmd: 'resume', project: 'resume', stage: 'rewrite', path: stagePath('resume', 'rewrite'), tokens: SIZES.resumeTokens, pieceBytes: 20, clients: SIZES.resumeClients,
        });
        // What Redis sent includes the publishing (small) and the subscriber's copies (none: nobody watched live).
        results.resume = { ...r, redisBytes: (await sent()) - redisBefore, rssBefore, rssPeak: peakRssBytes(server.pid) };
        const mib = (v: number) => (v / 1024 / 1024).toFixed(0);
        log(`    ${r.completed}/${r.clients} got the whole answer (${r.resets} a reset, ${r.dropped} dropped), ${mib(r.bytes)} MiB to clients, ${mib(results.resume.redisBytes)} MiB from Redis, ${(r.ms / 1000).toFixed(1)} s; server RSS ${mib(rssBefore)} -> peak ${mib(results.resume.rssPeak)} MiB`);
      } finally {
        await admin.quit();
      }
    });

    // Issue 14: one 5,000-token answer on a fresh redis-server and a fresh server (whatever ran before on this target's).
    if (name === 'ours' && wanted('long-answer')) await step(results, `one ${LONG_TOKENS}-token answer: Redis memory, pub/sub, publish rate, browser bytes`, async () => {
      const startedAt = new Date().toISOString();
      const longRedis = await startRedis(REDIS_CPU);
      let longServer: Running | undefined;
      const admin = new Redis(longRedis.url);
      try {
        longServer = await startOurs(SERVER_CPU, longRedis.url);
        const project = 'long';
        const stage = 'rewrite';
        await loadgen.call<LongPublishResult>({ cmd: 'longPublish', redisUrl: longRedis.url, project: 'long-warmup', stage, tokens: LONG_WARMUP_TOKENS });
        const counter = new PubsubCounter(longRedis.url, `ai_story:project:${project}:stage:*`);
        await counter.start();
        const memoryBefore = await usedMemory(admin);
        const publish = await loadgen.call<LongPublishResult>({ cmd: 'longPublish', redisUrl: longRedis.url, project, stage, tokens: LONG_TOKENS, control: 'long-control' });
        let timer: NodeJS.Timeout | undefined;
        const heard = await Promise.race([counter.done.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 30_000)))]);
        clearTimeout(timer);
        await counter.close();
        if (!heard) throw new Error('the pub/sub subscriber did not hear the done within 30 s');
        const usedMemoryDelta = (await usedMemory(admin)) - memoryBefore;
        const memory = await projectMemory(admin, 'ai_story', project);
        const fields = counter.textFields();
        const view = await loadgen.call<LongViewResult>({ cmd: 'longView', redisUrl: longRedis.url, port: longServer.port, project: 'long-view', stage, tokens: LONG_TOKENS, compactQuery: COMPACT_QUERY });
        const format = fields.tokensWithFullText === fields.tokens ? 'full_text' : fields.tokensWithFullText === 0 ? 'linear' : 'mixed';
        const r: LongAnswerResult = {
          tokens: LONG_TOKENS,
          textBytes: publish.textBytes,
          format,
          commit: gitCommit(),
          started: startedAt,
          redis: { ...memory, usedMemoryDelta, logEntries: Number(await admin.xlen(`ai_story:project:{${project}}:log`)) },
          pubsub: { messages: counter.messages, bytes: counter.bytes, textFieldBytes: fields.textFieldBytes, tokensWithFullText: fields.tokensWithFullText },
          publish,
          view,
        };
        results.longAnswer = r;
        const file = writeLongAnswerReport(r);
        const x = (v: number) => `${v.toFixed(2)}×`;
        log(`    publisher format: ${format}; text ${r.textBytes} B; Redis ${r.redis.total} B (${x(r.redis.total / r.textBytes)}); pub/sub ${r.pubsub.bytes} B (${x(r.pubsub.bytes / r.textBytes)}); rate last 100 ${publish.last.median.toFixed(0)} tokens/s vs ${publish.control!.median.toFixed(0)} of a fresh answer alternately (${x(publish.last.median / publish.control!.median)}), vs its own first 100 ${publish.first.median.toFixed(0)} (${x(publish.last.median / publish.first.median)})`);
        log(`    browser: original ${view.original.bodyBytes} B (text ${view.original.textOk ? 'exact' : 'WRONG'}), compact ${view.compact.bodyBytes} B (${x(view.compact.bodyBytes / view.textBytes)}, text ${view.compact.textOk ? 'exact' : 'WRONG'}); ${file}`);
      } finally {
        await admin.quit().catch(() => admin.disconnect());
        await longServer?.stop();
        await longRedis.stop();
      }
    });

    // Issue 19: startup time and RSS of the server through tsx (before) and compiled (after), fresh processes on this redis-server.
    if (name === 'ours' && wanted('startup')) await step(results, 'startup: tsx against the compiled server', async () => {
      const r = await measureStartup(SERVER_CPU, redis!.url, quick ? 3 : 5);
      const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
      for (const [label, s] of [['tsx', r.tsx], ['compiled', r.compiled]] as const) log(`    ${label}: ready in ${s.readyMs.toFixed(0)} ms, RSS ${mb(s.rssReady)}, ${mb(s.rssIdle)} after 2 s`);
      log(`    ${writeStartupReport(r, gitCommit())}`);
    });

    // Issue 15: a fresh stream's snapshot of a 5,000-token answer, mid-stage and after the done, on a fresh redis-server and server.
    if (name === 'ours' && wanted('late-join')) await step(results, `late join of a ${LATE_TOKENS}-token answer: snapshot bytes and time`, async () => {
      const startedAt = new Date().toISOString();
      const lateRedis = await startRedis(REDIS_CPU);
      let lateServer: Running | undefined;
      try {
        lateServer = await startOurs(SERVER_CPU, lateRedis.url);
        const r0 = await loadgen.call<Omit<LateJoinResult, 'commit' | 'started'>>({
          cmd: 'lateJoin', redisUrl: lateRedis.url, port: lateServer.port, project: 'late', stage: 'rewrite', tokens: LATE_TOKENS, midAt: LATE_MID_AT, compactQuery: COMPACT_QUERY,
        });
        const r: LateJoinResult = { ...r0, commit: gitCommit(), started: startedAt };
        results.lateJoin = r;
        const file = writeLateJoinReport(r);
        const x = (v: number) => `${v.toFixed(2)}×`;
        for (const [label, m] of [['mid-stage', r.mid], ['after done', r.after]] as const) {
          const j = m.join;
          log(j.snapshot
            ? `    ${label}: snapshot ${j.snapshotBytes} B (${x(j.snapshotBytes / m.textBytes)} the text's ${m.textBytes} B, text ${j.textOk ? 'exact' : 'WRONG'}), ${j.wireBytes} wire bytes, ${j.ms.toFixed(2)} ms to its last byte; before: resume ${m.before.bodyBytes} B (${x(m.before.bodyBytes / m.textBytes)}) in ${m.before.ms.toFixed(1)} ms`
            : `    ${label}: NO snapshot event; before: resume ${m.before.bodyBytes} B in ${m.before.ms.toFixed(1)} ms`);
        }
        log(`    mid-stage joiner read on: text ${r.continued.textOk ? 'exact' : 'WRONG'}, first offset ${r.continued.firstOffset} vs ${r.continued.snapshotTextLength}; ${file}`);
      } finally {
        await lateServer?.stop();
        await lateRedis.stop();
      }
    });

    // Issue 17, item 3: a viewer reading 20 KB/s through a 5,000-token burst, on a fresh redis-server and server.
    if (name === 'ours' && wanted('pressure')) await step(results, `a viewer reading ${PRESSURE_READ_BYTES_PER_SECOND / 1024} KB/s through a token burst: connected, exact, bounded`, async () => {
      const pressureRedis = await startRedis(REDIS_CPU);
      let pressureServer: Running | undefined;
      try {
        pressureServer = await startOurs(SERVER_CPU, pressureRedis.url);
        const r = await runPressure({ redisUrl: pressureRedis.url, hubPid: pressureServer.pid, port: pressureServer.port, quick });
        const file = writePressureReport(r, gitCommit());
        log(`    connected ${r.connectedThroughout}, ${r.tokenEvents} token events for ${r.tokens}, control ${r.controlEvents}/${r.controlEventsPublished}, text ${r.textExact ? 'exact' : 'WRONG'}, read ${(r.readBytes / 1024).toFixed(0)} KB of ${(r.originalBytes / 1024 / 1024).toFixed(0)} MB, RSS ${(r.rssBeforeBytes / 1048576).toFixed(0)} -> ${(r.rssPeakBytes / 1048576).toFixed(0)} MB; ${file}`);
      } finally {
        await pressureServer?.stop();
        await pressureRedis.stop();
      }
    });

    // Issue 17, item 4: a 150 tokens/s answer, a message per token against batched, on a fresh redis-server and server.
    if (name === 'ours' && wanted('batching')) await step(results, `${BATCH_RATE} tokens/s, a message per token vs batched: Redis commands, hub CPU, bytes`, async () => {
      const batchRedis = await startRedis(REDIS_CPU);
      let batchServer: Running | undefined;
      try {
        batchServer = await startOurs(SERVER_CPU, batchRedis.url);
        const r = await runBatching({ redisUrl: batchRedis.url, redisPid: batchRedis.pid, hubPid: batchServer.pid, port: batchServer.port, quick });
        results.batching = r;
        const file = writeBatchingReport(r, gitCommit());
        for (const run of r.runs) {
          log(`    ${run.label}: ${run.commandsTotal} Redis commands, ${run.pubsubMessages} pub/sub messages, hub ${(run.hubCpuSeconds * 1000).toFixed(0)} ms CPU, redis ${(run.redisCpuSeconds * 1000).toFixed(0)} ms CPU, ${Math.round(run.wireBytesPerViewer)} wire bytes per viewer, ${Math.round(run.tokenEventsPerViewer)} token events, text ${run.allExact ? 'exact' : 'WRONG'}, delay p50 ${run.latencyMs.p50.toFixed(0)} ms`);
        }
        log(`    ${file}`);
      } finally {
        await batchServer?.stop();
        await batchRedis.stop();
      }
    });

    // Issue 20, item 4: every connection cut at once, every client resuming with its Last-Event-ID while the workers publish.
    if ((name === 'ours' || name === 'nchan') && wanted('storm')) await step(results, `reconnect storm: ${SIZES.stormClients} clients on ${SIZES.stormProjects} projects cut at once`, async () => {
      const storms = await runStorm({ target: name, call: (command) => loadgen.call(command), quick, serverCpu: SERVER_CPU, redisCpu: REDIS_CPU, nchanPort: target.port, log });
      [results.storm, results.stormSockets] = storms.length === 2 ? storms : [undefined, storms[0]];
      for (const r of storms) {
        const reads = r.reads ? `; log reads: ${r.reads.hub.replay?.sent ?? 0} first pages for ${r.resumed.cursors} cursors (${r.reads.hub.replay?.shared ?? 0} shared), ${r.reads.redis.xrange} XRANGE` : '';
        log(`    ${r.cut}: all live again ${r.resumed.ms.toFixed(0)} ms after the reconnect (${r.fromCutMs.toFixed(0)} ms after the cut); p99 ${r.finish.p99DuringMs.toFixed(1)} ms during it; ${r.finish.lost} lost, ${r.finish.repeated} repeated${reads}; loadgen ${Math.round(r.resumed.loadgenCpu * 100)}% CPU; target ${stormCheck(r).status}`);
      }
    });

    if (wanted('churn')) await step(results, 'connection churn', async () => {
      const path = stagePath('churn', 'rewrite');
      // One viewer stays, as on a busy stage: the churn measures opening and closing streams, not subscribing.
      checkOpen(await loadgen.call<OpenResult>({ cmd: 'open', paths: [path] }), 'churn holder');
      results.churn = await loadgen.call<ChurnResult>({ cmd: 'churn', path, concurrency: SIZES.churnConcurrency, durationMs: SIZES.churnMs });
      log(`    ${results.churn.perSec.toFixed(0)} opens+closes/s (${results.churn.failed} failed)`);
    });
  } finally {
    await server.stop();
    await redis?.stop();
  }
  return results;
}

function versions(): BenchRun['machine'] {
  const redis = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.match(/v=(\S+)/)?.[1] ?? '?';
  return {
    cpu: cpus()[0]?.model ?? '?',
    cores: cpus().length,
    node: process.version,
    redis,
    nginx: undefined,
  };
}

async function main(): Promise<void> {
  const started = new Date();
  const loadBefore = loadavg();
  log(`bench: ${quick ? 'QUICK' : 'full'} run; server on core ${SERVER_CPU}, redis on ${REDIS_CPU}, load generator on ${LOADGEN_CPU}; load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  const loadgen = new Loadgen();
  const targets: TargetResults[] = [];
  try {
    for (const name of TARGETS) {
      log(`\n== ${name}`);
      try {
        targets.push(await runTarget(name, loadgen));
      } catch (error) {
        log(`  ${name} could not run: ${(error as Error).message}`);
        targets.push({ name, errors: [], fanout: {}, skipped: `could not start: ${(error as Error).message}` });
      }
    }
  } finally {
    await loadgen.exit();
  }
  for (const target of targets) delete target.loadgen;
  const storms = targets.flatMap((t) => [t.storm, t.stormSockets].filter((r) => r !== undefined));
  if (storms.length > 0) log(`storm report: ${writeStormReport(storms, gitCommit(), quick)}`);
  const machine = versions();
  machine.nginx = targets.find((t) => t.name === 'nchan')?.version;
  const run: BenchRun = {
    started: started.toISOString(),
    seconds: (Date.now() - started.getTime()) / 1000,
    quick,
    placement: { server: SERVER_CPU, redis: REDIS_CPU, loadgen: LOADGEN_CPU },
    p99LimitMs: P99_LIMIT_MS,
    compactQuery: COMPACT_QUERY,
    sizes: SIZES,
    machine,
    nofile: NOFILE,
    // Only a run of every target and scenario, at the issue's sizes, on this checkout replaces latest.md.
    complete: !quick && !ONLY && TARGETS.join(',') === 'ours,nchan,naive' && !process.env.BENCH_OURS_DIR && !process.env.BENCH_FANOUT && !process.env.BENCH_FIXED_ONLY && !process.env.BENCH_FIXED_RATE,
    load: { before: loadBefore, otherCpu: meanOtherCpu(targets) },
    targets,
  };
  const { table, files } = writeReport(run);
  console.log(`\n${table}`);
  log(`\nreport: ${files.join(', ')}`);
}

await main();
