import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Broker, TokenPiece } from '../src/broker/broker.js';
import { recorder, stagesOf, uniqueProject } from './broker.contract.js';
import { BrokerClosedError, BrokerUnavailableError, InvalidArgumentError, TokenOffsetError } from '../src/broker/errors.js';
import { MemoryBroker } from '../src/broker/memory-broker.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { StreamPublisher } from '../src/publisher.js';
import { stageChannel } from '../src/channels.js';
import { freePort, startRedis, type TestRedis } from './redis-server.js';

let redis: TestRedis;
let broker: RedisBroker;
before(async () => {
  redis = await startRedis();
  broker = new RedisBroker({ url: redis.url });
});
after(async () => {
  await broker.close();
  await redis.close();
});

const NOW = 1_700_000_000_123;

describe('StreamPublisher', () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((thing) => thing.close()));
  });
  const publisher = (projectId: string, stage = 'rewrite', on: Broker = broker) => {
    const created = new StreamPublisher({ projectId, stage, broker: on, now: () => NOW });
    open.push(created);
    return created;
  };
  async function listen(projectId: string, stage = 'rewrite') {
    const rec = recorder();
    await broker.subscribe(stageChannel(broker.prefix, projectId, stage), rec.listener);
    return rec;
  }

  it('publishes each message type with id, type, stage, project_id and timestamp (seconds) first, resolving to the id', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    const pub = publisher(project);
    const head = (id: string, type: string) => `{"id":"${id}","type":"${type}","stage":"rewrite","project_id":"${project}","timestamp":1700000000.123`;
    const ids = [
      await pub.publishToken('Once', 'Once'),
      await pub.publishStageUpdate('processing', 40, 'halfway'),
      await pub.publishProgress(1, 3, 'image 1'),
      await pub.publishDone('Once upon a time', { tokens_used: 4 }),
      await pub.publishError('model timed out', 2),
      await pub.publish('checkpoint', { step: 7, nested: { ok: true } }),
    ];
    await rec.waitFor(ids.length);
    assert.deepEqual(rec.payloads(), [
      `${head(ids[0]!, 'token')},"content":"Once","offset":0}`,
      `${head(ids[1]!, 'stage_update')},"status":"processing","progress":40,"message":"halfway"}`,
      `${head(ids[2]!, 'progress')},"current":1,"total":3,"progress":33,"item_name":"image 1"}`,
      `${head(ids[3]!, 'done')},"full_text":"Once upon a time","metadata":{"tokens_used":4}}`,
      `${head(ids[4]!, 'error')},"error":"model timed out","retry_count":2}`,
      `${head(ids[5]!, 'checkpoint')},"step":7,"nested":{"ok":true}}`,
    ]);
  });

  it('derives progress as a rounded, capped percent, and 0 for a total of 0', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    const pub = publisher(project);
    for (const [current, total] of [[2, 3], [1, 3], [0, 0], [5, 4], [1, 200]] as const) await pub.publishProgress(current, total);
    await rec.waitFor(5);
    assert.deepEqual(rec.payloads().map((p) => [JSON.parse(p).progress, JSON.parse(p).item_name]), [[67, ''], [33, ''], [0, ''], [100, ''], [1, '']]);
  });

  it('defaults the message, metadata and retry count, and takes an Error’s message', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    const pub = publisher(project);
    await pub.publishStageUpdate('pending', 0);
    await pub.publishDone('all');
    await pub.publishError(new Error('boom'));
    await rec.waitFor(3);
    const [update, done, error] = rec.payloads().map((p) => JSON.parse(p));
    assert.equal(update.message, '');
    assert.deepEqual(done.metadata, {});
    assert.deepEqual([error.error, error.retry_count], ['boom', 0]);
  });

  it('refuses invalid ids, statuses, numbers and fields with InvalidArgumentError, publishing nothing', async () => {
    assert.throws(() => new StreamPublisher({ projectId: 'a b', stage: 'rewrite', broker }), InvalidArgumentError);
    assert.throws(() => new StreamPublisher({ projectId: 'p', stage: 'x:*', broker }), InvalidArgumentError);
    assert.throws(() => new StreamPublisher({ projectId: 'p', stage: 's', broker, prefix: 'other' }), InvalidArgumentError);
    assert.throws(() => new StreamPublisher({ projectId: 'p', stage: 's', broker, redisUrl: redis.url }), InvalidArgumentError);
    for (const name of ['__proto__', 'constructor', 'prototype']) {
      assert.throws(() => new StreamPublisher({ projectId: name, stage: 'rewrite', broker }), InvalidArgumentError, name);
      assert.throws(() => new StreamPublisher({ projectId: 'p', stage: name, broker }), InvalidArgumentError, name);
    }
    // A prefix with separators would land the messages in another project's channels; nothing is opened.
    for (const prefix of ['ai_story:project:victim:stage:x#', 'a*', '', 'prototype']) {
      assert.throws(() => new StreamPublisher({ projectId: 'p', stage: 's', redisUrl: redis.url, prefix }), InvalidArgumentError, prefix);
    }
    const project = uniqueProject();
    const pub = publisher(project);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const attempts: (() => Promise<string>)[] = [
      () => pub.publishStageUpdate('running' as never, 10, ''),
      () => pub.publishStageUpdate('processing', -1, ''),
      () => pub.publishStageUpdate('processing', 101, ''),
      () => pub.publishStageUpdate('processing', Number.NaN, ''),
      () => pub.publishStageUpdate('processing', '50' as never, ''),
      () => pub.publishProgress(-1, 3, ''),
      () => pub.publishProgress(1, Number.POSITIVE_INFINITY, ''),
      () => pub.publishToken(42 as never, ''),
      () => pub.publishDone('', [] as never),
      () => pub.publishDone('', circular),
      () => pub.publishError('x', 1.5),
      () => pub.publish('bad type', {}),
      () => pub.publish('__proto__', {}),
      () => pub.publish('constructor', {}),
      () => pub.publish('prototype', {}),
      () => pub.publish('note', { id: '1-0' }),
      () => pub.publish('note', { timestamp: 1 }),
      () => pub.publish('note', { big: 1n }),
    ];
    for (const attempt of attempts) await assert.rejects(attempt(), InvalidArgumentError, attempt.toString());
    assert.deepEqual(await broker.snapshot(project), { lastId: null, stages: stagesOf() });
  });

  it('opens a RedisBroker of its own from redisUrl and closes it on close', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    const pub = new StreamPublisher({ projectId: project, stage: 'rewrite', redisUrl: redis.url });
    assert.notEqual(pub.broker, broker);
    assert.equal(pub.channel, stageChannel('ai_story', project, 'rewrite'));
    await pub.publishToken('a', 'a');
    await rec.waitFor(1);
    await pub.close();
    await pub.close();
    assert.equal(pub.broker.healthy, false);
    await assert.rejects(pub.publishToken('b', 'ab'), BrokerClosedError);
  });

  it('closes its own broker at the end of an `await using` scope, and leaves a given broker open', async () => {
    const project = uniqueProject();
    let own: StreamPublisher;
    {
      await using scoped = new StreamPublisher({ projectId: project, stage: 'rewrite', redisUrl: redis.url });
      own = scoped;
      await scoped.publishToken('a', 'a');
    }
    assert.equal(own.broker.healthy, false);
    {
      await using shared = new StreamPublisher({ projectId: project, stage: 'rewrite', broker });
      await shared.publishToken('b', 'b');
    }
    assert.equal(broker.healthy, true);
    await broker.publish(project, 'rewrite', 'message', '{}');
  });

  it('works on the in-process broker the same way', async () => {
    const memory = new MemoryBroker();
    open.push(memory);
    const project = uniqueProject();
    const rec = recorder();
    await memory.subscribe(stageChannel(memory.prefix, project, 'rewrite'), rec.listener);
    const id = await publisher(project, 'rewrite', memory).publishToken('a', 'a');
    await rec.waitFor(1);
    assert.equal(JSON.parse(rec.payloads()[0]!).id, id);
  });

  it('publishes tokens linearly: offset in place of full_text as the last field, the text kept once by the broker', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    const pub = publisher(project);
    const head = (id: string) => `{"id":"${id}","type":"token","stage":"rewrite","project_id":"${project}","timestamp":1700000000.123`;
    const ids = [await pub.publishToken('从前', '从前'), await pub.publishToken(' 😀', '从前 😀'), await pub.publishToken('!', '从前 😀!')];
    const done = await pub.publishDone('从前 😀!');
    await rec.waitFor(4);
    assert.deepEqual(rec.payloads(), [
      `${head(ids[0]!)},"content":"从前","offset":0}`,
      `${head(ids[1]!)},"content":" 😀","offset":2}`,
      `${head(ids[2]!)},"content":"!","offset":5}`,
      `{"id":"${done}","type":"done","stage":"rewrite","project_id":"${project}","timestamp":1700000000.123,"full_text":"从前 😀!","metadata":{}}`,
    ]);
    assert.deepEqual(await broker.texts(project, 'rewrite'), new Map([['rewrite', { text: '从前 😀!', id: ids[2] }]]));
  });

  it('gives the broker the whole text with its first token only, when it joins a stage mid-run', async () => {
    const memory = new RecordingBroker();
    open.push(memory);
    const project = uniqueProject();
    // Another worker (say of an older version, or a task that died) wrote the stage before.
    await publisher(project, 'rewrite', memory).publishToken('lost text', 'lost text');
    const retried = publisher(project, 'rewrite', memory);
    await retried.publishToken(' upon', 'Once upon');
    await retried.publishToken(' a time', 'Once upon a time');
    const starting = publisher(project, 'storyboard', memory);
    await starting.publishToken('Scene', 'Scene');
    await starting.publishToken(' 1', 'Scene 1');
    assert.deepEqual(memory.pieces, [
      { content: 'lost text', offset: 0, wholeText: undefined },
      { content: ' upon', offset: 4, wholeText: 'Once upon' },
      { content: ' a time', offset: 9, wholeText: undefined },
      { content: 'Scene', offset: 0, wholeText: undefined },
      { content: ' 1', offset: 5, wholeText: undefined },
    ]);
    const texts = await memory.texts(project, null);
    assert.deepEqual([texts.get('rewrite')?.text, texts.get('storyboard')?.text], ['Once upon a time', 'Scene 1']);
  });

  it('syncs again with its first token after a first publish that failed', async () => {
    const memory = new RecordingBroker();
    open.push(memory);
    const project = uniqueProject();
    // No automatic retry (retries: 0): the caller sees the failure, and the next token syncs the text again.
    const pub = new StreamPublisher({ projectId: project, stage: 'rewrite', broker: memory, now: () => NOW, retries: 0 });
    open.push(pub);
    memory.failNext = true;
    await assert.rejects(pub.publishToken('b', 'ab'), BrokerUnavailableError);
    await pub.publishToken('b', 'ab');
    await pub.publishToken('c', 'abc');
    assert.deepEqual(memory.pieces.map((piece) => piece?.wholeText), ['ab', 'ab', undefined]);
    assert.equal((await memory.texts(project, 'rewrite')).get('rewrite')?.text, 'abc');
  });

  it('refuses a fullText that does not end with the content, publishing nothing', async () => {
    const project = uniqueProject();
    const pub = publisher(project);
    for (const [content, fullText] of [['b', 'a'], ['ab', 'b']] as const) {
      await assert.rejects(pub.publishToken(content, fullText), InvalidArgumentError, `${content} ${fullText}`);
    }
    const original = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, linearTokens: false });
    open.push(original);
    await assert.rejects(original.publishToken('b', 'a'), InvalidArgumentError);
    assert.deepEqual(await broker.snapshot(project), { lastId: null, stages: stagesOf() });
  });

  it('continues its own text for a token sent without a fullText, as workers of the original API do', async () => {
    const project = uniqueProject();
    const pub = publisher(project);
    await pub.publishToken('从前', '');
    await pub.publishToken(' 😀', '');
    await pub.publishToken('!');
    assert.equal((await broker.texts(project, 'rewrite')).get('rewrite')?.text, '从前 😀!');
  });

  it('rejects with TokenOffsetError a token that no longer continues the stage, after another publisher wrote it', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    const mine = publisher(project);
    const other = publisher(project);
    await mine.publishToken('a', 'a');
    await other.publishToken('xy', 'xy');
    await assert.rejects(mine.publishToken('b', 'ab'), (error) => error instanceof TokenOffsetError && error.expected === 2 && error.got === 1);
    await rec.waitFor(2);
    assert.equal((await broker.texts(project, 'rewrite')).get('rewrite')?.text, 'xy');
  });

  it('publishes the original format with linearTokens: false, and keeps no text', async () => {
    const project = uniqueProject();
    const rec = await listen(project);
    const pub = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, now: () => NOW, linearTokens: false });
    open.push(pub);
    const ids = [await pub.publishToken('Once', 'Once'), await pub.publishToken(' upon', 'Once upon')];
    await rec.waitFor(2);
    const head = (id: string) => `{"id":"${id}","type":"token","stage":"rewrite","project_id":"${project}","timestamp":1700000000.123`;
    assert.deepEqual(rec.payloads(), [`${head(ids[0]!)},"content":"Once","full_text":"Once"}`, `${head(ids[1]!)},"content":" upon","full_text":"Once upon"}`]);
    assert.deepEqual(await broker.texts(project, null), new Map());
  });

  it('rejects with BrokerUnavailableError when Redis cannot be reached, instead of dropping the message', async () => {
    const unreachable = new RedisBroker({ url: `redis://127.0.0.1:${await freePort()}`, commandTimeoutMs: 200 });
    open.push(unreachable);
    const pub = publisher(uniqueProject(), 'rewrite', unreachable);
    const error = await pub.publishToken('a', 'a').catch((e: unknown) => e);
    assert.ok(error instanceof BrokerUnavailableError);
    assert.equal(error.sent, false);
  });
});

/** The in-process broker, recording the pieces of the linear tokens it is given; `failNext` fails the next publish as an outage would. */
class RecordingBroker extends MemoryBroker {
  readonly pieces: (TokenPiece | undefined)[] = [];
  failNext = false;

  override async publish(projectId: string, stage: string, type: string, message: string, linear?: TokenPiece): Promise<string> {
    this.pieces.push(linear && { content: linear.content, offset: linear.offset, wholeText: linear.wholeText });
    if (this.failNext) {
      this.failNext = false;
      throw new BrokerUnavailableError('Redis was unreachable (a test outage)', { sent: false });
    }
    return super.publish(projectId, stage, type, message, linear);
  }
}
