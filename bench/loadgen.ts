/**
 * The load generator: a separate process (pinned to its own core by bench/run.ts) that holds many real
 * SSE connections on raw sockets, publishes the bench messages itself (so publish and receive share one
 * clock), checks that every event arrives exactly once, and measures publish-to-receive latency.
 * Driven over IPC by bench/run.ts; see lib/protocol.ts.
 */
import { createParser } from 'eventsource-parser';
import type { Browser, Page } from 'playwright-core';
import { LatencyHistogram } from './lib/histogram.js';
import { tokenPieces } from './lib/tokens.js';
import { RATE_WINDOW, longAnswerPieces, type LongPublishResult, type LongStream, type LongViewResult, type RateWindow } from './lib/long-answer.js';
import { LATE_LOG_MAX_LEN, LATE_SAMPLES, LATE_TIMEOUT_MS, type LateJoinResult, type LateMoment, type ResumeJoin, type SnapshotJoin } from './lib/late-join.js';
import { CpuMeter } from './lib/proc.js';
import type { ChurnResult, Command, OpenResult, RenderResult, Reply, ResumeResult, Routing, SearchResult, Target, TokensResult, TrialResult } from './lib/protocol.js';
import { NchanBenchPublisher, RawRedisBenchPublisher, RedisBenchPublisher, type BenchPublisher } from './lib/publishers.js';
import { SseConnection, now, type Tally } from './lib/sse-connection.js';
import { stormFinish, stormOpen, stormResume } from './lib/storm-clients.js';
import { RedisBroker } from '../server/src/broker/redis-broker.js';
import { StreamPublisher } from '../server/src/publisher.js';

/** Source addresses 127.0.0.2 .. 127.0.0.(1 + SOURCE_ADDRESSES): 28k ephemeral ports each. */
const SOURCE_ADDRESSES = 60;
/** Pads every measured message to about 200 bytes of JSON, like the issue's events. */
const PAD = 'x'.repeat(64);
/** Publishes that may wait for the broker's answer before a trial counts as publisher-bound. */
const MAX_IN_FLIGHT = 20_000;
/** A failed trial during which other processes used more than this share of a core is repeated. */
const OTHER_CPU_RETRY = 0.25;

const tally: Tally = { events: 0, reads: 0, dupes: 0, gaps: 0, late: 0, bytes: 0, histogram: new LatencyHistogram() };
let target: Target | undefined;
let publisher: BenchPublisher | undefined;
let connections: SseConnection[] = [];
let paths: string[] = [];
let sourceIndex = 0;
/** Messages published since the connections were opened: message k of the run. */
let published = 0;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function nextSource(): string {
  return `127.0.0.${2 + (sourceIndex++ % SOURCE_ADDRESSES)}`;
}

function openOne(path: string, capture = false): SseConnection {
  const t = target!;
  return new SseConnection({ port: t.port, path, localAddress: nextSource(), readyOn: t.readyOn }, tally, capture);
}

async function open(list: string[], concurrency = 256): Promise<OpenResult> {
  const started = now();
  let failed = 0;
  let firstError: string | undefined;
  let index = 0;
  const opened: SseConnection[] = new Array(list.length);
  async function worker() {
    while (index < list.length) {
      const i = index++;
      // One retry: under a burst of opens a listen queue may overflow.
      for (let attempt = 0; attempt < 2; attempt++) {
        const connection = openOne(list[i]!);
        opened[i] = connection;
        try {
          await connection.whenReady(30_000);
          break;
        } catch (error) {
          connection.close();
          if (attempt === 1) {
            failed++;
            firstError ??= (error as Error).message;
          }
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, worker));
  connections.push(...opened);
  paths.push(...list);
  return { opened: list.length - failed, failed, ms: now() - started, firstError };
}

async function closeAll(): Promise<void> {
  const closing = connections.map((c) => c.whenClosed());
  for (const c of connections) c.close();
  await Promise.race([Promise.all(closing), sleep(5000)]);
  connections = [];
  paths = [];
  published = 0;
}

function route(routing: Routing, k: number): [project: string, stage: string, seq: number] {
  switch (routing.kind) {
    case 'stage':
      return [routing.project, routing.stage, k];
    case 'stages':
      return [routing.project, routing.stages[k % routing.stages.length]!, k];
    case 'projects':
      return [`${routing.prefix}${k % routing.count}`, routing.stage, Math.floor(k / routing.count)];
  }
}

/** Messages each subscriber receives of `messages` published from message `from` on. */
function perSubscriber(routing: Routing, from: number, messages: number): [seqFrom: number, seqTo: number] {
  if (routing.kind === 'projects') return [from / routing.count, (from + messages) / routing.count];
  return [from, from + messages];
}

/** Reopens connections the target closed (e.g. dropped as slow consumers) so the next trial has them all. */
async function reopenClosed(): Promise<void> {
  const dead: number[] = [];
  connections.forEach((c, i) => c.closed && dead.push(i));
  if (dead.length === 0) return;
  const list = dead.map((i) => paths[i]!);
  const before = connections.length;
  await open(list);
  const fresh = connections.splice(before);
  paths.splice(before);
  dead.forEach((i, j) => (connections[i] = fresh[j]!));
}

async function trial(routing: Routing, rate: number, durationMs: number, p99LimitMs: number, graceMs: number): Promise<TrialResult> {
  await reopenClosed();
  const live = connections.filter((c) => c.ready && !c.closed);
  let messages = Math.max(1, Math.round((rate * durationMs) / 1000));
  if (routing.kind === 'projects') messages = Math.ceil(messages / routing.count) * routing.count;
  const [seqFrom, seqTo] = perSubscriber(routing, published, messages);
  for (const c of live) {
    c.next = seqFrom;
    c.floor = seqFrom;
  }
  const expected = live.length * (seqTo - seqFrom);
  tally.events = tally.dupes = tally.gaps = tally.late = tally.reads = 0;
  tally.histogram.reset();

  const pub = publisher!;
  const cpu = process.cpuUsage();
  const meter = new CpuMeter(target!.pids);
  const started = now();
  const base = published;
  let sent = 0;
  let publisherBound = false;
  // Open loop: every tick sends what the schedule says is due, so a slow target cannot slow the publisher.
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(messages, Math.floor(((now() - started) * rate) / 1000) + 1);
      if (pub.inFlight > MAX_IN_FLIGHT) publisherBound = true;
      else {
        for (; sent < due; sent++) {
          const [project, stage, seq] = route(routing, base + sent);
          pub.send(project, stage, 'progress', { seq, t: Math.round(now() * 1000) / 1000, item_name: PAD });
        }
      }
      if (sent >= messages) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  published += messages;
  const publishEnd = now();
  const publishMs = publishEnd - started;
  await pub.drain(graceMs + 10_000);
  // Wait for delivery: in time within the grace period, then a little longer to tell late from lost.
  while (tally.events + tally.dupes < expected && now() - publishEnd < graceMs) await sleep(2);
  const inTime = tally.events >= expected;
  const inTimeEnd = now();
  const cpuUsed = process.cpuUsage(cpu);
  const targetCpu = meter.read();
  const loadgenCpu = (cpuUsed.user + cpuUsed.system) / 1000 / (inTimeEnd - started);
  const otherCpu = Math.max(0, meter.machine() - loadgenCpu - targetCpu.reduce((a, b) => a + b, 0));
  if (process.env.BENCH_DEBUG) process.stderr.write(`    loadgen user ${(cpuUsed.user / 1000).toFixed(0)} ms, system ${(cpuUsed.system / 1000).toFixed(0)} ms, reads ${tally.reads}, events ${tally.events}\n`);
  const waitEnd = now() + 3000;
  while (tally.events < expected && now() < waitEnd) await sleep(5);

  let missing = 0;
  for (const c of live) if (c.next < seqTo) missing += seqTo - c.next;
  const p99 = tally.histogram.quantile(0.99);
  const why: string[] = [];
  if (!inTime) why.push(`${expected - Math.min(expected, tally.events)} of ${expected} not delivered within ${graceMs} ms after the last publish`);
  if (missing > 0) why.push(`${missing} missing`);
  if (tally.dupes > 0) why.push(`${tally.dupes} duplicates`);
  if (p99 > p99LimitMs) why.push(`p99 ${p99.toFixed(1)} ms > ${p99LimitMs} ms`);
  if (publisherBound || pub.errors > 0) why.push(`publisher fell behind (${pub.errors} errors)`);
  return {
    rate,
    durationMs: publishMs,
    messages,
    expected,
    received: tally.events,
    eventsPerSec: (Math.min(expected, tally.events) / Math.max(publishMs, durationMs)) * 1000,
    missing,
    dupes: tally.dupes,
    gaps: tally.gaps,
    late: tally.late,
    p50: tally.histogram.quantile(0.5),
    p99,
    max: tally.histogram.max,
    pass: why.length === 0,
    why: why.join('; '),
    loadgenCpu,
    targetCpu,
    otherCpu,
    reads: tally.reads,
    connections: live.length,
  };
}

/** The highest rate that passes: doubles until a trial fails, then bisects (geometric mean). */
async function search(command: Extract<Command, { cmd: 'search' }>): Promise<SearchResult> {
  const trials: TrialResult[] = [];
  let best: TrialResult | undefined;
  let low = 0;
  let high = Infinity;
  let rate = command.startRate;
  const minimum = command.startRate / 64;
  let retries = 0;
  while (trials.length < command.maxTrials) {
    let result = await trial(command.routing, rate, command.durationMs, command.p99LimitMs, command.graceMs);
    // This machine is shared: a failure while other processes took a good part of a core is tried again.
    if (!result.pass && result.otherCpu > OTHER_CPU_RETRY && retries < 3) {
      retries++;
      process.stderr.write(`    ${target!.name}: ${rate.toFixed(1)} msg/s failed while other processes used ${Math.round(result.otherCpu * 100)}% of a core: again\n`);
      trials.push(result);
      await sleep(1500);
      await waitForQuiet();
      result = await trial(command.routing, rate, command.durationMs, command.p99LimitMs, command.graceMs);
    }
    trials.push(result);
    process.stderr.write(
      `    ${target!.name}: ${result.rate.toFixed(1)} msg/s -> ${Math.round(result.eventsPerSec)} ev/s p99 ${result.p99.toFixed(1)} ms ${result.pass ? 'ok' : `FAIL (${result.why})`}\n`,
    );
    if (result.pass) {
      low = rate;
      if (!best || result.eventsPerSec > best.eventsPerSec) best = result;
    } else {
      high = rate;
      // Let the backlog of a failed trial drain before the next one.
      await sleep(1500);
    }
    if (high === Infinity) rate = rate * 2;
    else if (low === 0) rate = rate / 2;
    else rate = Math.sqrt(low * high);
    if ((low > 0 && high / low <= command.resolution) || rate < minimum) break;
  }
  return { best, trials };
}

/** Waits (up to 15 s) until other work on the machine uses less than a fifth of a core. */
async function waitForQuiet(): Promise<void> {
  const deadline = now() + 15_000;
  while (now() < deadline) {
    const cpu = process.cpuUsage();
    const meter = new CpuMeter(target!.pids);
    await sleep(500);
    const used = process.cpuUsage(cpu);
    const other = meter.machine() - (used.user + used.system) / 500_000 - meter.read().reduce((a, b) => a + b, 0);
    if (other < 0.2) return;
  }
}

async function churn(path: string, concurrency: number, durationMs: number): Promise<ChurnResult> {
  let cycles = 0;
  let failed = 0;
  let firstError: string | undefined;
  const cpu = process.cpuUsage();
  const meter = new CpuMeter(target!.pids);
  const started = now();
  const deadline = started + durationMs;
  async function worker() {
    while (now() < deadline) {
      const connection = openOne(path);
      try {
        await connection.whenReady(10_000);
        cycles++;
      } catch (error) {
        failed++;
        firstError ??= (error as Error).message;
      }
      const closed = connection.whenClosed();
      connection.close();
      await closed;
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = now() - started;
  const used = process.cpuUsage(cpu);
  const targetCpu = meter.read();
  const loadgenCpu = (used.user + used.system) / 1000 / elapsed;
  return {
    cycles,
    failed,
    perSec: (cycles / elapsed) * 1000,
    loadgenCpu,
    targetCpu,
    otherCpu: Math.max(0, meter.machine() - loadgenCpu - targetCpu.reduce((a, b) => a + b, 0)),
    firstError,
  };
}

async function tokens(project: string, stage: string, path: string, count: number): Promise<TokensResult> {
  const connection = openOne(path, true);
  await connection.whenReady(10_000);
  const done = new Promise<void>((resolve) => {
    const needle = Buffer.from('"type":"done"');
    let carry: Buffer = Buffer.alloc(0);
    connection.onBody = (slice) => {
      const data = Buffer.concat([carry, slice]);
      if (data.indexOf(needle) >= 0) resolve();
      carry = data.subarray(Math.max(0, data.length - needle.length));
    };
  });
  const pieces = tokenPieces(count);
  const pub = publisher!;
  const started = now();
  let text = '';
  let fullTextBytes = 0;
  for (const piece of pieces) {
    text += piece;
    fullTextBytes += Buffer.byteLength(text);
    while (pub.inFlight >= 64) await sleep(1);
    pub.send(project, stage, 'token', { content: piece, full_text: text });
  }
  fullTextBytes += Buffer.byteLength(text);
  pub.send(project, stage, 'done', { full_text: text, metadata: { tokens_used: count } });
  await Promise.race([done, sleep(60_000)]);
  const ms = now() - started;
  connection.close();

  // The client's cost, measured apart from the network: the captured bytes through what a browser client does.
  const raw = Buffer.concat(connection.captured ?? []);
  let best = Infinity;
  let replay: ReturnType<typeof replayAsClient> | undefined;
  for (let i = 0; i < 3; i++) {
    const cpu = process.cpuUsage();
    replay = replayAsClient(raw);
    const used = process.cpuUsage(cpu);
    best = Math.min(best, (used.user + used.system) / 1000);
  }
  return {
    tokens: count,
    textBytes: Buffer.byteLength(text),
    wireBytes: raw.length,
    fullTextBytes,
    events: replay!.events,
    withFullText: replay!.withFullText,
    clientCpuMs: best,
    textOk: replay!.text === text,
    ms,
  };
}

/**
 * Publishes an answer of `count` tokens of `pieceBytes` each (every token with its full_text, then `done`), then
 * `clients` plain GETs with `Last-Event-ID` of its second token (with the `done`, the first one is just past a
 * 1,000-entry log), as browsers' EventSources reconnecting at once, each reading at full speed until the `done`
 * at the end of the log. A client sent a `reset` instead (its `stages` hold a `done` too) does not count as served.
 */
async function resume(command: Extract<Command, { cmd: 'resume' }>): Promise<ResumeResult> {
  const t = target!;
  if (t.publish.via !== 'redis') throw new Error('the resume scenario needs a Redis target');
  // Its own broker, awaited per token: the resume needs the ids, which the fire-and-forget publisher does not keep.
  const broker = new RedisBroker({ url: t.publish.url, commandTimeoutMs: 30_000 });
  let first = '';
  try {
    await using publisher = new StreamPublisher({ projectId: command.project, stage: command.stage, broker });
    let text = '';
    for (let i = 0; i < command.tokens; i++) {
      const piece = `w${i} `.padEnd(command.pieceBytes, 'x');
      text += piece;
      const id = await publisher.publishToken(piece, text);
      if (i === 1) first = id;
    }
    await publisher.publishDone(text, { tokens_used: command.tokens });
  } finally {
    await broker.close();
  }
  const done = Buffer.from('\nevent: done\n');
  const reset = Buffer.from('\nevent: reset\n');
  const started = now();
  const clients = Array.from({ length: command.clients }, () => {
    const connection = new SseConnection({ port: t.port, path: command.path, localAddress: nextSource(), readyOn: t.readyOn, headers: { 'Last-Event-ID': first } }, tally);
    connections.push(connection);
    const outcome = new Promise<'done' | 'reset' | 'dropped'>((resolve) => {
      let carry: Buffer = Buffer.alloc(0);
      connection.onBody = (slice) => {
        const data = Buffer.concat([carry, slice]);
        if (data.indexOf(reset) >= 0) resolve('reset');
        else if (data.indexOf(done) >= 0) resolve('done');
        carry = data.subarray(Math.max(0, data.length - reset.length));
      };
      void connection.whenClosed().then(() => resolve('dropped'));
    });
    return { connection, outcome };
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'dropped'[]>((resolve) => (timer = setTimeout(() => resolve(clients.map(() => 'dropped' as const)), 120_000)));
  const outcomes = await Promise.race([Promise.all(clients.map((c) => c.outcome)), timedOut]);
  clearTimeout(timer);
  const ms = now() - started;
  const count = (which: string) => outcomes.filter((outcome) => outcome === which).length;
  return {
    clients: command.clients,
    tokens: command.tokens,
    completed: count('done'),
    resets: count('reset'),
    dropped: count('dropped'),
    bytes: clients.reduce((total, c) => total + c.connection.bytes, 0),
    ms,
  };
}

/** The rate over tokens [from, to) of per-token times in ms. */
function rateWindow(times: Float64Array, from: number, to: number): RateWindow {
  const slice = Array.from(times.subarray(from, to)).sort((a, b) => a - b);
  const mid = slice.length >> 1;
  const median = slice.length % 2 ? slice[mid]! : (slice[mid - 1]! + slice[mid]!) / 2;
  const total = slice.reduce((a, b) => a + b, 0);
  return { from, to, median: 1000 / median, mean: (slice.length * 1000) / total };
}

/**
 * One answer of the long-answer scenario through the kit's StreamPublisher, each token awaited (so its time is
 * the publisher's round trip through publish.lua), then its `done`. Returns the per-token times' rates.
 */
async function publishLongAnswer(
  redisUrl: string, project: string, stage: string, count: number, control?: string,
): Promise<{ textBytes: number; ms: number; times: Float64Array; controlTimes: Float64Array }> {
  const broker = new RedisBroker({ url: redisUrl, commandTimeoutMs: 30_000 });
  const pieces = longAnswerPieces(count);
  const times = new Float64Array(count);
  const window = Math.min(RATE_WINDOW, count);
  const controlTimes = new Float64Array(control ? window : 0);
  let text = '';
  let controlText = '';
  const started = now();
  try {
    await using publisher = new StreamPublisher({ projectId: project, stage, broker });
    await using second = control ? new StreamPublisher({ projectId: control, stage, broker }) : undefined;
    for (let i = 0; i < count; i++) {
      // The control: over the answer's last tokens, a fresh answer's first ones, one before each, at the same time.
      const j = i - (count - window);
      if (second && j >= 0) {
        controlText += pieces[j]!;
        const t0 = now();
        await second.publishToken(pieces[j]!, controlText);
        controlTimes[j] = now() - t0;
      }
      text += pieces[i]!;
      const t0 = now();
      await publisher.publishToken(pieces[i]!, text);
      times[i] = now() - t0;
    }
    await publisher.publishDone(text, { tokens_used: count });
  } finally {
    await broker.close();
  }
  return { textBytes: Buffer.byteLength(text), ms: now() - started, times, controlTimes };
}

function rates(times: Float64Array) {
  const n = times.length;
  const w = Math.min(RATE_WINDOW, n);
  const w500 = Math.min(500, n);
  return { first: rateWindow(times, 0, w), last: rateWindow(times, n - w, n), first500: rateWindow(times, 0, w500), last500: rateWindow(times, n - w500, n) };
}

async function longPublish(command: Extract<Command, { cmd: 'longPublish' }>): Promise<LongPublishResult> {
  const { textBytes, ms, times, controlTimes } = await publishLongAnswer(command.redisUrl, command.project, command.stage, command.tokens, command.control);
  return { tokens: command.tokens, textBytes, ms, ...rates(times), control: controlTimes.length ? rateWindow(controlTimes, 0, controlTimes.length) : undefined };
}

/** The same answer read by two browser-like streams of our server, one plain and one compact. */
async function longView(command: Extract<Command, { cmd: 'longView' }>): Promise<LongViewResult> {
  const path = `/api/v1/sse/projects/${command.project}/stages/${command.stage}/`;
  const needle = Buffer.from('"type":"done"');
  const streams = [path, `${path}?${command.compactQuery}`].map((p) => {
    const connection = new SseConnection({ port: command.port, path: p, localAddress: nextSource(), readyOn: 'connected-event' }, tally, true);
    const state = { connection, body: 0, counting: false, done: undefined as unknown as Promise<void> };
    state.done = new Promise<void>((resolve) => {
      let carry: Buffer = Buffer.alloc(0);
      connection.onBody = (slice) => {
        if (state.counting) state.body += slice.length;
        const data = Buffer.concat([carry, slice]);
        if (data.indexOf(needle) >= 0) resolve();
        carry = data.subarray(Math.max(0, data.length - needle.length));
      };
    });
    return state;
  });
  try {
    await Promise.all(streams.map((s) => s.connection.whenReady(10_000)));
    for (const s of streams) s.counting = true;
    const started = now();
    const published = await publishLongAnswer(command.redisUrl, command.project, command.stage, command.tokens);
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      Promise.all(streams.map((s) => s.done)).then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 120_000))),
    ]);
    clearTimeout(timer);
    if (!finished) throw new Error('a browser stream did not receive the done within 120 s');
    const ms = now() - started;
    const text = longAnswerPieces(command.tokens).join('');
    let fullTextBytes = Buffer.byteLength(text);
    for (let i = 0, sofar = 0, pieces = longAnswerPieces(command.tokens); i < pieces.length; i++) fullTextBytes += (sofar += Buffer.byteLength(pieces[i]!));
    const read = (s: (typeof streams)[number]): LongStream => {
      const raw = Buffer.concat(s.connection.captured ?? []);
      const replay = replayAsClient(raw);
      return { bodyBytes: s.body, wireBytes: raw.length, events: replay.events, withFullText: replay.withFullText, textOk: replay.text === text };
    };
    return { tokens: command.tokens, textBytes: published.textBytes, fullTextBytes, original: read(streams[0]!), compact: read(streams[1]!), ms, ...rates(published.times) };
  } finally {
    for (const s of streams) s.connection.close();
  }
}

/** One raw stream whose de-chunked body is kept, with the time of the request and of each read. */
function watchStream(port: number, path: string, headers?: Record<string, string>) {
  const t0 = now();
  const connection = new SseConnection({ port, path, localAddress: nextSource(), readyOn: 'connected-event', headers }, tally);
  // One growing buffer (doubled when full), so a long body costs the load generator linear time, not a concat per read.
  let buffer = Buffer.allocUnsafe(64 * 1024);
  let length = 0;
  let waiter: (() => void) | undefined;
  connection.onBody = (slice) => {
    if (length + slice.length > buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(buffer.length * 2, length + slice.length));
      buffer.copy(grown, 0, 0, length);
      buffer = grown;
    }
    slice.copy(buffer, length);
    length += slice.length;
    waiter?.();
  };
  const read = () => buffer.subarray(0, length);
  /** Waits until `test` (on the body so far) answers a value; undefined after timeoutMs. */
  const until = <T>(test: (body: Buffer) => T | undefined, timeoutMs: number): Promise<{ value: T; ms: number; wire: number } | undefined> =>
    new Promise((resolve) => {
      const check = () => {
        const value = test(read());
        if (value === undefined) return false;
        waiter = undefined;
        clearTimeout(timer);
        resolve({ value, ms: now() - t0, wire: connection.bytes });
        return true;
      };
      const timer = setTimeout(() => {
        waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
      waiter = () => void check();
      check();
    });
  return { connection, t0, read, until };
}

/** The SSE frames of a body: [start, end) of each complete one (end past its blank line). */
function frames(body: Buffer): { start: number; end: number; text: string }[] {
  const out: { start: number; end: number; text: string }[] = [];
  let start = 0;
  for (;;) {
    const blank = body.indexOf('\n\n', start);
    if (blank < 0) return out;
    out.push({ start, end: blank + 2, text: body.toString('utf8', start, blank) });
    start = blank + 2;
  }
}

function frameField(text: string, field: string): string | undefined {
  const lines = text.split('\n').filter((l) => l.startsWith(`${field}:`)).map((l) => l.slice(field.length + 1).replace(/^ /, ''));
  return lines.length ? lines.join('\n') : undefined;
}

const findFrame = (event: string) => (body: Buffer) => frames(body).find((f) => frameField(f.text, 'event') === event);

/** Opens fresh streams (no Last-Event-ID) and measures each up to the end of its `snapshot` event. */
async function joinSnapshot(port: number, path: string, compactQuery: string, text: string, lastId: string, stage: string, keep: (s: ReturnType<typeof watchStream>) => void): Promise<SnapshotJoin> {
  const samples: number[] = [];
  const connected: number[] = [];
  let first: SnapshotJoin | undefined;
  for (let i = 0; i < LATE_SAMPLES; i++) {
    const s = watchStream(port, `${path}?${compactQuery}`);
    const conn = await s.until(findFrame('connected'), LATE_TIMEOUT_MS);
    const snap = await s.until(findFrame('snapshot'), conn ? LATE_TIMEOUT_MS : 1);
    if (conn) connected.push(conn.ms);
    if (!snap) {
      s.connection.close();
      const body = s.read();
      return { snapshot: false, ms: NaN, samplesMs: [], connectedMs: median(connected), snapshotBytes: 0, dataBytes: 0, bodyBytes: body.length, wireBytes: s.connection.bytes, snapshotTextBytes: 0, textOk: false, keys: [], idOk: false };
    }
    samples.push(snap.ms);
    if (!first) {
      const f = snap.value;
      const data = frameField(f.text, 'data') ?? '';
      let state: Record<string, unknown> = {};
      try {
        state = ((JSON.parse(data) as { stages?: Record<string, Record<string, unknown>> }).stages ?? {})[stage] ?? {};
      } catch {}
      const shown = typeof state.text === 'string' ? state.text : typeof (state.done as { full_text?: unknown } | undefined)?.full_text === 'string' ? (state.done as { full_text: string }).full_text : '';
      first = {
        snapshot: true, ms: 0, samplesMs: [], connectedMs: 0,
        snapshotBytes: f.end - f.start, dataBytes: Buffer.byteLength(data), bodyBytes: f.end, wireBytes: snap.wire,
        snapshotTextBytes: Buffer.byteLength(shown), textOk: shown === text, keys: Object.keys(state), idOk: frameField(f.text, 'id') === lastId,
      };
      keep(s);
    } else s.connection.close();
  }
  // The same from a plain stream (no compact): bytes only.
  const plain = watchStream(port, path);
  const snap = await plain.until(findFrame('snapshot'), LATE_TIMEOUT_MS);
  plain.connection.close();
  return { ...first!, ms: median(samples), samplesMs: samples, connectedMs: median(connected), plainSnapshotBytes: snap ? snap.value.end - snap.value.start : undefined };
}

function median(values: number[]): number {
  if (!values.length) return NaN;
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** What a late joiner needed before: a resume from the first token, read until the last published message or a reset. */
async function resumeFromFirst(port: number, path: string, compactQuery: string, firstId: string, lastId: string): Promise<ResumeJoin> {
  const s = watchStream(port, `${path}?${compactQuery}`, { 'Last-Event-ID': firstId });
  const needle = Buffer.from(`id: ${lastId}\n`);
  const resetNeedle = Buffer.from('event: reset\n');
  // Each read is scanned from where the last one ended (less a needle's length), not from the start.
  let from = 0;
  let found = -1;
  let reset = false;
  const got = await s.until((body) => {
    if (found < 0) {
      const at = body.indexOf(needle, from);
      const resetAt = at < 0 ? body.indexOf(resetNeedle, from) : -1;
      if (at >= 0 || resetAt >= 0) {
        found = at >= 0 ? at : resetAt;
        reset = at < 0;
      } else from = Math.max(0, body.length - needle.length);
    }
    if (found < 0) return undefined;
    const end = body.indexOf('\n\n', found);
    return end < 0 ? undefined : { reset, end: end + 2 };
  }, 30_000);
  s.connection.close();
  if (!got) throw new Error(`a resume from the first token did not reach ${lastId} within 30 s`);
  const events = frames(s.read().subarray(0, got.value.end)).filter((f) => frameField(f.text, 'id') !== undefined).length;
  return { ms: got.ms, bodyBytes: got.value.end, wireBytes: got.wire, events, reset: got.value.reset };
}

/** With `?snapshot=0`: what the body holds 300 ms after `connected`. */
async function snapshotOff(port: number, path: string): Promise<LateMoment['off']> {
  const s = watchStream(port, `${path}?snapshot=0`);
  await s.until(findFrame('connected'), LATE_TIMEOUT_MS);
  await sleep(300);
  s.connection.close();
  return { snapshot: findFrame('snapshot')(s.read()) !== undefined, bodyBytes: s.read().length };
}

/** The late-join scenario (issue 15): a fresh stream mid-stage and after the done, against a resume from the start. */
async function lateJoin(command: Extract<Command, { cmd: 'lateJoin' }>): Promise<Omit<LateJoinResult, 'commit' | 'started'>> {
  const { port, project, stage, tokens, midAt, compactQuery } = command;
  const path = `/api/v1/sse/projects/${project}/stages/${stage}/`;
  const broker = new RedisBroker({ url: command.redisUrl, commandTimeoutMs: 30_000, logMaxLen: LATE_LOG_MAX_LEN });
  const pieces = longAnswerPieces(tokens);
  const ids: string[] = [];
  let text = '';
  let joiner: ReturnType<typeof watchStream> | undefined;
  const started = now();
  try {
    await using publisher = new StreamPublisher({ projectId: project, stage, broker });
    const publishUpTo = async (n: number) => {
      for (let i = ids.length; i < n; i++) {
        text += pieces[i]!;
        ids.push(await publisher.publishToken(pieces[i]!, text));
      }
    };
    const moment = async (keep: (s: ReturnType<typeof watchStream>) => void): Promise<LateMoment> => {
      const lastId = ids.at(-1)!;
      const join = await joinSnapshot(port, path, compactQuery, text, lastId, stage, keep);
      const before = await resumeFromFirst(port, path, compactQuery, ids[0]!, lastId);
      const off = await snapshotOff(port, path);
      return { tokens: ids.length - (ids.length > tokens ? 1 : 0), textBytes: Buffer.byteLength(text), join, before, off };
    };
    await publishUpTo(midAt);
    const midText = text;
    const mid = await moment((s) => (joiner = s));
    await publishUpTo(tokens);
    ids.push(await publisher.publishDone(text, { tokens_used: tokens }));
    // The mid-stage joiner read on: rebuild the text from its snapshot and the compact pieces after it.
    const doneFrame = joiner ? await joiner.until(findFrame('done'), 30_000) : undefined;
    const continued: LateJoinResult['continued'] = { textOk: false, firstOffset: null, snapshotTextLength: midText.length, tokens: 0, done: doneFrame !== undefined, duplicates: 0 };
    if (joiner && mid.join.snapshot) {
      const all = frames(joiner.read());
      const at = all.findIndex((f) => frameField(f.text, 'event') === 'snapshot');
      const snapshotId = frameField(all[at]!.text, 'id');
      let rebuilt = midText;
      for (const f of all.slice(at + 1)) {
        const id = frameField(f.text, 'id');
        if (id !== undefined && snapshotId !== undefined && broker.compareIds(id, snapshotId) <= 0) continued.duplicates++;
        if (frameField(f.text, 'event') !== 'token') continue;
        const message = JSON.parse(frameField(f.text, 'data')!) as { content: string; offset?: number; full_text?: string };
        continued.tokens++;
        continued.firstOffset ??= message.offset ?? null;
        if (typeof message.full_text === 'string') rebuilt = message.full_text;
        else rebuilt = rebuilt.slice(0, message.offset ?? rebuilt.length) + message.content;
      }
      const done = all.find((f) => frameField(f.text, 'event') === 'done');
      const doneText = done ? (JSON.parse(frameField(done.text, 'data')!) as { full_text?: string }).full_text : undefined;
      continued.textOk = rebuilt === text && doneText === text;
    }
    joiner?.connection.close();
    const after = await moment((s) => s.connection.close());
    after.tokens = tokens;
    return { tokens, textBytes: Buffer.byteLength(text), mid, after, continued, ms: now() - started };
  } finally {
    joiner?.connection.close();
    await broker.close();
  }
}

/** De-chunks, parses with eventsource-parser, JSON.parses each event and rebuilds the text (compact or not). */
function replayAsClient(raw: Buffer): { events: number; withFullText: number; text: string } {
  const headEnd = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, headEnd).toString('latin1');
  let body = raw.subarray(headEnd + 4);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
    const parts: Buffer[] = [];
    let i = 0;
    while (i < body.length) {
      const lf = body.indexOf(10, i);
      if (lf < 0) break;
      const size = parseInt(body.toString('latin1', i, lf), 16);
      if (!(size > 0)) break;
      parts.push(body.subarray(lf + 1, lf + 1 + size));
      i = lf + 1 + size + 2;
    }
    body = Buffer.concat(parts);
  }
  let events = 0;
  let withFullText = 0;
  let text = '';
  const parser = createParser({
    onEvent(event) {
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(event.data) as Record<string, unknown>;
      } catch {
        return;
      }
      if (message.type === 'token') {
        events++;
        if (typeof message.full_text === 'string') {
          withFullText++;
          text = message.full_text;
        } else if (typeof message.content === 'string') text += message.content;
      } else if (message.type === 'done') {
        events++;
        if (typeof message.full_text === 'string') text = message.full_text;
      }
    },
  });
  const decoder = new TextDecoder();
  // Feed in network-sized pieces, as a browser would.
  for (let i = 0; i < body.length; i += 16_384) parser.feed(decoder.decode(body.subarray(i, i + 16_384), { stream: true }));
  parser.feed(decoder.decode());
  return { events, withFullText, text };
}

/** The render scenario's browser: launched from this process, so Chromium runs on the load generator's core. */
let browser: Browser | undefined;
let page: Page | undefined;

/** Opens the page with its viewer and waits until the viewer is connected. */
async function renderStart(command: Extract<Command, { cmd: 'renderStart' }>): Promise<void> {
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: command.chromium, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  page = await browser.newPage();
  await page.goto(command.url);
  await page.waitForFunction(() => (window as unknown as { __bench: { connected: boolean } }).__bench?.connected, undefined, { timeout: 30_000 });
  await page.evaluate(() => (window as unknown as { __bench: { reset(): void } }).__bench.reset());
}

/** Waits for the viewer to show the final text (published by bench/token-publisher.ts meanwhile), and closes the browser. */
async function renderFinish(command: Extract<Command, { cmd: 'renderFinish' }>): Promise<RenderResult> {
  try {
    await page!.waitForFunction(() => (window as unknown as { __bench: { done: unknown } }).__bench.done, undefined, { timeout: 300_000, polling: 100 });
    const bench = await page!.evaluate(() => {
      const b = (window as unknown as { __bench: { longTasks: number[]; maxFrameGap: number; tokens: number; done: { length: number; shown: boolean; at: number } } }).__bench;
      return { longTasks: b.longTasks, maxFrameGap: b.maxFrameGap, tokens: b.tokens, done: b.done };
    });
    const text = tokenPieces(command.tokens).join('');
    return {
      tokens: command.tokens,
      tokenEvents: bench.tokens,
      longTasks: bench.longTasks.sort((a, b) => b - a),
      maxFrameGap: bench.maxFrameGap,
      ms: 0,
      shown: bench.done.shown && bench.done.length === text.length,
    };
  } finally {
    await browser?.close();
    browser = undefined;
    page = undefined;
  }
}

async function setTarget(next: Target): Promise<void> {
  await publisher?.close();
  target = next;
  if (next.publish.via === 'redis' && process.env.BENCH_PUBLISHER === 'kit') publisher = new RedisBenchPublisher(next.publish.url);
  else if (next.publish.via === 'redis') {
    const raw = new RawRedisBenchPublisher(next.publish.url);
    await raw.ready();
    publisher = raw;
  } else {
    const nchan = new NchanBenchPublisher(next.port);
    await nchan.ready();
    publisher = nchan;
  }
}

async function handle(command: Command): Promise<unknown> {
  switch (command.cmd) {
    case 'target':
      return setTarget(command.target);
    case 'open':
      return open(command.paths, command.concurrency);
    case 'closeAll':
      return closeAll();
    case 'trial':
      return trial(command.routing, command.rate, command.durationMs, command.p99LimitMs, command.graceMs);
    case 'search':
      return search(command);
    case 'churn':
      return churn(command.path, command.concurrency, command.durationMs);
    case 'tokens':
      return tokens(command.project, command.stage, command.path, command.tokens);
    case 'resume':
      return resume(command);
    case 'longPublish':
      return longPublish(command);
    case 'longView':
      return longView(command);
    case 'lateJoin':
      return lateJoin(command);
    case 'renderStart':
      return renderStart(command);
    case 'renderFinish':
      return renderFinish(command);
    case 'stormOpen':
      return stormOpen(command);
    case 'stormResume':
      return stormResume(command);
    case 'stormFinish':
      return stormFinish(command);
    case 'exit':
      await closeAll();
      await publisher?.close();
      setImmediate(() => process.exit(0));
      return undefined;
  }
}

// Commands run one at a time, in order.
let queue: Promise<unknown> = Promise.resolve();
process.on('message', (command: Command) => {
  queue = queue.then(async () => {
    let reply: Reply;
    try {
      reply = { id: command.id, ok: true, result: await handle(command) };
    } catch (error) {
      reply = { id: command.id, ok: false, error: (error as Error).stack ?? String(error) };
    }
    process.send!(reply);
  });
});
process.on('disconnect', () => process.exit(0));
