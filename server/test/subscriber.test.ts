import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { uniqueProject } from './broker.contract.js';
import { BrokerClosedError, InvalidArgumentError, SubscriberOverflowError } from '../src/broker/errors.js';
import { MemoryBroker } from '../src/broker/memory-broker.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { StreamPublisher } from '../src/publisher.js';
import { StreamSubscriber, type SubscriberMessage } from '../src/subscriber.js';
import { projectPattern, stageChannel } from '../src/channels.js';
import { startRedis, type TestRedis } from './redis-server.js';

let redis: TestRedis;
let broker: RedisBroker;
let admin: Redis;
before(async () => {
  redis = await startRedis();
  broker = new RedisBroker({ url: redis.url });
  admin = new Redis(redis.url);
});
after(async () => {
  await admin.quit();
  await broker.close();
  await redis.close();
});

async function take(subscriber: StreamSubscriber, count: number, timeoutMs = 5000): Promise<SubscriberMessage[]> {
  const taken: SubscriberMessage[] = [];
  for await (const message of subscriber.listen({ timeoutMs })) {
    taken.push(message);
    if (taken.length === count) break;
  }
  return taken;
}

describe('StreamSubscriber', () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((thing) => thing.close()));
  });
  function make<T extends { close(): Promise<void> }>(thing: T): T {
    open.push(thing);
    return thing;
  }

  it('receives one stage’s messages, parsed and in order, once ready has resolved', async () => {
    const project = uniqueProject();
    const subscriber = make(new StreamSubscriber({ projectId: project, stage: 'rewrite', broker }));
    await subscriber.ready;
    const pub = make(new StreamPublisher({ projectId: project, stage: 'rewrite', broker }));
    const ids = [await pub.publishToken('Once', 'Once'), await pub.publishToken(' upon', 'Once upon'), await pub.publishDone('Once upon')];
    const messages = await take(subscriber, 3);
    assert.deepEqual(messages.map((m) => [m.type, (m as { id?: string }).id]), [['token', ids[0]], ['token', ids[1]], ['done', ids[2]]]);
    const first = messages[0]!;
    assert.ok(first.type === 'token' && first.content === 'Once' && first.project_id === project && first.stage === 'rewrite');
  });

  it('receives every stage of the project when no stage is given, and nothing of another project', async () => {
    const project = uniqueProject();
    const subscriber = make(new StreamSubscriber({ projectId: project, broker }));
    assert.equal(subscriber.stage, null);
    assert.equal(subscriber.channel, projectPattern(broker.prefix, project));
    await subscriber.subscribe();
    await broker.publish(`${project}x`, 'rewrite', 'token', '{"type":"token"}');
    await broker.publish(project, 'rewrite', 'token', '{"type":"token"}');
    await broker.publish(project, 'image_generation', 'progress', '{"type":"progress"}');
    const messages = await take(subscriber, 2);
    assert.deepEqual(messages.map((m) => m.type), ['token', 'progress']);
    assert.equal(subscriber.getMessage(), null);
  });

  it('ends listen when timeoutMs passes without a message, staying subscribed', async () => {
    const project = uniqueProject();
    const subscriber = make(new StreamSubscriber({ projectId: project, stage: 'rewrite', broker }));
    const started = Date.now();
    assert.deepEqual(await take(subscriber, 1, 100), []);
    assert.ok(Date.now() - started >= 95, `ended after ${Date.now() - started} ms`);
    await broker.publish(project, 'rewrite', 'token', '{"type":"token"}');
    assert.equal((await take(subscriber, 1)).length, 1);
  });

  it('ends listen after unsubscribe, once the messages already received are yielded', async () => {
    const project = uniqueProject();
    const subscriber = make(new StreamSubscriber({ projectId: project, stage: 'rewrite', broker }));
    await subscriber.ready;
    const seen: string[] = [];
    const listening = (async () => {
      for await (const message of subscriber.listen()) {
        seen.push(message.type);
        if (seen.length === 1) await subscriber.unsubscribe();
      }
    })();
    await broker.publish(project, 'rewrite', 'a', '{"type":"a"}');
    await listening;
    assert.deepEqual(seen, ['a']);
    assert.equal(await admin.call('PUBSUB', 'NUMSUB', stageChannel(broker.prefix, project, 'rewrite')).then((r) => (r as unknown[])[1]), 0);
  });

  it('getMessage never waits: null before a message arrives, the message after', async () => {
    const project = uniqueProject();
    const subscriber = make(new StreamSubscriber({ projectId: project, stage: 'rewrite', broker }));
    await subscriber.ready;
    assert.equal(subscriber.getMessage(), null);
    const watcher = make(new StreamSubscriber({ projectId: project, stage: 'rewrite', broker }));
    await watcher.ready;
    await broker.publish(project, 'rewrite', 'token', '{"type":"token"}');
    await take(watcher, 1); // the same dispatch reached `subscriber`
    assert.equal(subscriber.getMessage()?.type, 'token');
    assert.equal(subscriber.getMessage(), null);
  });

  it('passes a payload that is not a JSON object with a type on as {type: "message", data, channel}', async () => {
    const project = uniqueProject();
    const subscriber = make(new StreamSubscriber({ projectId: project, broker }));
    await subscriber.ready;
    const channel = stageChannel(broker.prefix, project, 'rewrite');
    for (const raw of ['plain text\nsecond line', '[1,2]', '{"no":"type"}', '42']) await admin.publish(channel, raw);
    await admin.publish(channel, '{"type":"token","content":"ok"}');
    assert.deepEqual(await take(subscriber, 5), [
      { type: 'message', data: 'plain text\nsecond line', channel },
      { type: 'message', data: '[1,2]', channel },
      { type: 'message', data: '{"no":"type"}', channel },
      { type: 'message', data: '42', channel },
      { type: 'token', content: 'ok' },
    ]);
  });

  it('leaves no subscription in Redis after unsubscribe, and subscribes again on request', async () => {
    const project = uniqueProject();
    const subscriber = make(new StreamSubscriber({ projectId: project, broker }));
    await subscriber.ready;
    assert.equal(await admin.call('PUBSUB', 'NUMPAT'), 1);
    await subscriber.unsubscribe();
    await subscriber.unsubscribe();
    assert.equal(await admin.call('PUBSUB', 'NUMPAT'), 0);
    await subscriber.subscribe();
    await broker.publish(project, 'rewrite', 'again', '{"type":"again"}');
    assert.equal((await take(subscriber, 1))[0]?.type, 'again');
  });

  it('gives up with SubscriberOverflowError after yielding maxBuffered unread messages', async () => {
    const memory = make(new MemoryBroker());
    const project = uniqueProject();
    const subscriber = make(new StreamSubscriber({ projectId: project, stage: 's', broker: memory, maxBuffered: 3 }));
    await subscriber.ready;
    const sentinel = make(new StreamSubscriber({ projectId: project, stage: 's', broker: memory }));
    await sentinel.ready;
    for (let i = 0; i < 5; i++) await memory.publish(project, 's', `t${i}`, `{"type":"t${i}"}`);
    await take(sentinel, 5);
    const seen: string[] = [];
    await assert.rejects(async () => {
      for await (const message of subscriber.listen()) seen.push(message.type);
    }, SubscriberOverflowError);
    assert.deepEqual(seen, ['t0', 't1', 't2']);
  });

  it('opens a broker of its own from redisUrl and closes it at the end of an `await using` scope', async () => {
    const project = uniqueProject();
    let own: StreamSubscriber;
    {
      await using scoped = new StreamSubscriber({ projectId: project, stage: 'rewrite', redisUrl: redis.url });
      own = scoped;
      await scoped.ready;
      await broker.publish(project, 'rewrite', 'token', '{"type":"token"}');
      assert.equal((await take(scoped, 1)).length, 1);
    }
    assert.equal(own.broker.healthy, false);
    await assert.rejects(own.subscribe(), BrokerClosedError);
    assert.equal(broker.healthy, true);
  });

  it('refuses invalid ids and options with InvalidArgumentError', () => {
    assert.throws(() => new StreamSubscriber({ projectId: 'a*', broker }), InvalidArgumentError);
    assert.throws(() => new StreamSubscriber({ projectId: 'p', stage: '', broker }), InvalidArgumentError);
    assert.throws(() => new StreamSubscriber({ projectId: 'p', broker, maxBuffered: 0 }), InvalidArgumentError);
    assert.throws(() => new StreamSubscriber({ projectId: 'p', broker, redisUrl: redis.url }), InvalidArgumentError);
  });

  it('refuses __proto__, constructor and prototype as project or stage, and a prefix that breaks the id rule, before opening anything', () => {
    for (const name of ['__proto__', 'constructor', 'prototype']) {
      assert.throws(() => new StreamSubscriber({ projectId: name, broker }), InvalidArgumentError, name);
      assert.throws(() => new StreamSubscriber({ projectId: 'p', stage: name, broker }), InvalidArgumentError, name);
    }
    for (const prefix of ['ai_story:project:victim:stage:x#', 'a*', '', '__proto__']) {
      assert.throws(() => new StreamSubscriber({ projectId: 'p', redisUrl: redis.url, prefix }), InvalidArgumentError, prefix);
    }
  });
});
