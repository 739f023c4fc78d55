/** The SSE endpoints end to end: real HTTP, a real redis-server, the real publisher library. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { StreamPublisher } from '../src/publisher.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { waitUntil } from './wait-until.js';
import { openStream, type StreamReader } from './sse-reader.js';

let h: Harness;
let inspector: Redis;
const open: StreamReader[] = [];

async function watch(projectId: string, stage?: string, headers: Record<string, string> = {}): Promise<StreamReader> {
  const reader = await openStream(streamUrl(h.url, projectId, stage), headers);
  open.push(reader);
  await reader.waitFor((e) => e.event === 'connected');
  return reader;
}

function publisher(projectId: string, stage: string): StreamPublisher {
  return new StreamPublisher({ projectId, stage, broker: h.broker });
}


before(async () => {
  h = await startHarness();
  inspector = new Redis(h.redis!.url);
});
after(async () => {
  for (const reader of open) reader.close();
  await inspector.quit();
  await h.close();
});

describe('a stage stream', () => {
  it('opens with the SSE headers, a retry line and a connected event', async () => {
    const reader = await watch('p1', 'rewrite');
    assert.equal(reader.status, 200);
    assert.equal(reader.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal(reader.headers.get('cache-control'), 'no-cache, no-transform');
    assert.equal(reader.headers.get('x-accel-buffering'), 'no');
    assert.match(reader.raw, /^retry: \d+\n\n/);
    const connected = reader.events[0]!;
    assert.equal(connected.event, 'connected');
    assert.deepEqual({ ...connected.json, timestamp: 0 }, { type: 'connected', project_id: 'p1', stage: 'rewrite', resumed: false, timestamp: 0 });
    reader.close();
  });

  it('delivers every message type with its log id, in order, to a client that received connected', async () => {
    const reader = await watch('p2', 'rewrite');
    await using pub = publisher('p2', 'rewrite');
    await pub.publishStageUpdate('processing', 0, 'started');
    await pub.publishToken('你好', '你好');
    await pub.publishToken(' world', '你好 world');
    await pub.publishProgress(1, 4, 'frame_1.png');
    await pub.publishError('rate limited', 2);
    const lastId = await pub.publishDone('你好 world', { tokens_used: 2, latency_ms: 5 });
    await reader.waitFor((e) => e.id === lastId);
    const received = reader.events.slice(1);
    assert.deepEqual(received.map((e) => e.event), ['stage_update', 'token', 'token', 'progress', 'error', 'done']);
    for (const event of received) {
      assert.equal(event.json?.id, event.id, 'the id line and the JSON id agree');
      assert.equal(event.json?.project_id, 'p2');
      assert.equal(event.json?.stage, 'rewrite');
      assert.equal(typeof event.json?.timestamp, 'number');
    }
    const [, , second, progress, error] = received.map((e) => e.json ?? {});
    assert.deepEqual([second?.content, second?.full_text], [' world', '你好 world']);
    assert.deepEqual([progress?.current, progress?.total, progress?.progress, progress?.item_name], [1, 4, 25, 'frame_1.png']);
    assert.deepEqual([error?.error, error?.retry_count], ['rate limited', 2]);
    assert.deepEqual(received[5]!.json?.metadata, { tokens_used: 2, latency_ms: 5 });
    reader.close();
  });

  it('does not receive other stages or other projects', async () => {
    const reader = await watch('p3', 'rewrite');
    await using other = publisher('p3', 'storyboard');
    await using otherProject = publisher('p3x', 'rewrite');
    await using mine = publisher('p3', 'rewrite');
    await other.publishToken('no', 'no');
    await otherProject.publishToken('no', 'no');
    const id = await mine.publishToken('yes', 'yes');
    await reader.waitFor((e) => e.id === id);
    assert.deepEqual(reader.events.slice(1).map((e) => e.json?.content), ['yes']);
    reader.close();
  });

  it('delivers a foreign PUBLISH in the original format, without an id, and frames non-JSON safely', async () => {
    const reader = await watch('p4', 'rewrite');
    const original = { type: 'token', stage: 'rewrite', project_id: 'p4', timestamp: 1.5, content: 'a', full_text: 'a', extra: { kept: true } };
    await inspector.publish('ai_story:project:p4:stage:rewrite', JSON.stringify(original));
    await inspector.publish('ai_story:project:p4:stage:rewrite', 'not json\nid: 1\n\nevent: done');
    const raw = await reader.waitFor((e) => e.event === 'message');
    const foreign = reader.events.find((e) => e.event === 'token')!;
    assert.equal(foreign.id, undefined);
    assert.deepEqual(foreign.json, original);
    assert.equal(raw.data, 'not json\nid: 1\n\nevent: done');
    assert.equal(reader.events.filter((e) => e.event === 'done').length, 0);
    reader.close();
  });
});

describe('an all-stages stream', () => {
  it('receives every stage of its project in publish order, and no other project', async () => {
    const reader = await watch('p5');
    assert.equal(reader.events[0]!.json?.stage, null);
    await using a = publisher('p5', 'rewrite');
    await using b = publisher('p5', 'image_generation');
    await using c = publisher('p55', 'rewrite');
    await a.publishToken('1', '1');
    await c.publishToken('x', 'x');
    await b.publishProgress(1, 2, 'one.png');
    const last = await a.publishDone('1', {});
    await reader.waitFor((e) => e.id === last);
    assert.deepEqual(
      reader.events.slice(1).map((e) => `${e.json?.stage}:${e.event}`),
      ['rewrite:token', 'image_generation:progress', 'rewrite:done'],
    );
    reader.close();
  });
});

describe('resume with Last-Event-ID', () => {
  it('replays exactly what was published during the drop, then continues live', async () => {
    await using pub = publisher('r1', 'rewrite');
    const first = await watch('r1', 'rewrite');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await pub.publishToken(String(i), ''));
    await first.waitFor((e) => e.id === ids[2]);
    first.close();
    for (let i = 3; i < 8; i++) ids.push(await pub.publishToken(String(i), ''));

    const resumed = await watch('r1', 'rewrite', { 'Last-Event-ID': ids[2]! });
    assert.equal(resumed.events[0]!.json?.resumed, true);
    ids.push(await pub.publishToken('8', ''));
    await resumed.waitFor((e) => e.id === ids[8]);
    assert.deepEqual(resumed.events.slice(1).map((e) => e.json?.content), ['3', '4', '5', '6', '7', '8']);
    resumed.close();
  });

  it('accepts the id as the lastEventId query parameter too', async () => {
    await using pub = publisher('r2', 'rewrite');
    const a = await pub.publishToken('a', 'a');
    await pub.publishToken('b', 'ab');
    const reader = await openStream(`${streamUrl(h.url, 'r2', 'rewrite')}?lastEventId=${a}`);
    open.push(reader);
    const b = await reader.waitFor((e) => e.event === 'token');
    assert.equal(b.json?.content, 'b');
    reader.close();
  });

  it('has no gap and no duplicate while a busy publisher races the replay', async () => {
    await using pub = publisher('r3', 'storyboard');
    const first = await watch('r3');
    let published = 0;
    const burst = async (n: number) => {
      for (let i = 0; i < n; i++) await pub.publishToken(String(published++), '');
    };
    await burst(50);
    await first.waitFor((e) => e.json?.content === '49');
    first.close();
    const resumeFrom = first.lastEventId!;
    // Resume while another 300 messages are being published.
    const racing = burst(300);
    const resumed = await watch('r3', undefined, { 'Last-Event-ID': resumeFrom });
    await racing;
    await resumed.waitFor((e) => e.json?.content === '349');
    const contents = resumed.events.filter((e) => e.event === 'token').map((e) => Number(e.json?.content));
    assert.deepEqual(contents, Array.from({ length: 300 }, (_, i) => i + 50));
    resumed.close();
  });

  it('resumes the all-stages stream across stages in one id space', async () => {
    await using a = publisher('r4', 'rewrite');
    await using b = publisher('r4', 'storyboard');
    const from = await a.publishToken('a1', '');
    await b.publishToken('b1', '');
    await a.publishToken('a2', '');
    const last = await b.publishToken('b2', '');
    const reader = await watch('r4', undefined, { 'Last-Event-ID': from });
    await reader.waitFor((e) => e.id === last);
    assert.deepEqual(reader.events.slice(1).map((e) => e.json?.content), ['b1', 'a2', 'b2']);
    reader.close();
  });

  it('after a resume still delivers a foreign message whose id is not a log id', async () => {
    await using pub = publisher('r8', 'rewrite');
    const from = await pub.publishToken('a', 'a');
    const reader = await watch('r8', 'rewrite', { 'Last-Event-ID': from });
    await inspector.publish('ai_story:project:r8:stage:rewrite', JSON.stringify({ id: 'job-7', type: 'token', content: 'foreign' }));
    const next = await pub.publishToken('b', 'ab');
    await reader.waitFor((e) => e.id === next);
    assert.deepEqual(reader.events.slice(1).map((e) => e.json?.content), ['foreign', 'b']);
    reader.close();
  });

  it('sends a reset with the latest state of each stage when the id is no longer in the log', async () => {
    await using a = publisher('r5', 'rewrite');
    await a.publishStageUpdate('processing', 0, 'go');
    await a.publishToken('x', 'x');
    const newest = await a.publishToken('y', 'xy');
    const reader = await watch('r5', undefined, { 'Last-Event-ID': '1-0' });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    assert.equal(reset.id, newest, 'the reset carries the newest id, so the next resume continues from there');
    const stages = reset.json?.stages as Record<string, Record<string, Record<string, unknown>>>;
    assert.equal(stages.rewrite?.token?.full_text, 'xy');
    assert.equal(stages.rewrite?.stage_update?.status, 'processing');
    const later = await a.publishToken('z', 'xyz');
    await reader.waitFor((e) => e.id === later);
    assert.deepEqual(reader.events.map((e) => e.event), ['connected', 'reset', 'token']);
    reader.close();
  });

  it('sends a reset for a malformed Last-Event-ID instead of failing', async () => {
    const reader = await watch('r6', 'rewrite', { 'Last-Event-ID': 'not-an-id' });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    assert.deepEqual(reset.json?.stages, {});
    reader.close();
  });

  it('sends a reset when the capped log has dropped the id', async () => {
    const small = await startHarness({ broker: 'memory', logMaxLen: 3 });
    try {
      await using pub = new StreamPublisher({ projectId: 'r7', stage: 'rewrite', broker: small.broker });
      const old = await pub.publishToken('0', '0');
      for (let i = 1; i < 6; i++) await pub.publishToken(String(i), '');
      const reader = await openStream(streamUrl(small.url, 'r7', 'rewrite'), { 'Last-Event-ID': old });
      const reset = await reader.waitFor((e) => e.event === 'reset');
      assert.equal(reset.json?.reason, 'expired');
      reader.close();
    } finally {
      await small.close();
    }
  });
});

describe('resources', () => {
  it('drops the Redis subscriptions and the heartbeat timer when the last client leaves', async () => {
    const readers = await Promise.all([watch('c1', 'rewrite'), watch('c1', 'rewrite'), watch('c1'), watch('c2')]);
    assert.deepEqual(await inspector.pubsub('NUMSUB', 'ai_story:project:c1:stage:rewrite'), ['ai_story:project:c1:stage:rewrite', 1]);
    // Both projects watched on all stages share the broker's one pattern.
    assert.equal(Number(await inspector.pubsub('NUMPAT')), 1);
    for (const reader of readers) reader.close();
    await waitUntil(() => h.server.hub.size === 0, 'every stream closed');
    await waitUntil(async () => Number(await inspector.pubsub('NUMPAT')) === 0, 'NUMPAT is 0');
    await waitUntil(async () => ((await inspector.pubsub('NUMSUB', 'ai_story:project:c1:stage:rewrite')) as unknown[])[1] === 0, 'NUMSUB is 0');
    assert.equal(h.server.hub.idle, true, 'no stream, subscription or heartbeat timer left');
    assert.equal(await inspector.pubsub('CHANNELS', 'ai_story:*').then((c) => (c as string[]).length), 0);
  });
});

describe('heartbeats', () => {
  it('writes a ": ping" comment every SSE_HEARTBEAT_MS: never sooner, and not wildly later', async () => {
    const heartbeatMs = 100;
    const gaps = 10;
    const fast = await startHarness({ broker: 'memory', settings: { heartbeatMs } });
    try {
      const reader = await openStream(streamUrl(fast.url, 'hb', 'rewrite'));
      await reader.waitForRaw(': ping\n\n: ping\n\n');
      await reader.waitForComments(gaps + 1);
      const pings = reader.comments.slice(0, gaps + 1);
      assert.deepEqual(new Set(pings.map((comment) => comment.text)), new Set(['ping']));
      // Measured over ten intervals, not one gap, so one late read does not decide. The hub's timer never fires
      // early and never catches up after a late tick, so ten gaps take at least ten intervals on the server; a
      // whole interval of slack covers the first ping being read later than the last. The upper bound only
      // catches a wildly wrong interval (seconds for milliseconds, the 15 s default): on a loaded machine
      // timers run late, so it leaves two seconds over the one expected.
      const span = pings.at(-1)!.at - pings[0]!.at;
      assert.ok(span >= (gaps - 1) * heartbeatMs, `${gaps} gaps took ${span.toFixed(0)} ms: pings come more often than every ${heartbeatMs} ms`);
      assert.ok(span <= 3 * gaps * heartbeatMs, `${gaps} gaps took ${span.toFixed(0)} ms: pings come far less often than every ${heartbeatMs} ms`);
      reader.close();
    } finally {
      await fast.close();
    }
  });
});
