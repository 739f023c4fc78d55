/** mountSse on a plain node:http server and on a polka app; the stream log lines of the real server. */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, afterEach, describe, it } from 'node:test';
import { pino } from 'pino';
import polka from 'polka';
import { MUX_CONNECTION_HEADER, MUX_ROUTES, newConnectionId } from '../../protocol/mux.js';
import { MemoryBroker } from '../src/broker/memory-broker.js';
import type { CloseReason } from '../src/hub/client-stream.js';
import type { StreamOpening } from '../src/hub/hub-events.js';
import { mountDemo } from '../src/mock/mount-demo.js';
import { mountSse, type SseMount } from '../src/mount.js';
import { StreamPublisher } from '../src/publisher.js';
import { startServer, type RunningServer } from '../src/server.js';
import { TEST_SETTINGS, streamUrl } from './harness.js';
import { openStream, requestJson, type StreamReader } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function memoryBroker(): MemoryBroker {
  const broker = new MemoryBroker();
  cleanups.push(() => broker.close());
  return broker;
}

function track(mount: SseMount): SseMount {
  // Before the server closes: it waits for open streams.
  cleanups.push(() => mount.close());
  return mount;
}

async function watch(url: string, headers: Record<string, string> = {}): Promise<StreamReader> {
  const reader = await openStream(url, headers);
  cleanups.push(() => reader.close());
  await reader.waitFor((e) => e.event === 'connected');
  return reader;
}

describe('mountSse on a plain node:http server', () => {
  it('streams on the SSE paths and leaves every other request to the server\'s own handler', async () => {
    const server = createServer((req, res) => res.writeHead(200, { 'Content-Type': 'text/plain' }).end(`mine: ${req.url}`));
    const broker = memoryBroker();
    const sse = track(mountSse(server, { broker }));
    const base = await listen(server);

    assert.equal(await (await fetch(`${base}/about?x=1`)).text(), 'mine: /about?x=1');
    const reader = await watch(streamUrl(base, 'e1', 'rewrite'));
    assert.equal(sse.hub.size, 1);
    await using pub = new StreamPublisher({ projectId: 'e1', stage: 'rewrite', broker });
    await pub.publishToken('Hi', 'Hi');
    const token = await reader.waitFor((e) => e.event === 'token');
    assert.equal(token.json?.full_text, 'Hi');
    assert.match(await (await fetch(`${base}/metrics`)).text(), /^sse_events_delivered_total 1$/m);
    assert.equal((await requestJson(`${base}/healthz`)).body.broker, 'memory');
  });

  it('answers with the JSON 404 when the server has no handler, and the mock pipeline is off by default', async () => {
    const server = createServer();
    track(mountSse(server, { broker: memoryBroker() }));
    const base = await listen(server);
    const missing = await requestJson(`${base}/nothing`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'not_found');
    const run = await requestJson(`${base}/api/v1/projects/1/execute_stage/`, { method: 'POST', body: '{"stage_name":"rewrite"}' });
    assert.equal(run.status, 404);
  });

  it('gives the server back to its own handler on close(), ending the open streams', async () => {
    const server = createServer((_req, res) => res.writeHead(418).end());
    const sse = mountSse(server, { broker: memoryBroker() });
    const base = await listen(server);
    const reader = await watch(streamUrl(base, 'e2'));
    await sse.close();
    await reader.ended;
    assert.equal(sse.hub.size, 0);
    assert.equal((await fetch(streamUrl(base, 'e2'))).status, 418);
    assert.equal(server.listenerCount('request'), 1);
  });

  it('can leave /metrics to you, or feed no metrics at all', async () => {
    const server = createServer((_req, res) => res.writeHead(200).end('mine'));
    const sse = track(mountSse(server, { broker: memoryBroker(), metricsPath: false }));
    const base = await listen(server);
    assert.equal(await (await fetch(`${base}/metrics`)).text(), 'mine');
    assert.match(await sse.metrics!.registry.metrics(), /sse_streams_open 0/);
    assert.equal(track(mountSse(createServer(), { broker: memoryBroker(), metrics: false })).metrics, undefined);
  });

  it('refuses anything that is not a polka app or a server, saying what it takes', () => {
    assert.throws(() => mountSse({} as Server, { broker: new MemoryBroker() }), /must be a polka app or a node:http server/);
  });
});

describe('mountSse on a polka app', () => {
  it('adds the routes beside the app\'s own', async () => {
    const app = polka().get('/hello', (_req, res) => void res.end('hello'));
    const broker = memoryBroker();
    track(mountSse(app, { broker, heartbeatMs: 50 }));
    app.listen(0, '127.0.0.1');
    const server = app.server;
    await new Promise<void>((resolve) => (server.listening ? resolve() : server.once('listening', () => resolve())));
    cleanups.unshift(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    assert.equal(await (await fetch(`${base}/hello`)).text(), 'hello');
    const reader = await watch(streamUrl(base, 'e3'));
    await reader.waitForRaw(': ping\n\n');
  });
});

describe('the log lines of a stream', () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  let server: RunningServer | undefined;
  const broker = new MemoryBroker();
  after(async () => {
    await server?.close();
    await broker.close();
  });
  const waitForLine = async (predicate: (line: Record<string, unknown>) => boolean) => {
    let found: Record<string, unknown> | undefined;
    await waitUntil(() => (found = lines.find(predicate)) !== undefined, () => `such a log line is written; got ${JSON.stringify(lines)}`, 5000);
    return found!;
  };

  it('are one line at open and one at close with the same request id, its duration and event count', async () => {
    server = await startServer(TEST_SETTINGS, broker, pino({ level: 'info' }, sink));
    const reader = await openStream(streamUrl(server.url, 'log1', 'rewrite'));
    await reader.waitFor((e) => e.event === 'connected');
    const requestId = reader.headers.get('x-request-id');
    assert.match(requestId ?? '', /^[0-9a-f-]{36}$/);
    await using pub = new StreamPublisher({ projectId: 'log1', stage: 'rewrite', broker });
    await pub.publishToken('a', 'a');
    await pub.publishDone('a');
    await reader.waitFor((e) => e.event === 'done');
    reader.close();

    const opened = await waitForLine((l) => l.msg === 'stream opened' && l.req_id === requestId);
    assert.deepEqual(
      { project_id: opened.project_id, stage: opened.stage, resumed: opened.resumed, level: opened.level },
      { project_id: 'log1', stage: 'rewrite', resumed: false, level: 30 },
    );
    const closed = await waitForLine((l) => l.msg === 'stream closed' && l.req_id === requestId);
    assert.equal(closed.reason, 'client_gone');
    assert.equal(closed.events, 2);
    assert.equal(typeof closed.duration_ms, 'number');
    assert.equal(lines.filter((l) => l.req_id === requestId).length, 2);
  });

  it('take the request id a proxy sends in X-Request-Id, and ignore one that is not a plain token', async () => {
    const given = await openStream(streamUrl(server!.url, 'log2'), { 'X-Request-Id': 'nginx-7f3a' });
    assert.equal(given.headers.get('x-request-id'), 'nginx-7f3a');
    await waitForLine((l) => l.msg === 'stream opened' && l.req_id === 'nginx-7f3a');
    given.close();
    const odd = await openStream(streamUrl(server!.url, 'log2'), { 'X-Request-Id': 'a b"c' });
    const oddId = odd.headers.get('x-request-id');
    assert.match(oddId ?? '', /^[0-9a-f-]{36}$/);
    odd.close();
    await waitForLine((l) => l.msg === 'stream closed' && l.req_id === 'nginx-7f3a');
    await waitForLine((l) => l.msg === 'stream closed' && l.req_id === oddId);
  });

  it('name the request id in the head of a multiplexed connection, and in the error answers of both routes', async () => {
    const refused = await requestJson(streamUrl(server!.url, 'no%20spaces'), { headers: { 'X-Request-Id': 'bad-id-1' } });
    assert.equal(refused.status, 400);
    assert.equal(refused.headers.get('x-request-id'), 'bad-id-1');
    const id = newConnectionId();
    const mux = await openStream(server!.url + MUX_ROUTES.stream, { 'X-Request-Id': 'mux-1', [MUX_CONNECTION_HEADER]: id });
    assert.equal(mux.status, 200);
    assert.equal(mux.headers.get('x-request-id'), 'mux-1');
    const twice = await requestJson(server!.url + MUX_ROUTES.stream, { headers: { 'X-Request-Id': 'mux-2', [MUX_CONNECTION_HEADER]: id } });
    assert.equal(twice.status, 409);
    assert.equal(twice.headers.get('x-request-id'), 'mux-2');
    mux.close();
  });
});

describe('the events of the hub', () => {
  it('announce each stream once as it opens, goes live and closes, and each message once however many watch it', async () => {
    const server = createServer();
    const broker = memoryBroker();
    const sse = track(mountSse(server, { broker }));
    const seen: string[] = [];
    const openings: StreamOpening[] = [];
    const messages: Array<{ type: string; written: number }> = [];
    const closed: CloseReason[] = [];
    sse.hub.events.on('stream-opened', (stream, resumed) => seen.push(`opened ${stream.projectId} ${resumed}`));
    sse.hub.events.on('stream-live', (_stream, opening) => openings.push(opening));
    sse.hub.events.on('message', (message, written) => messages.push({ type: message.type, written }));
    sse.hub.events.on('stream-closed', (_stream, reason) => closed.push(reason));
    const base = await listen(server);

    const readers = [await watch(streamUrl(base, 'ev1', 'rewrite')), await watch(streamUrl(base, 'ev1'))];
    await waitUntil(() => seen.length === 2, 'both streams are announced');
    assert.deepEqual(seen, ['opened ev1 false', 'opened ev1 false']);
    assert.deepEqual(openings, [
      { events: 0, resumed: false, replayed: 0, reset: undefined },
      { events: 0, resumed: false, replayed: 0, reset: undefined },
    ]);
    await using pub = new StreamPublisher({ projectId: 'ev1', stage: 'rewrite', broker });
    await pub.publishToken('Hi', 'Hi');
    await Promise.all(readers.map((reader) => reader.waitFor((e) => e.event === 'token')));
    // Two topics (the stage, the project), one message each, each written to its one stream.
    assert.deepEqual(messages, [
      { type: 'token', written: 1 },
      { type: 'token', written: 1 },
    ]);
    for (const reader of readers) reader.close();
    await waitUntil(() => closed.length === 2, 'both streams are closed');
    assert.deepEqual(closed, ['client_gone', 'client_gone']);
  });
});

describe('mountDemo beside mountSse', () => {
  it('runs the mock pipeline and cuts a project\'s streams on the same polka app', async () => {
    const app = polka();
    const broker = memoryBroker();
    const sse = track(mountSse(app, { broker }));
    const demo = mountDemo(app, { hub: sse.hub, broker, maxDemoTasks: 1 });
    cleanups.push(() => demo.close());
    app.listen(0, '127.0.0.1');
    const server = app.server;
    await new Promise<void>((resolve) => (server.listening ? resolve() : server.once('listening', () => resolve())));
    cleanups.unshift(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const reader = await watch(streamUrl(base, 'dm1', 'rewrite'));
    const json = { 'Content-Type': 'application/json' };
    const run = await requestJson(`${base}/api/v1/projects/dm1/execute_stage/`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ stage_name: 'rewrite', input_data: { speed: 1000 } }),
    });
    assert.equal(run.status, 202);
    await reader.waitFor((e) => e.event === 'stage_update');
    const cut = await requestJson(`${base}/api/v1/demo/projects/dm1/cut/`, { method: 'POST', headers: json, body: '{}' });
    assert.deepEqual(cut.body, { cut: 1 });
    await reader.ended;
  });
});
