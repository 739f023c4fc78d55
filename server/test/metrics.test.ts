/** SseMetrics on its own, then GET /metrics of the real server over a private redis-server. */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { SseMetrics } from '../src/metrics.js';
import { StreamPublisher } from '../src/publisher.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream, type StreamReader } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

/** The value of one sample of Prometheus's text format, or undefined when there is no such sample. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return Number(match[3]);
  }
  return undefined;
}

describe('SseMetrics', () => {
  it('starts every labelled series at 0 and reads its gauges from the hub and broker at each scrape', async () => {
    const metrics = new SseMetrics();
    const hub = { size: 3, topicCount: 2 };
    const broker = { kind: 'redis', healthy: true };
    metrics.watch({ hub, broker });
    let text = await metrics.text();
    assert.equal(sample(text, 'sse_streams_open'), 3);
    assert.equal(sample(text, 'sse_broker_subscriptions'), 2);
    assert.equal(sample(text, 'sse_broker_up', { broker: 'redis' }), 1);
    for (const reason of ['client_gone', 'slow_consumer', 'server_shutdown', 'cut', 'broker_error']) {
      assert.equal(sample(text, 'sse_streams_closed_total', { reason }), 0, reason);
    }
    for (const reason of ['expired', 'unknown_id', 'too_long']) assert.equal(sample(text, 'sse_resets_sent_total', { reason }), 0, reason);
    assert.equal(sample(text, 'sse_streams_opened_total', { resumed: 'true' }), 0);

    hub.size = 0;
    broker.healthy = false;
    text = await metrics.text();
    assert.equal(sample(text, 'sse_streams_open'), 0);
    assert.equal(sample(text, 'sse_broker_up', { broker: 'redis' }), 0);
  });

  it('measures the lag from the message timestamp to the write, once per message, and never below 0', async () => {
    let now = 1_000_000;
    const metrics = new SseMetrics({ now: () => now });
    metrics.messageWritten({ timestamp: 999.95 }, 4); // 50 ms
    now += 3000;
    metrics.messageWritten({ timestamp: 1003.5 }, 1); // the publisher's clock is ahead: 0
    metrics.messageWritten({ timestamp: 1000 }, 0); // nobody got it: no write, no lag
    metrics.messageWritten({ timestamp: undefined }, 2); // a foreign message without a timestamp
    const text = await metrics.text();
    assert.equal(sample(text, 'sse_publish_to_write_lag_seconds_count'), 2);
    assert.ok(Math.abs(sample(text, 'sse_publish_to_write_lag_seconds_sum')! - 0.05) < 1e-6);
    assert.equal(sample(text, 'sse_publish_to_write_lag_seconds_bucket', { le: '0.025' }), 1);
    assert.equal(sample(text, 'sse_publish_to_write_lag_seconds_bucket', { le: '0.05' }), 2);
    assert.equal(sample(text, 'sse_messages_received_total'), 4);
    assert.equal(sample(text, 'sse_events_delivered_total'), 7);
  });

  it('counts replays, resets and slow clients from the hub hooks', async () => {
    const metrics = new SseMetrics();
    metrics.streamLive({ resumed: false, events: 1, replayed: 0, reset: undefined });
    metrics.streamLive({ resumed: true, events: 5, replayed: 4, reset: undefined });
    metrics.streamLive({ resumed: true, events: 0, replayed: 0, reset: undefined });
    metrics.streamLive({ resumed: true, events: 0, replayed: 0, reset: 'unknown_id' });
    metrics.streamClosed('slow_consumer');
    metrics.streamClosed('client_gone');
    const text = await metrics.text();
    assert.equal(sample(text, 'sse_replays_served_total'), 2);
    assert.equal(sample(text, 'sse_replayed_events_total'), 4);
    assert.equal(sample(text, 'sse_resets_sent_total', { reason: 'unknown_id' }), 1);
    assert.equal(sample(text, 'sse_events_delivered_total'), 6);
    assert.equal(sample(text, 'sse_slow_clients_dropped_total'), 1);
    assert.equal(sample(text, 'sse_streams_closed_total', { reason: 'slow_consumer' }), 1);
  });

  it('goes into a registry and under a prefix of your choosing', async () => {
    const registry = new Registry();
    new SseMetrics({ registry, prefix: 'myapp_sse_' });
    const text = await registry.metrics();
    assert.equal(sample(text, 'myapp_sse_streams_open'), 0);
    assert.equal(sample(text, 'sse_streams_open'), undefined);
  });
});

describe('GET /metrics of the server', () => {
  let h: Harness;
  const readers: StreamReader[] = [];
  const scrape = async () => {
    const response = await fetch(`${h.url}/metrics`);
    assert.equal(response.status, 200);
    return response.text();
  };
  const watch = async (projectId: string, stage?: string, headers: Record<string, string> = {}) => {
    const reader = await openStream(streamUrl(h.url, projectId, stage), headers);
    readers.push(reader);
    await reader.waitFor((e) => e.event === 'connected');
    return reader;
  };

  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    for (const reader of readers) reader.close();
    await h.close();
  });

  it('is Prometheus text', async () => {
    const response = await fetch(`${h.url}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(await response.text(), /^# HELP sse_/m);
  });

  it('counts open streams, events delivered and the publish-to-write lag', async () => {
    const before = await scrape();
    const a = await watch('m1', 'rewrite');
    const b = await watch('m1', 'rewrite');
    let text = await scrape();
    assert.equal(sample(text, 'sse_streams_open'), 2);
    assert.equal(sample(text, 'sse_streams_opened_total', { resumed: 'false' }), sample(before, 'sse_streams_opened_total', { resumed: 'false' })! + 2);

    await using pub = new StreamPublisher({ projectId: 'm1', stage: 'rewrite', broker: h.broker });
    for (const word of ['one', 'two', 'three']) await pub.publishToken(word, word);
    await Promise.all([a, b].map((r) => r.waitFor((e) => e.json?.content === 'three')));
    text = await scrape();
    const delta = (name: string) => sample(text, name)! - (sample(before, name) ?? 0);
    assert.equal(delta('sse_events_delivered_total'), 6);
    assert.equal(delta('sse_messages_received_total'), 3);
    assert.equal(delta('sse_publish_to_write_lag_seconds_count'), 3);
    assert.ok(delta('sse_publish_to_write_lag_seconds_sum') < 5, 'a lag of seconds on one machine');

    b.close();
    await waitUntil(async () => sample(await scrape(), 'sse_streams_open') === 1, 'one stream left');
    text = await scrape();
    assert.equal(
      sample(text, 'sse_streams_closed_total', { reason: 'client_gone' }),
      sample(before, 'sse_streams_closed_total', { reason: 'client_gone' })! + 1,
    );
    a.close();
  });

  it('counts replays served and resets sent, by reason', async () => {
    await using pub = new StreamPublisher({ projectId: 'm2', stage: 'rewrite', broker: h.broker });
    const first = await pub.publishToken('a', 'a');
    await pub.publishToken('b', 'ab');
    await pub.publishToken('c', 'abc');
    const before = await scrape();

    const resumed = await watch('m2', 'rewrite', { 'Last-Event-ID': first });
    await resumed.waitFor((e) => e.json?.content === 'c');
    const expired = await watch('m2', 'rewrite', { 'Last-Event-ID': '1-0' }); // older than the log
    const unknown = await watch('m3', 'rewrite', { 'Last-Event-ID': '1-0' }); // a project without a log
    await Promise.all([expired, unknown].map((r) => r.waitFor((e) => e.event === 'reset')));
    // The counters move once the stream is live, just after the reset is written.
    const resets = (text: string) => ['expired', 'unknown_id'].map((reason) => sample(text, 'sse_resets_sent_total', { reason })!);
    const [expiredBefore, unknownBefore] = resets(before);
    await waitUntil(async () => {
      const [expired, unknown] = resets(await scrape());
      return expired! > expiredBefore! && unknown! > unknownBefore!;
    }, 'both resets are counted');

    const text = await scrape();
    const delta = (name: string, labels?: Record<string, string>) => sample(text, name, labels)! - (sample(before, name, labels) ?? 0);
    assert.equal(delta('sse_streams_opened_total', { resumed: 'true' }), 3);
    assert.equal(delta('sse_replays_served_total'), 1);
    assert.equal(delta('sse_replayed_events_total'), 2);
    assert.equal(delta('sse_events_delivered_total'), 2);
    assert.equal(delta('sse_resets_sent_total', { reason: 'expired' }), 1);
    assert.equal(delta('sse_resets_sent_total', { reason: 'unknown_id' }), 1);
  });

  it('reports Redis down while it is stopped, and up again once it is back', async () => {
    assert.equal(sample(await scrape(), 'sse_broker_up', { broker: 'redis' }), 1);
    await h.redis!.stop();
    await waitUntil(async () => sample(await scrape(), 'sse_broker_up', { broker: 'redis' }) === 0, 'broker_up is 0');
    await h.redis!.restart();
    await waitUntil(async () => sample(await scrape(), 'sse_broker_up', { broker: 'redis' }) === 1, 'broker_up is 1 again');
  });
});

describe('slow clients in /metrics', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ broker: 'memory', settings: { maxBufferBytes: 64 * 1024 } });
  });
  after(async () => {
    await h.close();
  });

  /** A raw client that sends the request, reads the head, then never reads again. */
  function stalledClient(path: string): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect(h.server.port, '127.0.0.1', () => {
        socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
        socket.once('data', () => {
          socket.pause();
          resolve(socket);
        });
      });
      socket.on('error', () => {});
      socket.once('error', reject);
    });
  }

  it('counts a client dropped for not keeping up', async () => {
    const stalled = await stalledClient('/api/v1/sse/projects/slow/stages/rewrite/');
    await waitUntil(() => h.server.hub.size === 1, 'the stream is open');
    await using pub = new StreamPublisher({ projectId: 'slow', stage: 'rewrite', broker: h.broker });
    const chunk = 'x'.repeat(32 * 1024);
    // Until the kernel's buffers and the 64 KiB bound are full: bounded, so a bug cannot spin forever.
    for (let i = 0; i < 10_000 && h.server.hub.size > 0; i++) {
      await pub.publishToken(chunk, chunk);
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(h.server.hub.size, 0);
    const text = await (await fetch(`${h.url}/metrics`)).text();
    assert.equal(sample(text, 'sse_slow_clients_dropped_total'), 1);
    assert.equal(sample(text, 'sse_streams_closed_total', { reason: 'slow_consumer' }), 1);
    stalled.destroy();
  });
});
