/**
 * Reconnect storms: many clients of one project resume at once, each with its `Last-Event-ID`, while a worker
 * keeps publishing. Resumes from the same cursor share one log read (server/src/hub/coalesced-reads.ts), and every
 * client still gets exactly its own sequence: no gap, no duplicate. Over the plain stage stream, the all-stages
 * stream and the multiplexed connection (SSE and WebSocket), on Redis and on the embedded broker. The bench's
 * `storm` scenario measures the speed; this file checks only behaviour.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Broker } from '../src/broker/broker.js';
import { MemoryBroker } from '../src/broker/memory-broker.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { StreamPublisher } from '../src/publisher.js';
import { startServer, type RunningServer } from '../src/server.js';
import { TEST_SETTINGS, streamUrl } from './harness.js';
import { openMux, type Transport } from './mux-reader.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { openStream, type ReceivedEvent, type StreamReader } from './sse-reader.js';

const STAGES = ['rewrite', 'storyboard'] as const;
/** Messages in the log before the clients resume, and published while they do. */
const BEFORE = 40;
const DURING = 80;

/** The broker, with a count of the log and state reads that reach it, by project and cursor. */
interface Counted {
  broker: Broker;
  /** `${project} ${afterId}` -> replay calls. */
  replays: Map<string, number>;
  /** project -> snapshot calls. */
  snapshots: Map<string, number>;
}

function counted(inner: Broker): Counted {
  const replays = new Map<string, number>();
  const snapshots = new Map<string, number>();
  const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
  const broker = new Proxy(inner, {
    get(target, property) {
      if (property === 'replay') {
        return (projectId: string, afterId: string, options?: { limit?: number }) => {
          bump(replays, `${projectId} ${afterId}`);
          return target.replay(projectId, afterId, options);
        };
      }
      if (property === 'snapshot') {
        return (projectId: string) => {
          bump(snapshots, projectId);
          return target.snapshot(projectId);
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { broker, replays, snapshots };
}

interface Published {
  id: string;
  stage: string;
  seq: number;
}

/** A worker on the project: the real publisher, one per stage, messages alternating between the stages. */
class Worker {
  readonly log: Published[] = [];
  readonly #publishers: StreamPublisher[];
  #seq = 0;

  constructor(broker: Broker, projectId: string) {
    this.#publishers = STAGES.map((stage) => new StreamPublisher({ projectId, stage, broker }));
  }

  async publish(count: number, pauseMs = 0): Promise<void> {
    for (let i = 0; i < count; i++) {
      const seq = this.#seq++;
      const publisher = this.#publishers[seq % STAGES.length]!;
      this.log.push({ id: await publisher.publish('progress', { seq }), stage: publisher.stage, seq });
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }

  /** A `done` on each stage: what every client waits for at the end. */
  async finish(): Promise<void> {
    for (const publisher of this.#publishers) await publisher.publish('done', { full_text: '' });
  }

  async close(): Promise<void> {
    for (const publisher of this.#publishers) await publisher.close();
  }
}

type Via = 'stream' | Transport;

interface Client {
  cursor: string;
  reader: StreamReader;
  /** This client's events, once it ended. */
  events(): ReceivedEvent[];
}

async function resume(url: string, via: Via, projectId: string, stage: string | null, cursor: string): Promise<Client> {
  if (via === 'stream') {
    const reader = await openStream(streamUrl(url, projectId, stage ?? undefined), { 'Last-Event-ID': cursor });
    assert.equal(reader.status, 200);
    return { cursor, reader, events: () => reader.events };
  }
  const reader = await openMux(url, { transport: via });
  const answer = await reader.subscribe({ subscription: 's', project_id: projectId, stage, last_event_id: cursor });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return { cursor, reader, events: () => reader.of('s') };
}

interface Storm {
  via: Via;
  /** null: the all-stages stream. */
  stage: string | null;
  /** Indexes into the log written before, one cursor per entry. */
  cursors: number[];
  perCursor: number;
}

let projects = 0;

/**
 * Resumes `perCursor` clients from each cursor at once while the worker publishes, then checks each client's
 * sequence against the log and the broker's reads against the cursors.
 */
async function runStorm(server: RunningServer, reads: Counted, broker: Broker, storm: Storm): Promise<void> {
  const projectId = `storm${++projects}`;
  const worker = new Worker(broker, projectId);
  const clients: Client[] = [];
  try {
    await worker.publish(BEFORE);
    const cursors = storm.cursors.map((index) => worker.log[index]!.id);
    const publishing = worker.publish(DURING, 1);
    clients.push(
      ...(await Promise.all(cursors.flatMap((cursor) => Array.from({ length: storm.perCursor }, () => resume(server.url, storm.via, projectId, storm.stage, cursor))))),
    );
    await publishing;
    await worker.finish();
    const stages: readonly string[] = storm.stage === null ? STAGES : [storm.stage];
    for (const client of clients) {
      for (const stage of stages) await client.reader.waitFor((e) => e.event === 'done' && e.json?.stage === stage && (storm.via === 'stream' || e.json?.subscription === 's'), 20_000);
    }

    for (const client of clients) {
      const after = worker.log.findIndex((m) => m.id === client.cursor);
      const expected = worker.log.slice(after + 1).filter((m) => stages.includes(m.stage));
      const got = client.events().filter((e) => e.event === 'progress');
      assert.deepEqual(
        got.map((e) => e.json?.seq),
        expected.map((m) => m.seq),
        `a client resumed from ${client.cursor} gets every message after it once, in order`,
      );
      assert.deepEqual(got.map((e) => e.id), expected.map((m) => m.id), 'with its log id');
      assert.equal(client.events().filter((e) => e.event === 'reset').length, 0);
    }
    for (const cursor of cursors) {
      const count = reads.replays.get(`${projectId} ${cursor}`) ?? 0;
      assert.ok(count <= 1, `${storm.perCursor} resumes from ${cursor} read the log ${count} times from it, at most once`);
    }
    const total = [...reads.replays].filter(([key]) => key.startsWith(`${projectId} `)).reduce((sum, [, n]) => sum + n, 0);
    assert.ok(total < clients.length, `${clients.length} resumes made ${total} log reads in all`);
  } finally {
    for (const client of clients) client.reader.close();
    await worker.close();
  }
}

for (const kind of ['redis', 'memory'] as const) {
  describe(`a reconnect storm (${kind} broker)`, () => {
    let redis: TestRedis | undefined;
    let inner: Broker;
    let reads: Counted;
    let server: RunningServer;
    let publishing: Broker;

    before(async () => {
      const options = { prefix: 'ai_story', logMaxLen: 10_000, logTtlSeconds: 3600 };
      redis = kind === 'redis' ? await startRedis() : undefined;
      inner = redis ? new RedisBroker({ ...options, url: redis.url }) : new MemoryBroker(options);
      reads = counted(inner);
      server = await startServer({ ...TEST_SETTINGS }, reads.broker);
      // The worker is another process's publisher on Redis; on the embedded broker it can only be the hub's own.
      publishing = redis ? new RedisBroker({ ...options, url: redis.url }) : inner;
    });
    after(async () => {
      await server.close();
      if (publishing !== inner) await publishing.close();
      await inner.close();
      await redis?.close();
    });

    it('40 stage streams resuming from one cursor share its read, and each gets exactly what followed it', async () => {
      await runStorm(server, reads, publishing, { via: 'stream', stage: 'rewrite', cursors: [9], perCursor: 40 });
    });

    it('stage streams from three cursors: each cursor read at most once, every client exact', async () => {
      await runStorm(server, reads, publishing, { via: 'stream', stage: 'storyboard', cursors: [3, 20, 31], perCursor: 12 });
    });

    it('all-stages streams from two cursors: each cursor read at most once, every client exact', async () => {
      await runStorm(server, reads, publishing, { via: 'stream', stage: null, cursors: [4, 25], perCursor: 15 });
    });

    for (const transport of ['sse', 'websocket'] as const) {
      it(`multiplexed subscriptions over ${transport === 'sse' ? 'SSE' : 'a WebSocket'} from two cursors: each cursor read at most once, every client exact`, async () => {
        await runStorm(server, reads, publishing, { via: transport, stage: 'rewrite', cursors: [8, 30], perCursor: 12 });
      });
    }

    it('fresh streams opened together share the snapshot read while the project is quiet, then go on exactly', async () => {
      const projectId = `snap${++projects}`;
      const worker = new Worker(publishing, projectId);
      const readers: StreamReader[] = [];
      try {
        await worker.publish(10);
        readers.push(...(await Promise.all(Array.from({ length: 30 }, () => openStream(streamUrl(server.url, projectId, 'rewrite'))))));
        const snapshots = await Promise.all(readers.map((reader) => reader.waitFor((e) => e.event === 'snapshot')));
        assert.equal(reads.snapshots.get(projectId), 1, '30 fresh streams, one snapshot read');
        const last = worker.log.at(-1)!;
        for (const snapshot of snapshots) assert.equal(snapshot.id, last.id, 'each snapshot is current up to the newest id');
        await worker.publish(20, 1);
        await worker.finish();
        const expected = worker.log.slice(10).filter((m) => m.stage === 'rewrite').map((m) => m.seq);
        for (const reader of readers) {
          await reader.waitFor((e) => e.event === 'done' && e.json?.stage === 'rewrite');
          assert.deepEqual(reader.events.filter((e) => e.event === 'progress').map((e) => e.json?.seq), expected, 'after the snapshot, every message once');
        }
      } finally {
        for (const reader of readers) reader.close();
        await worker.close();
      }
    });

    it('counts the reads sent and the reads shared in /metrics', async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      const value = (name: string, kind: string) => Number(new RegExp(`^${name}\\{kind="${kind}"\\} (\\d+)`, 'm').exec(text)?.[1]);
      const sent = value('sse_log_reads_total', 'replay');
      const shared = value('sse_log_reads_coalesced_total', 'replay');
      assert.ok(sent > 0 && shared > sent, `resumes' first pages: ${sent} read, ${shared} shared`);
      assert.ok(value('sse_log_reads_total', 'snapshot') >= 1);
    });
  });
}
