/** Faults: Redis restarting under live streams, with a real reconnecting client (the kit's SSEClient on Node). */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createSSEClient } from '../../client/src/index.js';
import type { TokenMessage } from '../../client/src/messages.js';
import { BrokerUnavailableError } from '../src/broker/errors.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { StreamPublisher } from '../src/publisher.js';
import { startServer, type RunningServer } from '../src/server.js';
import { TEST_SETTINGS } from './harness.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { requestJson } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

let redis: TestRedis;
let serverBroker: RedisBroker;
let workerBroker: RedisBroker;
let server: RunningServer;

before(async () => {
  redis = await startRedis({ persist: true });
  serverBroker = new RedisBroker({ url: redis.url, commandTimeoutMs: 1000 });
  // The worker's own connection, as a separate worker process would have.
  workerBroker = new RedisBroker({ url: redis.url, commandTimeoutMs: 1000 });
  server = await startServer({ ...TEST_SETTINGS, retryMs: 200 }, serverBroker);
});
after(async () => {
  await server.close();
  await serverBroker.close();
  await workerBroker.close();
  await redis.close();
});


describe('Redis restarting mid-stream', () => {
  it('reports the outage on /healthz, refuses publishes meanwhile, and the client ends with every logged token once', async () => {
    const received: string[] = [];
    const client = createSSEClient('f1', 'rewrite', { baseUrl: server.url, heartbeatMs: 0 }).on('token', (message: TokenMessage) => {
      received.push(message.content);
    });
    client.connect();
    try {
      const publisher = new StreamPublisher({ projectId: 'f1', stage: 'rewrite', broker: workerBroker });
      await waitUntil(() => client.isConnected(), 'the client is connected', 20_000);
      for (let i = 0; i < 10; i++) await publisher.publishToken(String(i), '');
      await waitUntil(() => received.length === 10, '10 tokens arrived', 20_000);

      await redis.stop();
      await waitUntil(async () => (await requestJson(`${server.url}/healthz`)).status === 503, '/healthz reports the outage', 20_000);
      await assert.rejects(publisher.publishToken('lost?', ''), BrokerUnavailableError, 'a publish during the outage is refused, not queued or dropped');

      await redis.restart();
      await waitUntil(() => workerBroker.ping().then(() => true, () => false), 'the worker is reconnected', 20_000);
      // Publish at once: the server's subscriber may not be back yet. Those tokens must still arrive, from the log.
      for (let i = 10; i < 20; i++) await publisher.publishToken(String(i), '');
      await waitUntil(async () => (await requestJson(`${server.url}/healthz`)).status === 200, '/healthz is ok again', 20_000);
      await waitUntil(() => received.length >= 20, '20 tokens arrived', 20_000);
      assert.deepEqual(received, Array.from({ length: 20 }, (_, i) => String(i)));
    } finally {
      client.disconnect();
    }
  });
});
