/**
 * Long resumes: a non-compact client (a browser's EventSource: every token carries the whole text so far) that
 * resumes a long answer gets it page by page, as fast as it reads, and then goes live; many at once keep the
 * server's memory bounded; past the hub's caps the client gets the current state instead (`reset`, `too_long`).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createParser } from 'eventsource-parser';
import { Redis } from 'ioredis';
import type { ReplayOptions, ReplayResult } from '../src/broker/broker.js';
import { BrokerUnavailableError } from '../src/broker/errors.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import type { CloseReason } from '../src/hub/client-stream.js';
import { Hub, type HubOptions, type StreamOpening } from '../src/hub/hub.js';
import { StreamPublisher } from '../src/publisher.js';
import { streamUrl } from './harness.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import { waitUntil } from './wait-until.js';

const TOKENS = 1000;
const PIECE = 20; // characters per token: a 20 KB answer, so ~10 MB of full_text over the whole log

let redis: TestRedis;
let admin: Redis;
let broker: RedisBroker;
let server: ServerProcess;
const readers: Resume[] = [];

before(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
  broker = new RedisBroker({ url: redis.url });
  // The real entry point as its own process, so its memory is measured alone.
  server = await startServerProcess({ REDIS_URL: redis.url, SSE_MAX_STREAMS_PER_CLIENT: '1000' });
});
after(async () => {
  for (const reader of readers) reader.close();
  await server.kill();
  await admin.quit();
  await broker.close();
  await redis.close();
});

/** Publishes a `TOKENS`-token answer on one stage, as a worker does; resolves to the ids in order. */
async function publishAnswer(projectId: string, stage = 'rewrite'): Promise<string[]> {
  await using publisher = new StreamPublisher({ projectId, stage, broker });
  const ids: string[] = [];
  let text = '';
  for (let i = 0; i < TOKENS; i++) {
    const piece = `word${i} `.padEnd(PIECE, '.');
    ids.push(await publisher.publishToken(piece, (text += piece)));
  }
  return ids;
}

interface Received {
  id: string | undefined;
  event: string;
  content: unknown;
  /** The length of `full_text`, not the text: 64 clients of 10 MB each would not fit in this process. */
  fullTextLength: number | undefined;
  /** The whole JSON of events that are not tokens. */
  json: Record<string, unknown> | undefined;
}

interface Resume {
  events: Received[];
  /** Bytes received so far. */
  readonly bytes: number;
  /** Resolves once an event with this id arrived; rejects when the stream ends before. */
  waitForId(id: string): Promise<Received>;
  ended: Promise<void>;
  close(): void;
}

/** A client as a browser's EventSource is: a plain GET with Last-Event-ID (no `compact`), reading at full speed. */
async function resume(url: string, lastEventId: string): Promise<Resume> {
  const abort = new AbortController();
  const response = await fetch(url, { headers: { Accept: 'text/event-stream', 'Last-Event-ID': lastEventId }, signal: abort.signal });
  assert.equal(response.status, 200);
  const events: Received[] = [];
  const waiters = new Set<() => void>();
  let bytes = 0;
  let finished = false;
  const parser = createParser({
    onEvent({ id, event = 'message', data }) {
      const json = JSON.parse(data) as Record<string, unknown>;
      const fullText = json.full_text;
      const token = event === 'token';
      events.push({ id, event, content: json.content, fullTextLength: typeof fullText === 'string' ? fullText.length : undefined, json: token ? undefined : json });
      for (const wake of [...waiters]) wake();
    },
  });
  const ended = (async () => {
    const decoder = new TextDecoder();
    try {
      const body = response.body!.getReader();
      for (let chunk = await body.read(); !chunk.done; chunk = await body.read()) {
        bytes += chunk.value.byteLength;
        parser.feed(decoder.decode(chunk.value, { stream: true }));
      }
    } catch {
      // aborted by close(), or the server dropped the stream
    } finally {
      finished = true;
      for (const wake of [...waiters]) wake();
    }
  })();
  const reader: Resume = {
    events,
    get bytes() {
      return bytes;
    },
    waitForId(id) {
      return new Promise((resolve, reject) => {
        const wake = () => {
          const found = events.find((event) => event.id === id);
          if (!found && !finished) return;
          waiters.delete(wake);
          if (found) resolve(found);
          else reject(new Error(`the stream ended after ${bytes} bytes and ${events.length} events (${events.at(-1)?.event ?? 'none'} last), before ${id}`));
        };
        waiters.add(wake);
        wake();
      });
    },
    ended,
    close: () => abort.abort(),
  };
  readers.push(reader);
  return reader;
}

/** Resident memory of a process, and its peak since the last resetPeak(), in bytes (Linux /proc). */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Resets the peak to the current resident memory; where the kernel refuses, the peak stays an upper bound. */
function resetPeak(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    // an older kernel: VmHWM then includes earlier peaks, which only makes the bound stricter
  }
}

async function redisOutputBytes(): Promise<number> {
  const info = (await admin.info('stats')) as string;
  return Number(/^total_net_output_bytes:(\d+)/m.exec(info)?.[1]);
}

const MB = 1024 * 1024;

describe('a long resume of a non-compact client', () => {
  it('gets every token of a 1,000-token, 20 KB answer once, in order, then goes live', async () => {
    const ids = await publishAnswer('long1');
    const from = 9;
    const reader = await resume(streamUrl(server.url, 'long1', 'rewrite'), ids[from]!);
    await reader.waitForId(ids.at(-1)!);
    await using publisher = new StreamPublisher({ projectId: 'long1', stage: 'rewrite', broker });
    const live = await publisher.publishToken('!', `${'.'.repeat(TOKENS * PIECE)}!`);
    await reader.waitForId(live);

    assert.deepEqual(reader.events.map((e) => e.event), ['connected', ...Array<string>(TOKENS - from).fill('token')]);
    assert.deepEqual(reader.events.slice(1).map((e) => e.id), [...ids.slice(from + 1), live]);
    // Each token is the one published, with the whole text so far: nothing was compacted or cut.
    reader.events.slice(1, -1).forEach((event, i) => {
      const n = from + 1 + i;
      assert.equal(event.content, `word${n} `.padEnd(PIECE, '.'));
      assert.equal(event.fullTextLength, (n + 1) * PIECE);
    });
    assert.ok(reader.bytes > 9 * MB, `${reader.bytes} bytes`);
    reader.close();
  });

  it('serves 64 such resumes in parallel, each in full, with the server’s memory bounded', async (t) => {
    const ids = await publishAnswer('long2');
    const pid = server.child.pid!;
    const redisBefore = await redisOutputBytes();
    resetPeak(pid);
    const before = memoryOf(pid);
    const started = Date.now();
    const resumes = await Promise.all(Array.from({ length: 64 }, () => resume(streamUrl(server.url, 'long2', 'rewrite'), ids[0]!)));
    await Promise.all(resumes.map((reader) => reader.waitForId(ids.at(-1)!)));
    const seconds = (Date.now() - started) / 1000;
    const peak = memoryOf(pid).peak;
    const redisSent = (await redisOutputBytes()) - redisBefore;
    const received = resumes.reduce((sum, reader) => sum + reader.bytes, 0);

    for (const reader of resumes) {
      assert.deepEqual(reader.events.slice(1).map((e) => e.id), ids.slice(1));
      reader.close();
    }
    t.diagnostic(
      `64 resumes: ${(received / MB).toFixed(0)} MiB to the clients, ${(redisSent / MB).toFixed(0)} MiB from Redis, in ${seconds.toFixed(1)} s; ` +
        `server RSS ${(before.rss / MB).toFixed(0)} MiB before, peak ${(peak / MB).toFixed(0)} MiB`,
    );
    // Generous: the server holds a page of the log per resume, not the log (64 x 10 MB, in several copies, when a
    // resume is written at once). What it grows by is mostly V8 sizing its heap to the allocation rate: about
    // 100-150 MiB whether 16 or 128 clients resume at once.
    assert.ok(peak - before.rss < 200 * MB, `the server grew by ${((peak - before.rss) / MB).toFixed(0)} MiB`);
    // Each resume reads the log once: no client was dropped and made to read it again.
    assert.ok(redisSent < 64 * 1.5 * (received / 64), `Redis sent ${redisSent} bytes for ${received} delivered`);
  });
});

/** A hub with its own options on a plain HTTP server: `/<project>/<stage>` streams that stage. */
async function hubServer(options: Omit<HubOptions, 'broker'>, hubBroker: RedisBroker = broker) {
  const closed: CloseReason[] = [];
  const openings: StreamOpening[] = [];
  const hub = new Hub({ broker: hubBroker, ...options });
  hub.events.on('stream-closed', (_stream, reason) => closed.push(reason));
  hub.events.on('stream-live', (_stream, opening) => openings.push(opening));
  const http: Server = createServer((req, res) => {
    const [, projectId = '', stage = ''] = req.url!.split('/');
    const lastEventId = req.headers['last-event-id'];
    hub.open(res, { projectId, stage, lastEventId: typeof lastEventId === 'string' ? lastEventId : undefined }).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    hub,
    closed,
    openings,
    url: (projectId: string, stage: string) => `http://127.0.0.1:${port}/${projectId}/${stage}`,
    async close() {
      await hub.close();
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

/** Tokens in the original format (each carries its own `full_text`), so the entries are as large as `fields` makes them. */
async function publishTokens(projectId: string, count: number, fields = ''): Promise<string[]> {
  await using publisher = new StreamPublisher({ projectId, stage: 'rewrite', broker, linearTokens: false });
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push(await publisher.publishToken(String(i), `${fields}${i}`));
  return ids;
}

describe('a resume past the hub’s caps', () => {
  const servers: { close(): Promise<void> }[] = [];
  after(async () => {
    for (const each of servers) await each.close();
  });

  it('gets the entries up to maxReplayEntries, then a reset too_long with the newest id, then live messages once', async () => {
    const small = await hubServer({ maxReplayEntries: 10 });
    servers.push(small);
    const ids = await publishTokens('cap1', 30);
    const reader = await resume(small.url('cap1', 'rewrite'), ids[0]!);
    const reset = await reader.waitForId(ids.at(-1)!);
    assert.equal(reset.event, 'reset');
    assert.equal(reset.json?.reason, 'too_long');
    const stages = reset.json?.stages as Record<string, Record<string, Record<string, unknown>>>;
    assert.equal(stages.rewrite?.token?.full_text, '29', 'the reset carries the current state');
    assert.deepEqual(reader.events.slice(1, -1).map((e) => e.id), ids.slice(1, 11));

    await using publisher = new StreamPublisher({ projectId: 'cap1', stage: 'rewrite', broker });
    const live = await publisher.publishToken('30', '30');
    await reader.waitForId(live);
    assert.deepEqual(reader.events.slice(-2).map((e) => e.event), ['reset', 'token']);
    assert.equal(small.openings.at(-1)?.reset, 'too_long');

    // The reset's id is where the next resume continues: exactly what came after it.
    const next = await resume(small.url('cap1', 'rewrite'), reset.id!);
    await next.waitForId(live);
    assert.deepEqual(next.events.map((e) => [e.event, e.id]), [['connected', undefined], ['token', live]]);
    reader.close();
    next.close();
  });

  it('gets a reset too_long once the entries pass maxReplayBytes', async () => {
    const small = await hubServer({ maxReplayBytes: 4096 });
    servers.push(small);
    const ids = await publishTokens('cap2', 40, 'x'.repeat(400));
    const reader = await resume(small.url('cap2', 'rewrite'), ids[0]!);
    const reset = await reader.waitForId(ids.at(-1)!);
    assert.equal(reset.json?.reason, 'too_long');
    const replayed = reader.events.slice(1, -1);
    assert.ok(replayed.length > 0 && replayed.length < 10, `${replayed.length} entries of ~500 bytes within 4096`);
    assert.deepEqual(replayed.map((e) => e.id), ids.slice(1, 1 + replayed.length));
    reader.close();
  });
});

/** Fails every replay after the first: Redis going away between two pages. */
class FailingAfterOnePage extends RedisBroker {
  replays = 0;
  override async replay(projectId: string, afterId: string, options?: ReplayOptions): Promise<ReplayResult> {
    if (++this.replays > 1) throw new BrokerUnavailableError('Redis did not answer', { sent: true });
    return super.replay(projectId, afterId, options);
  }
}

describe('a broker failure in the middle of a long resume', () => {
  it('ends the stream after what was replayed, so the client resumes from there', async () => {
    const failing = new FailingAfterOnePage({ url: redis.url });
    const hub = await hubServer({}, failing);
    try {
      const ids = await publishTokens('fail1', 200);
      const reader = await resume(hub.url('fail1', 'rewrite'), ids[0]!);
      await reader.ended;
      const replayed = reader.events.slice(1);
      assert.equal(reader.events[0]?.event, 'connected');
      assert.ok(replayed.length > 0 && replayed.length < 199, `${replayed.length} of 199 replayed`);
      assert.deepEqual(replayed.map((e) => e.id), ids.slice(1, 1 + replayed.length));
      await waitUntil(() => hub.closed.length === 1, 'the stream is released');
      assert.deepEqual(hub.closed, ['broker_error']);
      assert.equal(hub.hub.size, 0);
    } finally {
      await hub.close();
      await failing.close();
    }
  });
});
