/**
 * deploy/nginx.conf in front of two real server processes sharing one private redis-server: nothing is
 * buffered, a client whose process dies resumes on the other without loss or duplicate, and both
 * processes deliver the same project. Runs Debian's nginx (`apt-get install nginx`).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { createSSEClient } from 'ai-story-sse/client';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { StreamPublisher } from '../src/publisher.js';
import { streamUrl } from './harness.js';
import { NGINX, startNginx, type RunningNginx } from './nginx.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { openStream, requestJson, type StreamReader } from './sse-reader.js';
import { MUX_ROUTES, newConnectionId } from '../../protocol/mux.js';
import { openMux } from './mux-reader.js';
import { waitUntil } from './wait-until.js';
import WebSocket from 'ws';

const missing = spawnSync(NGINX, ['-v']).status !== 0;
// Outside CI a machine without nginx skips with a message; in CI (.ci/run installs nginx) it must run.
const skip = missing && !process.env.CI ? `${NGINX} not found (apt-get install nginx, or set NGINX)` : false;

let redis: TestRedis;
let broker: RedisBroker;
let servers: ServerProcess[] = [];
let nginx: RunningNginx;
const open: StreamReader[] = [];

before(async () => {
  if (skip) return;
  redis = await startRedis();
  broker = new RedisBroker({ url: redis.url });
  const env = {
    REDIS_URL: redis.url,
    // A short retry: keeps the reconnect (and so the test) fast.
    SSE_RETRY_MS: '50',
    // Behind nginx every request comes from nginx's address: the per-address limit lives in nginx.
    SSE_MAX_STREAMS_PER_CLIENT: '20000',
  };
  servers = await Promise.all([startServerProcess(env), startServerProcess(env)]);
  nginx = await startNginx(servers.map((server) => server.port));
});
after(async () => {
  for (const reader of open) reader.close();
  await nginx?.close();
  await Promise.all(servers.map((server) => server.kill('SIGKILL')));
  await broker?.close();
  await redis?.close();
});

async function watch(base: string, projectId: string, stage?: string, headers: Record<string, string> = {}): Promise<StreamReader> {
  const reader = await openStream(streamUrl(base, projectId, stage), headers);
  open.push(reader);
  return reader;
}

/** How many streams a server process holds, from its own /metrics (which nginx does not pass). */
async function streamsOf(server: ServerProcess): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const count = /^sse_streams_open (\d+)$/m.exec(text)?.[1];
  if (count === undefined) throw new Error(`no sse_streams_open in ${server.url}/metrics:\n${text.slice(0, 500)}`);
  return Number(count);
}

async function streamsPerServer(): Promise<number[]> {
  return Promise.all(servers.map(streamsOf));
}

describe('nginx in front of two server processes', { skip }, () => {
  it('passes each event through before the next one is published: nothing is buffered or compressed', async () => {
    await using publisher = new StreamPublisher({ projectId: 'n1', stage: 'rewrite', broker });
    const reader = await watch(nginx.url, 'n1', 'rewrite', { 'Accept-Encoding': 'gzip' });
    // The positive control: the same stream straight from a server process, read the same way. Each event
    // must arrive here too within the same time, so a broken measurement (publisher, reader, the wait) fails
    // the test instead of passing for nginx; what nginx adds is then only the proxy.
    const direct = await watch(servers[0]!.url, 'n1', 'rewrite', { 'Accept-Encoding': 'gzip' });
    for (const stream of [reader, direct]) {
      assert.equal(stream.status, 200);
      assert.equal(stream.headers.get('content-type'), 'text/event-stream; charset=utf-8');
      assert.equal(stream.headers.get('content-encoding'), null);
      assert.equal(stream.headers.get('transfer-encoding'), 'chunked');
    }
    // `connected` comes with nothing published after it: the first bytes are not held either.
    await Promise.all([reader.waitFor((e) => e.event === 'connected', 3000), direct.waitFor((e) => e.event === 'connected', 3000)]);
    for (const word of ['one', 'two', 'three']) {
      const id = await publisher.publishToken(word, word);
      // Only once this event came through, by both ways, is the next one published.
      const [event, straight] = await Promise.all([reader.waitFor((e) => e.id === id, 2000), direct.waitFor((e) => e.id === id, 2000)]);
      assert.equal(event.json?.content, word);
      assert.equal(reader.events.length, 1 + ['one', 'two', 'three'].indexOf(word) + 1);
      assert.deepEqual(event, straight, 'nginx passes the event unchanged');
      assert.equal(direct.events.length, reader.events.length);
    }
    reader.close();
    direct.close();
  });

  it('would catch a buffering proxy: with buffering forced on and gzip for event streams, nothing comes through', async () => {
    // The negative control of the test above, on the same file with three lines changed. (With buffering alone
    // forced on, nginx 1.22 still passes chunked events at once; with gzip too, it holds even the headers.)
    const buffering = await startNginx(
      servers.map((server) => server.port),
      (config) =>
        config
          .replace('proxy_buffering off;', 'proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;')
          .replace(/^(\s*)gzip off;$/m, '$1gzip on; gzip_types text/event-stream; gzip_min_length 0;'),
    );
    const abort = new AbortController();
    try {
      await using publisher = new StreamPublisher({ projectId: 'n2', stage: 'rewrite', broker });
      await waitUntil(async () => (await streamsPerServer()).every((count) => count === 0), 'no stream left from the tests before');
      let received = '';
      const response = fetch(streamUrl(buffering.url, 'n2', 'rewrite'), { headers: { 'Accept-Encoding': 'gzip' }, signal: abort.signal }).then(
        async (answer) => {
          const reader = answer.body!.getReader();
          for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) received += Buffer.from(chunk.value).toString();
        },
        () => {},
      );
      // The servers say when the stream is open (and subscribed).
      await waitUntil(async () => (await streamsPerServer()).reduce((a, b) => a + b) === 1, 'the stream is open on a server');
      await publisher.publishToken('held', 'held');
      // A sleep, to show that something does not happen: the event stays in nginx.
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(received, '');
      abort.abort();
      await response;
    } finally {
      abort.abort();
      await buffering.close();
    }
  });

  it('lets each process deliver the same project to its own clients', async () => {
    await waitUntil(async () => (await streamsPerServer()).every((count) => count === 0), 'no stream left from the tests before');
    const readers = [await watch(nginx.url, 'n3'), await watch(nginx.url, 'n3')];
    await Promise.all(readers.map((reader) => reader.waitFor((e) => e.event === 'connected')));
    // least_conn sends the second stream to the process without one.
    assert.deepEqual(await streamsPerServer(), [1, 1]);
    await using a = new StreamPublisher({ projectId: 'n3', stage: 'rewrite', broker });
    await using b = new StreamPublisher({ projectId: 'n3', stage: 'storyboard', broker });
    const ids = [await a.publishToken('x', 'x'), await b.publishToken('y', 'y'), await a.publishDone('x', {})];
    for (const reader of readers) {
      await reader.waitFor((e) => e.id === ids[2]);
      assert.deepEqual(
        reader.events.slice(1).map((e) => e.id),
        ids,
      );
      reader.close();
    }
  });

  it('limits streams per browser address at nginx with the servers’ JSON 429 and Retry-After', async () => {
    const readers = await Promise.all(Array.from({ length: 64 }, () => watch(nginx.url, 'n4')));
    await Promise.all(readers.map((reader) => reader.waitFor((e) => e.event === 'connected')));
    const refused = await requestJson(streamUrl(nginx.url, 'n4'));
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.equal(refused.body.error.code, 'too_many_streams');
    for (const reader of readers) reader.close();
  });

  it('sends a multiplexed stream and its control requests to the same process, by its connection id', async () => {
    await waitUntil(async () => (await streamsPerServer()).every((count) => count === 0), 'no stream left from the tests before');
    // Enough connections that both processes hold some: a POST that reached the other process would get 404. The
    // ids are random, so 8 all land on one process once in 128 runs: then more, until both hold some.
    const readers = await Promise.all(Array.from({ length: 8 }, () => openMux(nginx.url)));
    while (readers.length < 40 && (await streamsPerServer()).some((count) => count === 0)) readers.push(await openMux(nginx.url));
    // One named in ?connection= on the stream (as an EventSource would), its POSTs with the header.
    const byQueryId = newConnectionId();
    const byQuery = await openStream(`${nginx.url}${MUX_ROUTES.stream}?connection=${byQueryId}`);
    open.push(...readers, byQuery);
    await byQuery.waitFor((e) => e.event === 'connection');
    const counts = await streamsPerServer();
    assert.equal(counts[0]! + counts[1]!, readers.length + 1);
    assert.ok(counts.every((count) => count > 0), `both processes hold connections: ${counts}`);
    for (const reader of readers) {
      const answer = await reader.subscribe({ subscriptions: [{ subscription: 'p:n6', project_id: 'n6' }, { subscription: 's:n6.rewrite', project_id: 'n6', stage: 'rewrite' }] });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.ok(answer.body.results.every((r: { ok: boolean }) => r.ok), JSON.stringify(answer.body));
    }
    const viaQuery = await requestJson(nginx.url + MUX_ROUTES.subscribe, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'SSE-Connection': byQueryId },
      body: JSON.stringify({ subscription: 'p:n6', project_id: 'n6' }),
    });
    assert.equal(viaQuery.status, 200, JSON.stringify(viaQuery.body));
    await using publisher = new StreamPublisher({ projectId: 'n6', stage: 'rewrite', broker });
    const first = await publisher.publishToken('a', 'a');
    for (const reader of readers) {
      await reader.waitFor((e) => e.id === first && e.json?.subscription === 's:n6.rewrite');
      await reader.waitFor((e) => e.id === first && e.json?.subscription === 'p:n6');
      const removed = await reader.unsubscribe({ subscription: 'p:n6' });
      assert.deepEqual(removed.body, { unsubscribed: ['p:n6'], unknown: [] });
    }
    await byQuery.waitFor((e) => e.id === first && e.json?.subscription === 'p:n6');
    const second = await publisher.publishToken('b', 'ab');
    for (const reader of readers) {
      await reader.waitFor((e) => e.id === second && e.json?.subscription === 's:n6.rewrite');
      assert.deepEqual(
        reader.of('p:n6').map((e) => e.event),
        ['connected', 'token', 'unsubscribed'],
      );
      reader.close();
    }
    byQuery.close();
  });

  // The same scenario over both transports: the client's own SSE stream, and the multiplexed connection over a
  // WebSocket through nginx's WebSocket location.
  for (const transport of ['sse', 'websocket'] as const) {
  it(`resumes a client whose process is killed on the other process, without loss or duplicate (${transport})`, async () => {
    // The process the run before killed comes back first.
    for (const server of servers) if (server.child.exitCode !== null || server.child.signalCode !== null) await server.restart();
    await waitUntil(async () => (await streamsPerServer()).every((count) => count === 0), 'no stream left from the tests before');
    const project = `n5-${transport}`;
    const total = 120;
    const tokens: string[] = [];
    const ids: string[] = [];
    let opens = 0;
    let done = false;
    const client = createSSEClient(project, 'rewrite', {
      baseUrl: nginx.url,
      heartbeatMs: 0,
      retryMs: 50,
      backoff: () => 50,
      transport,
      WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
    })
      .on('connected', () => opens++)
      .on('token', (message) => {
        tokens.push(message.full_text);
        ids.push(message.id!);
      })
      .on('done', () => (done = true));
    try {
      client.connect();
      await waitUntil(() => opens === 1, 'the first connection');
      await using publisher = new StreamPublisher({ projectId: project, stage: 'rewrite', broker });
      let text = '';
      const publishing = (async () => {
        for (let i = 0; i < total; i++) {
          await publisher.publishToken(` ${i}`, (text += ` ${i}`));
          await new Promise((resolve) => setTimeout(resolve, 3));
        }
        await publisher.publishDone(text, {});
      })();

      await waitUntil(() => tokens.length >= 20, 'the first tokens');
      const holder = (await streamsPerServer()).findIndex((count) => count === 1);
      assert.ok(holder >= 0, 'one process holds the stream');
      await servers[holder]!.kill('SIGKILL');
      await publishing;
      await waitUntil(() => done, 'the done message, after the resume');

      assert.equal(opens, 2, 'one resume');
      assert.equal(await streamsOf(servers[1 - holder]!), 1, 'the other process holds it now');
      // Every token once, in order: the full text of token i is " 0 1 ... i".
      const expected: string[] = [];
      for (let i = 0, all = ''; i < total; i++) expected.push((all += ` ${i}`));
      assert.deepEqual(tokens, expected);
      assert.equal(new Set(ids).size, total);
    } finally {
      client.disconnect();
    }
  });
  }
});
