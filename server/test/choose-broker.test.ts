import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort, startRedis, type TestRedis } from './redis-server.js';
import { chooseBroker } from '../src/broker/choose-broker.js';

const settings = { prefix: 'ai_story', logMaxLen: 10, logTtlSeconds: 60 };
let redis: TestRedis;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.close();
});

describe('chooseBroker', () => {
  it('uses REDIS_URL when it is set', async () => {
    const { broker, reason } = await chooseBroker({ ...settings, redisUrl: redis.url });
    assert.equal(broker.kind, 'redis');
    assert.match(reason, /\(REDIS_URL\)$/);
    await broker.close();
  });

  it('keeps an unreachable REDIS_URL instead of falling back, and says it does not answer', async () => {
    const { broker, reason } = await chooseBroker({ ...settings, redisUrl: `redis://127.0.0.1:${await freePort()}` }, 300);
    assert.equal(broker.kind, 'redis');
    assert.match(reason, /not answering yet/);
    await broker.close();
  });

  it('without REDIS_URL uses the local Redis when it answers', async () => {
    const { broker, reason } = await chooseBroker({ ...settings, redisUrl: undefined }, 1000, redis.url);
    assert.equal(broker.kind, 'redis');
    assert.match(reason, /REDIS_URL unset, a local Redis answered/);
    await broker.close();
  });

  it('without REDIS_URL and no local Redis runs on the embedded broker and says so', async () => {
    const { broker, reason } = await chooseBroker({ ...settings, redisUrl: undefined }, 300, `redis://127.0.0.1:${await freePort()}`);
    assert.equal(broker.kind, 'memory');
    assert.match(reason, /embedded in-process broker/);
    await broker.close();
  });
});
