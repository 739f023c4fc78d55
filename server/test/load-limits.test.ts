/** Load limits: slow consumers are dropped without hurting others, churn leaks nothing, caps answer with Retry-After. */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Redis } from 'ioredis';
import { StreamPublisher } from '../src/publisher.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { waitUntil } from './wait-until.js';
import { openStream, requestJson } from './sse-reader.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let h: Harness;
let inspector: Redis;
before(async () => {
  h = await startHarness({ settings: { maxBufferBytes: 256 * 1024, maxStreamsPerClient: 10_000 } });
  inspector = new Redis(h.redis!.url);
});
after(async () => {
  await inspector.quit();
  await h.close();
});


/** A raw client that sends the request and then never reads: its kernel buffers fill, then the server's. */
function stalledClient(port: number, path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
      socket.once('data', () => {
        socket.pause();
        resolve(socket);
      });
    });
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.once('error', reject);
  });
}

describe('a client that cannot keep up', () => {
  it('is disconnected once its unsent bytes pass the bound, while a reading client gets every message', async () => {
    const stalled = await stalledClient(h.server.port, '/api/v1/sse/projects/s1/stages/rewrite/');
    const reader = await openStream(streamUrl(h.url, 's1', 'rewrite'));
    await reader.waitFor((e) => e.event === 'connected');
    await waitUntil(() => h.server.hub.size === 2, 'both streams open');
    const closed = new Promise<void>((resolve) => stalled.once('close', () => resolve()));

    await using pub = new StreamPublisher({ projectId: 's1', stage: 'rewrite', broker: h.broker });
    const chunk = 'x'.repeat(32 * 1024);
    let last = '';
    // Far more than the kernel's socket buffers plus the 256 KB bound.
    for (let i = 0; i < 600; i++) last = await pub.publishToken(chunk, chunk);
    await reader.waitFor((e) => e.id === last, 30_000);
    assert.equal(reader.events.filter((e) => e.event === 'token').length, 600);
    await waitUntil(() => h.server.hub.size === 1, 'the stalled stream is dropped');
    stalled.resume();
    await closed;
    reader.close();
  });
});

describe('connection churn', () => {
  it('leaves no subscription, stream or timer after 2,000 connects and disconnects, and memory stays bounded', async () => {
    const url = (i: number) => (i % 2 === 0 ? streamUrl(h.url, `churn${i % 10}`, 'rewrite') : streamUrl(h.url, `churn${i % 10}`));
    // Warm up, then measure.
    for (let i = 0; i < 50; i++) (await openStream(url(i))).close();
    await waitUntil(() => h.server.hub.idle, 'idle after warm-up');
    gc();
    const heapBefore = process.memoryUsage().heapUsed;

    for (let batch = 0; batch < 40; batch++) {
      const readers = await Promise.all(Array.from({ length: 50 }, (_, i) => openStream(url(batch * 50 + i))));
      await Promise.all(readers.map((r) => r.waitFor((e) => e.event === 'connected')));
      for (const reader of readers) reader.close();
    }
    await waitUntil(() => h.server.hub.idle, 'no stream, subscription or heartbeat timer left');
    await waitUntil(async () => Number(await inspector.pubsub('NUMPAT')) === 0, 'NUMPAT back to 0');
    await waitUntil(async () => ((await inspector.pubsub('CHANNELS', 'ai_story:*')) as string[]).length === 0, 'no channel subscribed');
    gc();
    const growth = process.memoryUsage().heapUsed - heapBefore;
    // The bound: 2,000 streams held ~10 KB each at most would be 20 MB; what stays after they are gone must be far less.
    assert.ok(growth < 8 * 1024 * 1024, `heap grew by ${(growth / 1024 / 1024).toFixed(1)} MB`);
  });
});

describe('the stream caps', () => {
  it('refuses streams over the per-process cap with 503 and Retry-After', async () => {
    const capped = await startHarness({ broker: 'memory', settings: { maxStreams: 2 } });
    try {
      const a = await openStream(streamUrl(capped.url, 'm1'));
      const b = await openStream(streamUrl(capped.url, 'm2', 'rewrite'));
      const refused = await requestJson(streamUrl(capped.url, 'm3'));
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error.code, 'too_many_streams');
      assert.equal(refused.headers.get('retry-after'), '5');
      a.close();
      await waitUntil(() => capped.server.hub.size === 1, 'a slot is free');
      const c = await openStream(streamUrl(capped.url, 'm3'));
      assert.equal(c.status, 200);
      b.close();
      c.close();
    } finally {
      await capped.close();
    }
  });
});
