/**
 * What only the WebSocket transport has (the scenarios both transports share run over both in mux.test.ts,
 * filters.test.ts and client/node/transports.node-test.ts): refusals as close codes, control messages that are
 * not right, heartbeats and pings, and the slow-consumer bound on `bufferedAmount`. Real sockets (`ws`), a real
 * redis-server, the real publisher.
 */
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { MUX_CLOSE, MUX_WS_ROUTE } from '../../protocol/mux.js';
import { StreamPublisher } from '../src/publisher.js';
import { startHarness, type Harness } from './harness.js';
import { openWebSocketMux } from './mux-reader.js';
import { waitUntil } from './wait-until.js';

let h: Harness;
/** One stream per client, the Host guard on, a small buffer: the refusals and bounds. */
let strict: Harness;

before(async () => {
  [h, strict] = await Promise.all([
    startHarness({ settings: { heartbeatMs: 100 } }),
    startHarness({ settings: { maxStreamsPerClient: 1, allowedHosts: ['127.0.0.1'], maxBufferBytes: 64 * 1024 } }),
  ]);
});
after(async () => {
  await Promise.all([h.close(), strict.close()]);
});

const wsUrl = (base: string) => base.replace(/^http/, 'ws') + MUX_WS_ROUTE;

/** Opens a raw WebSocket and resolves with how it closed. */
function closeOf(url: string, options: WebSocket.ClientOptions = {}): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, options);
    ws.on('error', () => {});
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
}

describe('the WebSocket transport', () => {
  it('refuses what the HTTP transport refuses, as close codes 4000 + status with the error code and message', async () => {
    const host = await closeOf(wsUrl(strict.url), { headers: { Host: 'evil.example' } });
    assert.equal(host.code, MUX_CLOSE.statusBase + 421);
    assert.match(host.reason, /^misdirected_request: /);

    const first = await openWebSocketMux(strict.url);
    const second = await closeOf(wsUrl(strict.url));
    assert.equal(second.code, MUX_CLOSE.statusBase + 429);
    assert.match(second.reason, /^too_many_streams: /);
    first.close();
    await waitUntil(() => strict.server.hub.size === 0, 'the first one gone');
  });

  it('answers a control message that is not right with a result of status 400, and the connection stays', async () => {
    const reader = await openWebSocketMux(h.url);
    const answers: Array<{ status: number; body: any }> = [];
    for (const message of ['not json', '[1,2]', JSON.stringify({ op: 'dance', request: 7 }), JSON.stringify({ op: 'subscribe', request: 'x', subscription: 'a', project_id: 'p' })]) {
      const before = reader.diverted.length;
      reader.socket.send(message);
      await waitUntil(() => reader.diverted.length > before, `the answer to ${message}`);
      const result = reader.diverted.at(-1)!.json!;
      answers.push({ status: Number(result.status), body: result.body });
    }
    assert.deepEqual(
      answers.map((a) => [a.status, a.body.error.code]),
      [
        [400, 'invalid_json'],
        [400, 'invalid_json'],
        [400, 'bad_request'],
        [400, 'bad_request'],
      ],
    );
    // Still usable.
    const ok = await reader.subscribe({ subscription: 'a', project_id: 'ws-ok' });
    assert.equal(ok.status, 200);
    reader.close();
  });

  it('sends the heartbeat as a message, and pings: a client that never answers a ping is dropped', async () => {
    const reader = await openWebSocketMux(h.url);
    await reader.waitForComments(2, 5000);
    assert.ok(reader.comments.every((c) => c.text === 'ping'));
    reader.close();

    // A raw client that upgrades and then never reads again (no pong): the hub ends it within two heartbeats.
    await waitUntil(() => h.server.hub.size === 0, 'the first one gone');
    const before = 0;
    const port = new URL(h.url).port;
    const socket = tcpConnect(Number(port), '127.0.0.1');
    socket.write(
      `GET ${MUX_WS_ROUTE} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await waitUntil(() => h.server.hub.size === before + 1, 'the raw client connected');
    socket.pause();
    await waitUntil(() => h.server.hub.size === before, 'the silent client dropped', 5000);
    socket.destroy();
  });

  it('closes a client that stops reading with 4008 once its unsent bytes pass the bound, and it resumes from its cursor', async () => {
    const reader = await openWebSocketMux(strict.url);
    await reader.subscribe({ subscription: 'flood', project_id: 'ws-flood' });
    await reader.waitFor((e) => e.event === 'connected' && e.json?.subscription === 'flood');
    // Stop reading: the socket's buffers fill, then bufferedAmount grows past the bound.
    (reader.socket as unknown as { _socket: { pause(): void } })._socket.pause();
    await using pub = new StreamPublisher({ projectId: 'ws-flood', stage: 'rewrite', broker: strict.broker });
    const big = 'x'.repeat(4096);
    const closed = reader.closed;
    let sent = 0;
    while (strict.server.hub.size > 0 && sent < 5000) {
      await pub.publishProgress(sent++, 5000, big);
    }
    assert.ok(strict.server.hub.size === 0, 'the hub dropped the slow client');
    (reader.socket as unknown as { _socket: { resume(): void } })._socket.resume();
    const { code } = await closed;
    assert.ok(code === MUX_CLOSE.slowConsumer || code === 1006, `closed with ${code}`);
  });
});
