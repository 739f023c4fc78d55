/** Faults: Redis restarting under live streams and clients that vanish, with a real reconnecting client (the kit's SSEClient on Node). */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { createSSEClient } from 'ai-story-sse/client';
import type { TokenMessage } from '../../protocol/messages.js';
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


// The same scenario over both transports: the client's own SSE stream, and the multiplexed connection over a WebSocket.
for (const transport of ['sse', 'websocket'] as const) {
describe(`Redis restarting mid-stream (${transport})`, () => {
  it('reports the outage on /healthz, refuses publishes meanwhile, and the client ends with every logged token once', async () => {
    const received: string[] = [];
    const project = `f1-${transport}`;
    const client = createSSEClient(project, 'rewrite', {
      baseUrl: server.url,
      heartbeatMs: 0,
      transport,
      WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
    }).on('token', (message: TokenMessage) => {
      received.push(message.content);
    });
    client.connect();
    try {
      const publisher = new StreamPublisher({ projectId: project, stage: 'rewrite', broker: workerBroker });
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
}

describe('a client that vanishes without closing', () => {
  it('is released entirely when the kernel reports its connection dead on a write, and the others carry on', async () => {
    const inspector = new Redis(redis.url);
    const sockets: Socket[] = [];
    const onConnection = (socket: Socket) => sockets.push(socket);
    server.server.on('connection', onConnection);
    try {
      // A peer that sends its request, then neither reads nor sends a FIN: as if its machine lost power.
      const gone = connect(server.port, '127.0.0.1');
      gone.on('error', () => {});
      gone.write('GET /api/v1/sse/projects/v1/stages/rewrite/ HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
      await new Promise((resolve) => gone.once('data', resolve));
      gone.pause();
      const survivor = createSSEClient('v1', 'rewrite', { baseUrl: server.url, heartbeatMs: 0 });
      const received: string[] = [];
      survivor.on('token', (m: TokenMessage) => received.push(m.content)).connect();
      await waitUntil(() => survivor.isConnected() && server.hub.size === 2, 'both streams open');
      assert.deepEqual(await inspector.pubsub('NUMSUB', 'ai_story:project:v1:stage:rewrite'), ['ai_story:project:v1:stage:rewrite', 1]);

      // TCP gives up on the unacknowledged heartbeat (tcp_retries2) and the next write fails with ETIMEDOUT.
      const serverSide = sockets.find((s) => s.remotePort === gone.localPort)!;
      serverSide.destroy(Object.assign(new Error('write ETIMEDOUT'), { code: 'ETIMEDOUT' }));

      await waitUntil(() => server.hub.size === 1, 'the dead stream is released');
      const publisher = new StreamPublisher({ projectId: 'v1', stage: 'rewrite', broker: workerBroker });
      await publisher.publishToken('still here', '');
      await waitUntil(() => received.length === 1, 'the other client still receives');
      survivor.disconnect();
      await waitUntil(() => server.hub.idle, 'no stream, subscription or heartbeat timer left');
      await waitUntil(async () => ((await inspector.pubsub('NUMSUB', 'ai_story:project:v1:stage:rewrite')) as unknown[])[1] === 0, 'NUMSUB is 0');
      gone.destroy();
    } finally {
      server.server.off('connection', onConnection);
      await inspector.quit();
    }
  });
});
