/**
 * Priorities under pressure: a client that stops reading during a burst is not dropped while under the hard
 * bound; once it reads again it gets the stages' tokens merged (the exact text), only the latest progress, and
 * every other message, in each stage's order; its Last-Event-ID is the newest id. Over a real socket, a real
 * redis-server and the real publisher.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createParser } from 'eventsource-parser';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { mountSse, type SseMount } from '../src/mount.js';
import { StreamPublisher } from '../src/publisher.js';
import { streamUrl } from './harness.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { openWebSocketMux } from './mux-reader.js';
import { waitUntil } from './wait-until.js';

let redis: TestRedis;
let broker: RedisBroker;
let server: Server;
let sse: SseMount;
let base: string;

before(async () => {
  redis = await startRedis();
  broker = new RedisBroker({ url: redis.url });
  server = createServer();
  // A small soft bound, a hard bound the held messages stay under.
  sse = mountSse(server, { broker, softBufferBytes: 8 * 1024, maxBufferBytes: 4 * 1024 * 1024, metrics: false });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  await sse.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await broker.close();
  await redis.close();
});

interface Event {
  event: string;
  id: string | undefined;
  json: Record<string, unknown>;
}

/** A stream read only when told: `pause()` stops reading (the socket's buffers fill), `resume()` reads again. */
async function slowReader(url: string) {
  const response = await fetch(url);
  const events: Event[] = [];
  let lastEventId: string | undefined;
  const parser = createParser({
    onEvent(message) {
      if (message.id !== undefined) lastEventId = message.id;
      events.push({ event: message.event ?? 'message', id: message.id, json: JSON.parse(message.data) as Record<string, unknown> });
    },
  });
  const body = response.body!.getReader();
  const decoder = new TextDecoder();
  let reading = true;
  let wake: (() => void) | undefined;
  const done = (async () => {
    for (;;) {
      while (!reading) await new Promise<void>((resolve) => (wake = resolve));
      const { value, done: ended } = await body.read();
      if (ended) return;
      parser.feed(decoder.decode(value, { stream: true }));
    }
  })().catch(() => {});
  return {
    events,
    get lastEventId() {
      return lastEventId;
    },
    pause: () => (reading = false),
    resume: () => {
      reading = true;
      wake?.();
    },
    close: () => void body.cancel().catch(() => {}),
    done,
  };
}

describe('a slow client under pressure', () => {
  it('stays connected through a 5,000-token burst and ends with the exact text, every control event, in order', async () => {
    const projectId = 'burst';
    const reader = await slowReader(streamUrl(base, projectId));
    await waitUntil(() => reader.events.some((e) => e.event === 'connected'), 'connected');
    reader.pause();

    const published = { ids: [] as string[], text: new Map<string, string>(), control: [] as string[] };
    const stages = ['rewrite', 'storyboard'];
    const pubs = stages.map((stage) => new StreamPublisher({ projectId, stage, broker }));
    for (const [i, pub] of pubs.entries()) {
      published.ids.push(await pub.publishStageUpdate('processing', 0, 'started'));
      published.control.push(`${stages[i]}:stage_update`);
    }
    // 5,000 tokens over both stages, progress every 100, in one burst.
    const texts = stages.map(() => '');
    for (let n = 0; n < 5000; n++) {
      const s = n % 2;
      const piece = ` w${n}`;
      texts[s] += piece;
      published.ids.push(await pubs[s]!.publishToken(piece, texts[s]!));
      if (n % 100 === 99) published.ids.push(await pubs[s]!.publishProgress(n + 1, 5000, `piece ${n}`));
    }
    for (const [i, pub] of pubs.entries()) {
      published.ids.push(await pub.publishDone(texts[i]!, { tokens: 2500 }));
      published.control.push(`${stages[i]}:done`);
    }
    // The client was paused for the whole burst: the server held what it could not send.
    assert.equal(sse.hub.size, 1, 'still connected after the burst (not dropped as too slow)');
    reader.resume();
    await waitUntil(() => reader.events.filter((e) => e.event === 'done').length === 2, 'both done messages', 30_000);
    await waitUntil(() => reader.lastEventId === published.ids.at(-1), 'the Last-Event-ID at the newest id', 5_000);

    const messages = reader.events.filter((e) => e.event !== 'connected');
    // Every control event, once, in each stage's order.
    const control = messages.filter((e) => e.event === 'stage_update' || e.event === 'done').map((e) => `${e.json.stage}:${e.event}`);
    assert.deepEqual(control.sort(), [...published.control].sort());
    for (const [i, stage] of stages.entries()) {
      const mine = messages.filter((e) => e.json.stage === stage);
      assert.equal(mine[0]!.event, 'stage_update', `${stage} starts with its stage_update`);
      assert.equal(mine.at(-1)!.event, 'done', `${stage} ends with its done`);
      const tokens = mine.filter((e) => e.event === 'token');
      // Merged: fewer token events than tokens, and their pieces joined are the exact text.
      assert.ok(tokens.length < 2500, `${stage}: ${tokens.length} token events for 2,500 tokens`);
      assert.equal(tokens.map((t) => t.json.content).join(''), texts[i]);
      assert.equal(tokens.at(-1)!.json.full_text, texts[i], `${stage}: the last token's full_text is the whole text`);
      assert.equal(mine.at(-1)!.json.full_text, texts[i]);
    }
    // Only the latest progress of a stage survives a flush: fewer than the 50 published.
    assert.ok(messages.filter((e) => e.event === 'progress').length < 50);
    reader.close();
    await Promise.all(pubs.map((pub) => pub.close()));
  });

  it('does the same for a subscription of a multiplexed connection over a WebSocket', async () => {
    const projectId = 'burst-ws';
    const reader = await openWebSocketMux(base);
    await reader.subscribe({ subscription: 'p', project_id: projectId });
    await reader.waitFor((e) => e.event === 'connected' && e.json?.subscription === 'p');
    const socket = (reader.socket as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    await using pub = new StreamPublisher({ projectId, stage: 'rewrite', broker });
    await pub.publishStageUpdate('processing', 0);
    let text = '';
    for (let n = 0; n < 3000; n++) await pub.publishToken(` w${n}`, (text += ` w${n}`));
    const last = await pub.publishDone(text);
    assert.equal(sse.hub.size, 1, 'still connected after the burst');
    socket.resume();
    await reader.waitFor((e) => e.event === 'done' && e.json?.subscription === 'p', 30_000);
    await waitUntil(() => reader.lastEventId === last, 'the Last-Event-ID at the newest id');
    const mine = reader.of('p').filter((e) => e.event !== 'connected');
    const tokens = mine.filter((e) => e.event === 'token');
    assert.equal(mine[0]!.event, 'stage_update');
    assert.equal(mine.at(-1)!.event, 'done');
    assert.ok(tokens.length < 3000, `${tokens.length} token events for 3,000 tokens`);
    assert.equal(tokens.map((t) => t.json!.content).join(''), text);
    reader.close();
  });
});
