/**
 * Linear tokens (a piece and its offset, no full_text) in the hub and the subscriber: every client in the
 * original format sees byte for byte what the original format sent, live and on resume; compact clients get the
 * linear frames; nothing is ever rendered with a wrong text.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { logKey } from '../src/channels.js';
import { StreamSubscriber } from '../src/subscriber.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream, type StreamReader } from './sse-reader.js';

let h: Harness;
let raw: Redis;
before(async () => {
  h = await startHarness();
  raw = new Redis(h.redis!.url);
});
after(async () => {
  raw.disconnect();
  await h.close();
});

/** What the original format carried for a token: its fields in the original order, full_text last. */
interface Sent {
  id: string;
  original: string;
}

const PIECES = ['Once', ' upon', ' a time', ' 故事', ' 🐉 dragons', '\n"quoted"', ' end.'];

/** Publishes `pieces` as linear tokens of one run of `stage`; returns what the original format would have sent. */
async function publishRun(projectId: string, stage: string, pieces: readonly string[], from = ''): Promise<Sent[]> {
  const sent: Sent[] = [];
  let text = from;
  for (const content of pieces) {
    const offset = text.length;
    text += content;
    const timestamp = Date.now() / 1000;
    const linear = JSON.stringify({ type: 'token', stage, project_id: projectId, timestamp, content, offset });
    const id = await h.broker.publish(projectId, stage, 'token', linear, { content, offset });
    sent.push({ id, original: JSON.stringify({ id, type: 'token', stage, project_id: projectId, timestamp, content, full_text: text }) });
  }
  return sent;
}

/** An old-format entry, as a worker of the previous version wrote it: XADD of the whole token into the log. */
async function xaddOld(projectId: string, stage: string, content: string, fullText: string): Promise<Sent> {
  const timestamp = Date.now() / 1000;
  const data = JSON.stringify({ type: 'token', stage, project_id: projectId, timestamp, content, full_text: fullText });
  const id = (await raw.xadd(logKey('ai_story', projectId), '*', 'stage', stage, 'data', data)) as string;
  return { id, original: `{"id":"${id}",${data.slice(1)}` };
}

const tokens = (reader: StreamReader) => reader.events.filter((e) => e.event === 'token');
const lastOf = (sent: readonly Sent[]) => sent.at(-1)!.id;

async function tokensUntil(url: string, last: string, headers: Record<string, string> = {}): Promise<StreamReader> {
  const reader = await openStream(url, headers);
  await reader.waitFor((e) => e.id === last);
  return reader;
}

describe('a client in the original format', () => {
  it('receives byte for byte the events of the original format, live, on one stage and on all stages', async () => {
    const stage = await openStream(streamUrl(h.url, 'l1', 'rewrite'));
    const all = await openStream(streamUrl(h.url, 'l1'));
    await stage.waitFor((e) => e.event === 'connected');
    await all.waitFor((e) => e.event === 'connected');
    try {
      const sent = [...(await publishRun('l1', 'rewrite', PIECES)), ...(await publishRun('l1', 'rewrite', ['Again', ' from zero']))];
      const other = await publishRun('l1', 'outline', PIECES.slice(0, 3));
      await stage.waitFor((e) => e.id === lastOf(sent));
      await all.waitFor((e) => e.id === lastOf(other));
      assert.deepEqual(tokens(stage).map((e) => e.data), sent.map((s) => s.original));
      assert.deepEqual(tokens(all).map((e) => e.data), [...sent, ...other].map((s) => s.original));
      for (const event of tokens(stage)) assert.equal(stage.raw.includes(`id: ${event.id}\nevent: token\ndata: ${event.data}\n\n`), true);
    } finally {
      stage.close();
      all.close();
    }
  });

  it('resumes across a restart of the stage with the same bytes, or a reset when a run\'s text is gone', async () => {
    const first = await publishRun('l2', 'rewrite', PIECES);
    const other = await publishRun('l2', 'outline', ['a', 'b']);
    const second = await publishRun('l2', 'rewrite', ['Second', ' run', ' goes on']);
    const resume = (after: Sent, stage?: string) => tokensUntil(streamUrl(h.url, 'l2', stage), lastOf(second), { 'Last-Event-ID': after.id });
    // The replay holds the second run's start: exact.
    for (const [after, expected] of [[first.at(-1)!, second], [second[0]!, second.slice(1)], [second[1]!, second.slice(2)]] as const) {
      const reader = await resume(after, 'rewrite');
      reader.close();
      assert.deepEqual(tokens(reader).map((e) => e.data), expected.map((s) => s.original));
    }
    const all = await resume(first.at(-1)!);
    all.close();
    assert.deepEqual(tokens(all).map((e) => e.data), [...other, ...second].map((s) => s.original));
    // Inside the first run: its text was overwritten by the second run, and its start is before the resume point.
    const lost = await resume(first[1]!, 'rewrite');
    lost.close();
    assert.equal(tokens(lost).length, 0, 'no token of the first run with a made-up text');
    const reset = lost.events.find((e) => e.event === 'reset')!;
    assert.equal(reset.json!.reason, 'expired');
    assert.deepEqual((reset.json!.stages as Record<string, Record<string, unknown>>).rewrite!.token, JSON.parse(second.at(-1)!.original));
  });

  it('resumes mid-run, the kept text giving the text of tokens whose run began before the resume point', async () => {
    const sent = await publishRun('l3', 'rewrite', PIECES);
    for (const from of [0, 2, 4, 5]) {
      const reader = await tokensUntil(streamUrl(h.url, 'l3', 'rewrite'), lastOf(sent), { 'Last-Event-ID': sent[from]!.id });
      reader.close();
      assert.deepEqual(tokens(reader).map((e) => e.data), sent.slice(from + 1).map((s) => s.original), `after token ${from}`);
    }
    const all = await tokensUntil(streamUrl(h.url, 'l3'), lastOf(sent), { 'Last-Event-ID': sent[1]!.id });
    all.close();
    assert.deepEqual(tokens(all).map((e) => e.data), sent.slice(2).map((s) => s.original));
  });

  it('replays a mixed log of old-format and linear entries exactly', async () => {
    const start = await publishRun('l4', 'intro', ['x']);
    const old = [await xaddOld('l4', 'rewrite', 'Old', 'Old'), await xaddOld('l4', 'rewrite', ' worker', 'Old worker')];
    const linear = await publishRun('l4', 'rewrite', ['New', ' worker']);
    const reader = await tokensUntil(streamUrl(h.url, 'l4', 'rewrite'), lastOf(linear), { 'Last-Event-ID': start[0]!.id });
    reader.close();
    assert.deepEqual(tokens(reader).map((e) => e.data), [...old, ...linear].map((s) => s.original));
  });

  it('joins mid-answer (a new topic) and gets the right full_text from its first token', async () => {
    const before = await publishRun('l5', 'rewrite', PIECES.slice(0, 4));
    const reader = await openStream(streamUrl(h.url, 'l5', 'rewrite'));
    await reader.waitFor((e) => e.event === 'connected');
    const text = JSON.parse(before.at(-1)!.original).full_text as string;
    const later = await publishRun('l5', 'rewrite', PIECES.slice(4), text);
    await reader.waitFor((e) => e.id === lastOf(later));
    reader.close();
    assert.deepEqual(tokens(reader).map((e) => e.data), later.map((s) => s.original));
  });

  it('passes a foreign PUBLISH in the original format through unchanged', async () => {
    const reader = await openStream(streamUrl(h.url, 'l6', 'rewrite'));
    await reader.waitFor((e) => e.event === 'connected');
    const foreign = '{"type":"token","stage":"rewrite","project_id":"l6","timestamp":1,"content":"b","full_text":"ab"}';
    await raw.publish('ai_story:project:l6:stage:rewrite', foreign);
    const event = await reader.waitFor((e) => e.event === 'token');
    reader.close();
    assert.equal(event.data, foreign);
  });

  it('never renders a token whose offset does not continue the text: its stream ends, and the resume is exact', async () => {
    const sent = await publishRun('l7', 'rewrite', PIECES.slice(0, 3));
    const reader = await openStream(streamUrl(h.url, 'l7', 'rewrite'));
    const compact = await openStream(`${streamUrl(h.url, 'l7', 'rewrite')}?compact=1`);
    await reader.waitFor((e) => e.event === 'connected');
    await compact.waitFor((e) => e.event === 'connected');
    // A linear-looking token that skips ahead (as if one was lost), published raw: no log entry.
    const bad = '{"type":"token","stage":"rewrite","project_id":"l7","timestamp":1,"content":"?","offset":999}';
    await raw.publish('ai_story:project:l7:stage:rewrite', bad);
    await reader.ended;
    assert.equal(tokens(reader).length, 0, 'nothing was rendered for it');
    // The compact client gets it as it came, and checks the offset itself.
    const got = await compact.waitFor((e) => e.event === 'token');
    assert.equal(got.data, bad);
    compact.close();
    const more = await publishRun('l7', 'rewrite', PIECES.slice(3, 5), JSON.parse(sent.at(-1)!.original).full_text);
    const resumed = await tokensUntil(streamUrl(h.url, 'l7', 'rewrite'), lastOf(more), { 'Last-Event-ID': sent.at(-1)!.id });
    resumed.close();
    assert.deepEqual(tokens(resumed).map((e) => e.data), more.map((s) => s.original));
  });

  it('gets a reset whose latest token carries full_text and no offset', async () => {
    const sent = await publishRun('l8', 'rewrite', PIECES);
    const reader = await openStream(streamUrl(h.url, 'l8', 'rewrite'), { 'Last-Event-ID': '1-0' });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    reader.close();
    const token = (reset.json!.stages as Record<string, Record<string, unknown>>).rewrite!.token;
    assert.deepEqual(token, JSON.parse(sent.at(-1)!.original));
  });
});

describe('a compact client', () => {
  it('gets the linear frames as they are, after each stage\'s first token whole', async () => {
    const compact = await openStream(`${streamUrl(h.url, 'l9', 'rewrite')}?compact=1`);
    await compact.waitFor((e) => e.event === 'connected');
    const sent = await publishRun('l9', 'rewrite', PIECES);
    await compact.waitFor((e) => e.id === lastOf(sent));
    const [first, ...rest] = tokens(compact);
    assert.equal(first!.data, sent[0]!.original);
    const linear = await raw.xrange(logKey('ai_story', 'l9'), '-', '+');
    assert.deepEqual(rest.map((e) => e.data), linear.slice(1).map(([id, fields]) => `{"id":"${id}",${fields[3]!.slice(1)}`));
    // On resume mid-run, the first replayed token goes whole too.
    const resumed = await tokensUntil(`${streamUrl(h.url, 'l9', 'rewrite')}?compact=1`, lastOf(sent), { 'Last-Event-ID': sent[2]!.id });
    resumed.close();
    compact.close();
    assert.equal(tokens(resumed)[0]!.data, sent[3]!.original);
    assert.equal(tokens(resumed)[1]!.json!.offset, JSON.parse(sent[3]!.original).full_text.length);
  });
});

describe('StreamSubscriber', () => {
  it('gives linear tokens their full_text back, in the original shape, also when it subscribes mid-answer', async () => {
    const before = await publishRun('l10', 'rewrite', PIECES.slice(0, 3));
    await using subscriber = new StreamSubscriber({ projectId: 'l10', stage: 'rewrite', broker: h.broker });
    await subscriber.ready;
    const later = await publishRun('l10', 'rewrite', PIECES.slice(3), JSON.parse(before.at(-1)!.original).full_text);
    const got: unknown[] = [];
    for await (const message of subscriber.listen({ timeoutMs: 5000 })) {
      got.push(message);
      if (got.length === later.length) break;
    }
    assert.deepEqual(got, later.map((s) => JSON.parse(s.original)));
    assert.deepEqual(Object.keys(got[0] as object), ['id', 'type', 'stage', 'project_id', 'timestamp', 'content', 'full_text']);
  });
});
