/**
 * State on connect: a stream opened without `Last-Event-ID` starts with a `snapshot` of the current state of what
 * it watches (its `id:` the log id it is current up to), then goes live with no gap and no duplicate.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SnapshotMessage } from '../../protocol/messages.js';
import { Redis } from 'ioredis';
import type { Broker } from '../src/broker/broker.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { logKey, textKey, textsKey } from '../src/channels.js';
import { startServer, type RunningServer } from '../src/server.js';
import { startHarness, streamUrl, TEST_SETTINGS, type Harness } from './harness.js';
import { startRedisCluster, type TestRedisCluster } from './redis-cluster.js';
import { openStream, requestJson, type ReceivedEvent, type StreamReader } from './sse-reader.js';

/** Publishes what a worker publishes; tokens in linear form, the text kept per stage as `texts[stage]`. */
class Worker {
  readonly texts = new Map<string, string>();
  readonly ids: string[] = [];
  constructor(readonly broker: Broker, readonly projectId: string) {}

  async send(stage: string, type: string, fields: Record<string, unknown>): Promise<string> {
    const json = JSON.stringify({ type, stage, project_id: this.projectId, timestamp: Date.now() / 1000, ...fields });
    const id = await this.broker.publish(this.projectId, stage, type, json);
    this.ids.push(id);
    return id;
  }

  /** A linear token, its offset taken when called (so calls made in order may run together). */
  token(stage: string, content: string): Promise<string> {
    const offset = (this.texts.get(stage) ?? '').length;
    this.texts.set(stage, (this.texts.get(stage) ?? '') + content);
    const json = JSON.stringify({ type: 'token', stage, project_id: this.projectId, timestamp: Date.now() / 1000, content, offset });
    return this.broker.publish(this.projectId, stage, 'token', json, { content, offset });
  }

  done(stage: string): Promise<string> {
    return this.send(stage, 'done', { full_text: this.texts.get(stage) ?? '', metadata: {} });
  }
}

const snapshotOf = (reader: StreamReader) => reader.events.find((e) => e.event === 'snapshot');
const stagesOf = (event: ReceivedEvent) => (event.json as unknown as SnapshotMessage).stages;

/**
 * Rebuilds a stage's text from the snapshot and the live tokens after it, checking each piece continues it
 * exactly (compact: its offset; original format: its full_text); returns the text and the first live token.
 */
function rebuild(reader: StreamReader, stage: string, compareIds: (a: string, b: string) => number): { text: string; first: ReceivedEvent | undefined } {
  const index = reader.events.findIndex((e) => e.event === 'snapshot');
  const snapshot = reader.events[index]!;
  let text = stagesOf(snapshot)[stage]?.text ?? '';
  let first: ReceivedEvent | undefined;
  for (const event of reader.events.slice(index + 1)) {
    if (event.event !== 'token' || event.json!.stage !== stage) continue;
    first ??= event;
    assert.ok(compareIds(event.id!, snapshot.id!) > 0, `token ${event.id} is not after the snapshot ${snapshot.id}`);
    const { content, offset, full_text: fullText } = event.json as { content: string; offset?: number; full_text?: string };
    if (typeof fullText === 'string') {
      assert.equal(fullText, text + content, `token ${event.id} continues the text`);
      text = fullText;
    } else {
      assert.equal(offset, text.length, `token ${event.id} starts where the text ends`);
      text += content;
    }
  }
  return { text, first };
}

/**
 * While a publisher streams tokens at full speed, opens 20 fresh streams one after another (one stage and all
 * stages, compact and not): for each, the snapshot's text and the pieces of the live tokens after it make the
 * publisher's final text, each token continuing it exactly, with no duplicate.
 */
async function busyPublisherCheck(base: string, broker: Broker, projectId: string): Promise<void> {
  const w = new Worker(broker, projectId);
  const compare = (a: string, b: string) => broker.compareIds(a, b);
  await w.send('rewrite', 'stage_update', { status: 'processing', progress: 0, message: '' });
  await w.token('rewrite', 'start');
  let stop = false;
  let n = 0;
  const publishing = (async () => {
    // Several tokens in flight at once, so many arrive in one read and are fanned out as one batch.
    while (!stop) await Promise.all(Array.from({ length: 8 }, () => w.token('rewrite', ` t${n++}`)));
    await w.send('rewrite', 'stage_update', { status: 'completed', progress: 100, message: '' });
    return w.done('rewrite');
  })();
  const readers: { reader: StreamReader; compact: boolean }[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      const compact = i % 2 === 1;
      const query = compact ? '?compact=1' : '';
      const url = (i % 4 < 2 ? streamUrl(base, projectId, 'rewrite') : streamUrl(base, projectId)) + query;
      const reader = await openStream(url);
      readers.push({ reader, compact });
      await reader.waitFor((e) => e.event === 'snapshot');
    }
    stop = true;
    const doneId = await publishing;
    const finalText = w.texts.get('rewrite')!;
    assert.ok(n > 40, `the publisher kept going (${n} tokens)`);
    for (const [i, { reader, compact }] of readers.entries()) {
      await reader.waitFor((e) => e.id === doneId);
      const snapshot = snapshotOf(reader)!;
      assert.equal(typeof stagesOf(snapshot).rewrite!.text, 'string', `stream ${i} has the text so far`);
      const { text, first } = rebuild(reader, 'rewrite', compare);
      assert.equal(text, finalText, `stream ${i}`);
      if (first && compact) assert.equal(first.json!.offset, stagesOf(snapshot).rewrite!.text!.length, `stream ${i}: the first piece is compact, at the end of the text`);
      const ids = reader.events.filter((e) => e.id !== undefined).map((e) => e.id!);
      assert.equal(new Set(ids).size, ids.length, `stream ${i}: no duplicate`);
      const done = reader.events.find((e) => e.event === 'done')!;
      assert.equal(done.json!.full_text, finalText);
    }
  } finally {
    stop = true;
    await publishing.catch(() => {});
    for (const { reader } of readers) reader.close();
  }
}

describe('snapshot on Redis', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  it('holds the current state of one stage, or of all stages, with the id it is current to', async () => {
    const w = new Worker(h.broker, 's1');
    await w.send('outline', 'stage_update', { status: 'processing', progress: 0, message: 'go' });
    await w.send('outline', 'progress', { current: 1, total: 2, progress: 50, item_name: 'a' });
    for (const piece of ['An ', 'outline', '.']) await w.token('outline', piece);
    await w.send('outline', 'stage_update', { status: 'completed', progress: 100, message: 'ok' });
    await w.done('outline');
    await w.send('rewrite', 'stage_update', { status: 'processing', progress: 10, message: 'writing' });
    for (const piece of ['Once', ' upon', ' a time']) await w.token('rewrite', piece);
    // A foreign type in the state hash is left out.
    const lastId = await w.send('rewrite', 'custom_thing', { x: 1 });

    const one = await openStream(streamUrl(h.url, 's1', 'rewrite'));
    const all = await openStream(streamUrl(h.url, 's1'));
    try {
      const [oneSnap, allSnap] = await Promise.all([one.waitFor((e) => e.event === 'snapshot'), all.waitFor((e) => e.event === 'snapshot')]);
      assert.deepEqual(one.events.map((e) => e.event), ['connected', 'snapshot']);
      for (const [snap, stage] of [[oneSnap, 'rewrite'], [allSnap, null]] as const) {
        assert.equal(snap.id, lastId);
        assert.equal(snap.json!.type, 'snapshot');
        assert.equal(snap.json!.project_id, 's1');
        assert.equal(snap.json!.stage, stage);
      }
      assert.deepEqual(Object.keys(stagesOf(oneSnap)), ['rewrite']);
      const rewrite = stagesOf(allSnap).rewrite!;
      assert.deepEqual(stagesOf(oneSnap).rewrite, rewrite);
      assert.deepEqual(Object.keys(rewrite).sort(), ['stage_update', 'text']);
      assert.equal(rewrite.text, 'Once upon a time');
      assert.equal(rewrite.stage_update!.message, 'writing');
      const outline = stagesOf(allSnap).outline!;
      assert.deepEqual(Object.keys(outline).sort(), ['done', 'progress', 'stage_update']);
      assert.equal(outline.done!.full_text, 'An outline.');
      assert.equal(outline.stage_update!.status, 'completed');
      assert.equal(outline.progress!.current, 1);
      assert.equal(typeof outline.done!.id, 'string');

      // Then live, from the next message on.
      const next = await w.token('rewrite', ' there');
      for (const reader of [one, all]) {
        await reader.waitFor((e) => e.id === next);
        assert.equal(rebuild(reader, 'rewrite', (a, b) => h.broker.compareIds(a, b)).text, 'Once upon a time there');
      }
    } finally {
      one.close();
      all.close();
    }
  });

  it('is exact against a busy publisher: snapshot text + live pieces = the final text, no gap, no duplicate', async () => {
    await busyPublisherCheck(h.url, h.broker, 's2');
  });

  it('is turned off by ?snapshot=0, and ?snapshot=1 is the default', async () => {
    const w = new Worker(h.broker, 's3');
    await w.token('rewrite', 'Hello');
    const off = await openStream(`${streamUrl(h.url, 's3', 'rewrite')}?snapshot=0`);
    const on = await openStream(`${streamUrl(h.url, 's3', 'rewrite')}?snapshot=1`);
    try {
      await on.waitFor((e) => e.event === 'snapshot');
      await off.waitFor((e) => e.event === 'connected');
      const next = await w.token('rewrite', ' world');
      await off.waitFor((e) => e.id === next);
      assert.deepEqual(off.events.map((e) => e.event), ['connected', 'token']);
      assert.equal(off.events[1]!.json!.full_text, 'Hello world');
    } finally {
      off.close();
      on.close();
    }
  });

  it('refuses a malformed ?snapshot= with the JSON error of other bad parameters', async () => {
    const { status, body } = await requestJson(`${streamUrl(h.url, 's3', 'rewrite')}?snapshot=maybe`);
    assert.equal(status, 400);
    assert.equal(body.error.code, 'bad_request');
    assert.match(body.error.message, /snapshot must be 0/);
    const bad = await requestJson(streamUrl(h.url, 'bad%20id!', 'rewrite'));
    assert.equal(bad.status, 400);
    assert.equal(typeof bad.body.error.message, 'string');
  });

  it('opens as today when the project has no history', async () => {
    const w = new Worker(h.broker, 's4');
    const reader = await openStream(streamUrl(h.url, 's4'));
    try {
      await reader.waitFor((e) => e.event === 'connected');
      const id = await w.token('rewrite', 'first');
      await reader.waitFor((e) => e.id === id);
      assert.deepEqual(reader.events.map((e) => e.event), ['connected', 'token']);
    } finally {
      reader.close();
    }
  });

  it('leaves a consumer that only reads token events undisturbed', async () => {
    const w = new Worker(h.broker, 's5');
    for (const piece of ['a', 'b', 'c']) await w.token('rewrite', piece);
    const reader = await openStream(streamUrl(h.url, 's5', 'rewrite'));
    try {
      await reader.waitFor((e) => e.event === 'snapshot');
      const ids = [await w.token('rewrite', 'd'), await w.token('rewrite', 'e')];
      await reader.waitFor((e) => e.id === ids[1]);
      // What an EventSource with only on('token') sees: the tokens after it connected, each whole.
      const tokens = reader.events.filter((e) => e.event === 'token');
      assert.deepEqual(tokens.map((e) => e.id), ids);
      assert.deepEqual(tokens.map((e) => e.json!.full_text), ['abcd', 'abcde']);
      assert.match(reader.raw, /\nevent: snapshot\ndata: \{"type":"snapshot"/);
    } finally {
      reader.close();
    }
  });

  it('sends no snapshot on a resume with Last-Event-ID', async () => {
    const w = new Worker(h.broker, 's6');
    const ids = [await w.token('rewrite', 'a'), await w.token('rewrite', 'b'), await w.token('rewrite', 'c')];
    const reader = await openStream(streamUrl(h.url, 's6', 'rewrite'), { 'Last-Event-ID': ids[0]! });
    try {
      await reader.waitFor((e) => e.id === ids[2]);
      assert.deepEqual(reader.events.map((e) => e.event), ['connected', 'token', 'token']);
      assert.equal(reader.events[0]!.json!.resumed, true);
    } finally {
      reader.close();
    }
  });

  it('leaves out a text it cannot know exactly rather than send it wrong', async () => {
    const w = new Worker(h.broker, 's7');
    await w.send('rewrite', 'stage_update', { status: 'processing', progress: 1, message: '' });
    for (const piece of ['a', 'b']) await w.token('rewrite', piece);
    const raw = new Redis(h.redis!.url);
    try {
      // The kept text is gone (expired apart from the state): neither the topic nor the broker knows the text.
      await raw.del(textKey('ai_story', 's7', 'rewrite'), textsKey('ai_story', 's7'));
    } finally {
      raw.disconnect();
    }
    const reader = await openStream(streamUrl(h.url, 's7', 'rewrite'));
    try {
      const snap = await reader.waitFor((e) => e.event === 'snapshot');
      assert.deepEqual(Object.keys(stagesOf(snap).rewrite!), ['stage_update']);
    } finally {
      reader.close();
    }
  });

  it('counts the snapshots sent', async () => {
    const text = await h.server.metrics.text();
    const count = Number(/^sse_snapshots_sent_total (\d+)$/m.exec(text)?.[1]);
    assert.ok(count >= 1, `sse_snapshots_sent_total is ${count}`);
  });
});

describe('snapshot on the memory broker', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ broker: 'memory' });
  });
  after(async () => {
    await h.close();
  });

  it('holds the state and the text so far, then goes live without gap', async () => {
    const w = new Worker(h.broker, 'm1');
    await w.send('outline', 'stage_update', { status: 'processing', progress: 5, message: '' });
    for (const piece of ['x', 'y']) await w.token('outline', piece);
    await w.done('outline');
    await w.send('rewrite', 'error', { error: 'boom', retry_count: 1 });
    const last = await w.token('image', 'pic');
    const reader = await openStream(`${streamUrl(h.url, 'm1')}?compact=1`);
    try {
      const snap = await reader.waitFor((e) => e.event === 'snapshot');
      assert.equal(snap.id, last);
      const stages = stagesOf(snap);
      assert.equal(stages.outline!.done!.full_text, 'xy');
      assert.equal(stages.outline!.text, undefined);
      assert.equal(stages.rewrite!.error!.error, 'boom');
      assert.equal(stages.image!.text, 'pic');
      const next = await w.token('image', 'ture');
      const token = await reader.waitFor((e) => e.id === next);
      assert.equal(token.json!.offset, 3);
      assert.equal(token.json!.full_text, undefined);
    } finally {
      reader.close();
    }
  });

  it('ends the stream when the broker fails mid-read, never with a half snapshot', async () => {
    const w = new Worker(h.broker, 'm2');
    await w.token('rewrite', 'a');
    const snapshot = h.broker.snapshot;
    h.broker.snapshot = async () => {
      throw new Error('broker down');
    };
    try {
      const reader = await openStream(streamUrl(h.url, 'm2', 'rewrite'));
      await reader.ended;
      assert.deepEqual(reader.events.map((e) => e.event), ['connected']);
    } finally {
      h.broker.snapshot = snapshot;
    }
  });
});

describe('snapshot on a Redis Cluster', () => {
  let cluster: TestRedisCluster;
  let broker: RedisBroker;
  let server: RunningServer;
  before(async () => {
    cluster = await startRedisCluster();
    broker = new RedisBroker({ prefix: 'ai_story', cluster: { nodes: cluster.nodes } });
    server = await startServer({ ...TEST_SETTINGS }, broker);
  });
  after(async () => {
    await server.close();
    await broker.close();
    await cluster.close();
  });

  it('is exact against a busy publisher, for projects on every master', async () => {
    const probe = new Redis(cluster.nodes[0]!.port, cluster.nodes[0]!.host);
    const byMaster = new Map<number, string>();
    try {
      for (let i = 0; byMaster.size < cluster.nodes.length && i < 200; i++) {
        const slot = Number(await probe.call('CLUSTER', 'KEYSLOT', logKey('ai_story', `c${i}`)));
        byMaster.set(cluster.portOfSlot(slot), byMaster.get(cluster.portOfSlot(slot)) ?? `c${i}`);
      }
    } finally {
      probe.disconnect();
    }
    assert.equal(byMaster.size, cluster.nodes.length);
    await Promise.all([...byMaster.values()].map((projectId) => busyPublisherCheck(server.url, broker, projectId)));
  });
});
