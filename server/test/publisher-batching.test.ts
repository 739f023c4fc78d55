/**
 * Batched publishing (issue 17, item 4): StreamPublisher's `batch` option against a private redis-server and a real
 * hub: tokens coalesced by count and by time, flushed before every other message and on close, the exact text as
 * viewers see it, one sequence number per batch, and failures that surface instead of vanishing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Broker, PublishControl } from '../src/broker/broker.js';
import { BrokerClosedError, BrokerUnavailableError, InvalidArgumentError, TokenOffsetError } from '../src/broker/errors.js';
import { compareLogIds } from '../src/broker/log-id.js';
import { StreamPublisher, type StreamPublisherOptions } from '../src/publisher.js';
import { StreamSubscriber, type SubscriberMessage } from '../src/subscriber.js';
import { stageChannel } from '../src/channels.js';
import { recorder, uniqueProject } from './broker.contract.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream } from './sse-reader.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
type Parsed = { id: string; type: string; content?: string; offset?: number; full_text?: string; timestamp: number; [key: string]: unknown };

async function listen(project: string, stage = 'rewrite') {
  const rec = recorder();
  await h.broker.subscribe(stageChannel(h.broker.prefix, project, stage), rec.listener);
  return { ...rec, parsed: () => rec.payloads().map((p) => JSON.parse(p) as Parsed) };
}

function publisher(project: string, options: Partial<StreamPublisherOptions> = {}): StreamPublisher {
  return new StreamPublisher({ projectId: project, stage: 'rewrite', broker: h.broker, ...options });
}

/** The broker with publish replaced: to lose replies and fail publishes on purpose. */
function wrapped(inner: Broker, publish: (call: Parameters<Broker['publish']>, real: Broker['publish']) => Promise<string>): Broker {
  const real = inner.publish.bind(inner) as Broker['publish'];
  return new Proxy(inner, {
    get(target, key) {
      if (key === 'publish') return (...call: Parameters<Broker['publish']>) => publish(call, real);
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('StreamPublisher batching', () => {
  it('is off by default: one message per token', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    await using pub = publisher(project);
    for (const piece of ['a', 'b', 'c']) assert.match(await pub.publishToken(piece), /^\d+-\d+$/);
    await rec.waitFor(3);
    assert.deepEqual(rec.parsed().map((m) => m.content), ['a', 'b', 'c']);
    assert.equal(await pub.flush(), undefined);
  });

  it('refuses bad batch options', () => {
    for (const batch of [{ maxTokens: 0 }, { maxTokens: 1.5 }, { maxDelayMs: -1 }, { maxDelayMs: Number.NaN }, { maxTokens: '10' }, [] as never]) {
      assert.throws(() => publisher('p', { batch: batch as never }), InvalidArgumentError, JSON.stringify(batch));
    }
  });

  it('coalesces by count: every maxTokens tokens one message with the joined content and the first offset', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    await using pub = publisher(project, { batch: { maxTokens: 3, maxDelayMs: 60_000 } });
    const pieces = ['从前', '😀', ' upon', ' a', ' time', ',', ' the', ' end'];
    let text = '';
    const ids: string[] = [];
    for (const piece of pieces) ids.push(await pub.publishToken(piece, (text += piece)));
    // The third and the sixth filled a batch and resolved to its id; the others were buffered.
    assert.deepEqual(ids.map((id) => (id === '' ? '' : 'id')), ['', '', 'id', '', '', 'id', '', '']);
    await rec.waitFor(2);
    assert.equal(rec.heard.length, 2);
    const last = await pub.flush();
    assert.ok(last);
    await rec.waitFor(3);
    const heard = rec.parsed();
    assert.deepEqual(heard.map((m) => [m.content, m.offset]), [
      ['从前😀 upon', 0],
      [' a time,', '从前😀 upon'.length],
      [' the end', '从前😀 upon a time,'.length],
    ]);
    assert.deepEqual(heard.map((m) => m.id), [ids[2], ids[5], last]);
    assert.deepEqual(await h.broker.texts(project, 'rewrite'), new Map([['rewrite', { text, id: last }]]));
    assert.equal(await pub.flush(), undefined, 'nothing left to flush');
  });

  it('coalesces by time: the buffer goes out maxDelayMs after its first token, with no further call', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    await using pub = publisher(project, { batch: { maxTokens: 1000, maxDelayMs: 40 } });
    const started = performance.now();
    assert.equal(await pub.publishToken('Once', 'Once'), '');
    await sleep(10);
    assert.equal(await pub.publishToken(' upon', 'Once upon'), '');
    await rec.waitFor(1, 2000);
    const waited = performance.now() - started;
    assert.ok(waited >= 35, `sent after ${waited.toFixed(0)} ms`);
    assert.deepEqual(rec.parsed().map((m) => [m.content, m.offset]), [['Once upon', 0]]);
    // The next token starts a new batch, and a new timer.
    await pub.publishToken(' a time', 'Once upon a time');
    await rec.waitFor(2, 2000);
    assert.deepEqual(rec.parsed().map((m) => [m.content, m.offset]), [['Once upon', 0], [' a time', 9]]);
    // Its timestamp is its first token's.
    assert.ok(rec.parsed()[0]!.timestamp * 1000 <= Date.now());
  });

  it('keeps the order across types: every other message sends the buffered tokens first', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    await using pub = publisher(project, { batch: { maxTokens: 100, maxDelayMs: 60_000 } });
    await pub.publishStageUpdate('processing', 0, 'rewriting');
    await pub.publishToken('a');
    await pub.publishToken('b');
    await pub.publishProgress(1, 3, 'one');
    await pub.publishToken('c');
    await pub.publish('checkpoint', { step: 1 });
    await pub.publishToken('d');
    await pub.publishToken('e');
    await pub.publishStageUpdate('completed', 100, 'rewritten');
    await pub.publishToken('f');
    await pub.publishDone('abcdef');
    await rec.waitFor(9);
    const heard = rec.parsed();
    assert.deepEqual(heard.map((m) => (m.type === 'token' ? `token:${m.content}` : m.type)), [
      'stage_update', 'token:ab', 'progress', 'token:c', 'checkpoint', 'token:de', 'stage_update', 'token:f', 'done',
    ]);
    for (let i = 1; i < heard.length; i++) assert.ok(compareLogIds(heard[i - 1]!.id, heard[i]!.id) < 0);
  });

  it('keeps the order when nothing is awaited (calls fired in a row)', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    await using pub = publisher(project, { batch: { maxTokens: 2, maxDelayMs: 5 } });
    const calls: Promise<string>[] = [];
    let text = '';
    for (let i = 0; i < 25; i++) {
      calls.push(pub.publishToken(`${i};`, (text += `${i};`)));
      if (i % 7 === 3) calls.push(pub.publishProgress(i, 25));
    }
    calls.push(pub.publishDone(text));
    await Promise.all(calls);
    // Everything was published; wait until the done (the last) was heard.
    for (const deadline = Date.now() + 5000; !rec.payloads().some((p) => p.includes('"type":"done"')) && Date.now() < deadline; ) await sleep(5);
    const heard = rec.parsed();
    assert.equal(heard.at(-1)!.type, 'done');
    assert.equal(heard.filter((m) => m.type === 'token').map((m) => m.content).join(''), text);
    // Each progress comes right after the token that preceded its call.
    for (const [i, m] of heard.entries()) if (m.type === 'progress') assert.ok(heard[i - 1]!.content!.endsWith(`${m.current};`));
    for (let i = 1; i < heard.length; i++) assert.ok(compareLogIds(heard[i - 1]!.id, heard[i]!.id) < 0);
  });

  it('flushes on close() and at the end of an `await using` scope, and refuses tokens afterwards', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    const pub = publisher(project, { batch: { maxTokens: 100, maxDelayMs: 60_000 } });
    await pub.publishToken('left');
    await pub.publishToken(' behind');
    await pub.close();
    await rec.waitFor(1);
    assert.deepEqual(rec.parsed().map((m) => m.content), ['left behind']);
    await assert.rejects(pub.publishToken(' more'), BrokerClosedError);
    await pub.close();
    {
      await using scoped = publisher(project, { batch: true });
      await scoped.publishToken(' again', 'left behind again');
    }
    await rec.waitFor(2);
    assert.deepEqual(rec.parsed().map((m) => [m.content, m.offset]), [['left behind', 0], [' again', 11]]);
    assert.equal((await h.broker.texts(project, 'rewrite')).get('rewrite')!.text, 'left behind again');
  });

  it('starts a new batch for a token that does not continue it (a new run of the stage)', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    await using pub = publisher(project, { batch: { maxTokens: 100, maxDelayMs: 60_000 } });
    await pub.publishToken('first', 'first');
    await pub.publishToken(' try', 'first try');
    await pub.publishToken('again', 'again');
    await pub.publishToken('!', 'again!');
    await pub.flush();
    await rec.waitFor(2);
    assert.deepEqual(rec.parsed().map((m) => [m.content, m.offset]), [['first try', 0], ['again!', 0]]);
    assert.equal((await h.broker.texts(project, 'rewrite')).get('rewrite')!.text, 'again!');
  });

  for (const linearTokens of [true, false]) {
    it(`gives viewers the exact text through a hub stream and the subscriber (${linearTokens ? 'linear tokens' : 'original format'})`, async () => {
      const project = uniqueProject();
      const plain = await openStream(streamUrl(h.url, project, 'rewrite'));
      const compact = await openStream(`${streamUrl(h.url, project, 'rewrite')}?compact=1`);
      await plain.waitFor((e) => e.event === 'connected');
      await compact.waitFor((e) => e.event === 'connected');
      await using subscriber = new StreamSubscriber({ projectId: project, stage: 'rewrite', broker: h.broker });
      await subscriber.ready;
      const rec = await listen(project);
      const pub = publisher(project, { linearTokens, batch: { maxTokens: 4, maxDelayMs: 20 } });
      const pieces = Array.from({ length: 37 }, (_, i) => [`词${i}`, ' 🇫🇷', ' "q"\n', ` é${i}`][i % 4]!);
      let text = '';
      for (const [i, piece] of pieces.entries()) {
        await pub.publishToken(piece, (text += piece));
        if (i % 9 === 8) await sleep(30); // lets the timer send a short batch now and then
      }
      await pub.publishDone(text);
      await pub.close();
      const done = await plain.waitFor((e) => e.event === 'done');
      await compact.waitFor((e) => e.event === 'done');
      const tokens = plain.events.filter((e) => e.event === 'token').map((e) => e.json as Parsed);
      assert.ok(tokens.length < pieces.length && tokens.length >= Math.ceil(pieces.length / 4), `${tokens.length} token events`);
      // Each event's full_text is the text up to and including it, and they add up to the whole text.
      let shown = '';
      for (const token of tokens) {
        shown += token.content;
        assert.equal(token.full_text, shown);
      }
      assert.equal(shown, text);
      assert.equal((done.json as Parsed).full_text, text);
      // The compact stream carries the pieces; in the original format it is free to send full_text too.
      assert.equal(compact.events.filter((e) => e.event === 'token').map((e) => (e.json as Parsed).content).join(''), text);
      // The subscriber gives linear tokens their full_text back.
      const heard: SubscriberMessage[] = [];
      for await (const message of subscriber.listen({ timeoutMs: 5000 })) {
        heard.push(message);
        if (message.type === 'done') break;
      }
      const subscriberTokens = heard.filter((m) => m.type === 'token') as unknown as Parsed[];
      assert.equal(subscriberTokens.at(-1)!.full_text, text);
      assert.equal(subscriberTokens.map((m) => m.content).join(''), text);
      // The raw channel: linear form (offset last, no full_text) or the original (full_text, no offset).
      await rec.waitFor(tokens.length + 1);
      const raw = rec.parsed().filter((m) => m.type === 'token');
      assert.ok(raw.every((m) => (linearTokens ? m.full_text === undefined && Number.isInteger(m.offset) : typeof m.full_text === 'string' && m.offset === undefined)));
      plain.close();
      compact.close();
    });
  }

  it('sends each batch with one sequence number, so a retried batch whose reply was lost is logged once', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    const controls: (PublishControl | undefined)[] = [];
    let lose = 1;
    const broker = wrapped(h.broker, async (call, real) => {
      controls.push(call[5]);
      const id = await real(...call);
      // The first batch lands, but its reply is lost: the publisher retries it with the same sequence number.
      if (call[2] === 'token' && lose-- > 0) throw new BrokerUnavailableError('reply lost', { sent: true });
      return id;
    });
    const pub = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, batch: { maxTokens: 3, maxDelayMs: 60_000 } });
    await pub.publishStageUpdate('processing', 0);
    let text = '';
    for (const piece of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) await pub.publishToken(piece, (text += piece));
    await pub.publishDone(text);
    await pub.close();
    await rec.waitFor(5);
    await sleep(50);
    assert.deepEqual(rec.parsed().map((m) => m.content ?? m.type), ['stage_update', 'abc', 'def', 'g', 'done']);
    // stage_update 1, batch 2 (twice: the retry), batch 3, batch 4, done 5: one number per batch, in order.
    assert.deepEqual(controls.map((c) => c?.seq), [1, 2, 2, 3, 4, 5]);
    assert.ok(controls.every((c) => c?.producer === pub.producerId && c.run === pub.producerId && c.leaseMs === 30_000));
    const log = await h.broker.replay(project, rec.parsed()[0]!.id);
    assert.deepEqual(log.entries.map((e) => e.id), rec.parsed().slice(1).map((m) => m.id));
    assert.equal((await h.broker.texts(project, 'rewrite')).get('rewrite')!.text, text);
  });

  it('keeps the lease: batched tokens renew it, and a stage that goes on past the lease is not lost', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    await using pub = publisher(project, { leaseMs: 900, batch: { maxTokens: 5, maxDelayMs: 50 } });
    let text = '';
    // 2.4 s of tokens, more than two leases; the hub's reaper would publish worker_lost if the lease lapsed.
    for (let i = 0; i < 40; i++) {
      await pub.publishToken(`${i} `, (text += `${i} `));
      await sleep(60);
    }
    await pub.publishDone(text);
    await rec.waitFor(2);
    await sleep(100);
    const types = rec.parsed().map((m) => m.type);
    assert.ok(!types.includes('error'), types.join(','));
    assert.equal(types.at(-1), 'done');
    assert.equal(rec.parsed().filter((m) => m.type === 'token').map((m) => m.content).join(''), text);
  });

  it('surfaces a batch that failed in the background at the next call, which did not take its message; the batch is sent again', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    let down = true;
    const broker = wrapped(h.broker, async (call, real) => {
      if (down) throw new BrokerUnavailableError('Redis is down', { sent: false });
      return real(...call);
    });
    const pub = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, retries: 0, batch: { maxTokens: 100, maxDelayMs: 10 } });
    await pub.publishToken('Once', 'Once');
    await sleep(60); // the timer's flush fails
    await assert.rejects(pub.publishToken(' upon', 'Once upon'), BrokerUnavailableError);
    // Reported once; the failed batch is still first in line, and this call's token was not taken.
    down = false;
    await pub.publishToken(' upon', 'Once upon');
    await pub.publishDone('Once upon');
    await rec.waitFor(3);
    assert.deepEqual(rec.parsed().map((m) => [m.type, m.content]), [['token', 'Once'], ['token', ' upon'], ['done', undefined]]);
    await pub.close();
  });

  it('rejects a non-token message and flush() whose flush failed, without sending the message', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    let down = true;
    const broker = wrapped(h.broker, async (call, real) => {
      if (down) throw new BrokerUnavailableError('Redis is down', { sent: false });
      return real(...call);
    });
    const pub = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, retries: 0, batch: { maxTokens: 100, maxDelayMs: 60_000 } });
    await pub.publishToken('a', 'a');
    await assert.rejects(pub.publishDone('a'), BrokerUnavailableError);
    await assert.rejects(pub.flush(), BrokerUnavailableError);
    down = false;
    await pub.publishDone('a');
    await rec.waitFor(2);
    assert.deepEqual(rec.parsed().map((m) => m.type), ['token', 'done']);
    await pub.close();
  });

  it('close() rejects when the buffered tokens cannot be sent, and closes all the same', async () => {
    const project = uniqueProject();
    const broker = wrapped(h.broker, async () => {
      throw new BrokerUnavailableError('Redis is down', { sent: false });
    });
    const pub = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, retries: 0, batch: true });
    await pub.publishToken('lost?');
    await assert.rejects(pub.close(), BrokerUnavailableError);
    await pub.close();
    await assert.rejects(pub.publishToken('x'), BrokerClosedError);
  });

  it('close() sends again a batch that failed in the background and resolves when it lands', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    let down = true;
    const broker = wrapped(h.broker, async (call, real) => {
      if (down) throw new BrokerUnavailableError('Redis is down', { sent: false });
      return real(...call);
    });
    const pub = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, retries: 0, batch: { maxTokens: 100, maxDelayMs: 5 } });
    await pub.publishToken('saved');
    await sleep(50);
    down = false;
    await pub.close();
    await rec.waitFor(1);
    assert.deepEqual(rec.parsed().map((m) => m.content), ['saved']);
  });

  it('reports a batch the script refuses (TokenOffsetError) and drops it', async () => {
    const project = uniqueProject();
    await using other = publisher(project);
    await other.publishToken('abc', 'abc');
    // This publisher believes the text is "xyz…": its batch (offset 3, a join) is fine; then the other one writes.
    await using pub = publisher(project, { batch: { maxTokens: 100, maxDelayMs: 60_000 } });
    await pub.publishToken('d', 'abcd');
    await pub.flush();
    await other.publishToken('!', 'abcd!');
    await pub.publishToken('e', 'abcde');
    await assert.rejects(pub.flush(), TokenOffsetError);
    assert.equal(await pub.flush(), undefined);
    assert.equal((await h.broker.texts(project, 'rewrite')).get('rewrite')!.text, 'abcd!');
  });
});

describe('StreamPublisher batching and cancel', () => {
  it('refuses the buffered tokens of a cancelled stage, and still sends publishCancelled', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    await using pub = publisher(project, { batch: { maxTokens: 100, maxDelayMs: 60_000 } });
    await pub.publishStageUpdate('processing', 0);
    await pub.publishToken('never', 'never');
    const res = await fetch(`${h.url}/api/v1/projects/${project}/stages/rewrite/cancel/`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    assert.equal(res.status, 200);
    await rec.waitFor(2);
    await pub.publishCancelled('stopped at the first token');
    await rec.waitFor(3);
    assert.deepEqual(rec.parsed().map((m) => m.type), ['stage_update', 'cancelled', 'stage_update']);
    assert.equal(pub.cancelled, true);
  });
});
