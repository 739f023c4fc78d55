// SSEClient on Node 20 against a real HTTP server (listen(0)): a worker or a CLI can watch a stream too.
// Run by `npm run test:client` after the browser tests: node --import tsx --test client/node/*.node-test.ts
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createSSEClient, type SSEClient, type SSEClientEventMap } from '../src/sse-client.js';

type Script = (req: IncomingMessage, res: ServerResponse) => void;
const scripts: Script[] = [];
const requests: IncomingMessage[] = [];
let server: Server;
let baseUrl: string;

function sse(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
}

function send(res: ServerResponse, type: string, id: string | undefined, data: object): void {
  res.write(`${id ? `id: ${id}\n` : ''}event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
}

function next<K extends keyof SSEClientEventMap>(client: SSEClient, type: K, predicate: (data: SSEClientEventMap[K]) => boolean = () => true) {
  return new Promise<SSEClientEventMap[K]>((resolve) => {
    const handler = (data: SSEClientEventMap[K]) => {
      if (!predicate(data)) return;
      client.off(type, handler);
      resolve(data);
    };
    client.on(type, handler);
  });
}

before(async () => {
  server = createServer((req, res) => {
    requests.push(req);
    const script = scripts.shift();
    if (script) script(req, res);
    else res.writeHead(500).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

describe('SSEClient on Node', () => {
  it('refuses a relative baseUrl, saying what to pass', () => {
    assert.throws(() => createSSEClient('1', 'rewrite'), /outside a browser, pass an absolute baseUrl/);
  });

  it('streams, resumes with Last-Event-ID after the server drops it, and sends the bearer token', async () => {
    scripts.push(
      (_req, res) => {
        sse(res);
        res.write('retry: 10\n\n');
        send(res, 'connected', undefined, { project_id: '1', stage: 'rewrite', resumed: false });
        send(res, 'token', '1-0', { stage: 'rewrite', content: 'Hello', full_text: 'Hello' });
        setTimeout(() => res.destroy(), 20);
      },
      (_req, res) => {
        sse(res);
        send(res, 'connected', undefined, { project_id: '1', stage: 'rewrite', resumed: true });
        send(res, 'token', '2-0', { stage: 'rewrite', content: ', world', full_text: 'Hello, world' });
        send(res, 'done', '3-0', { stage: 'rewrite', full_text: 'Hello, world', metadata: {} });
      },
    );
    const client = createSSEClient('1', 'rewrite', { baseUrl, token: async () => 'jwt', closeOnDone: true });
    const text: string[] = [];
    client.on('token', (message) => text.push(message.content));
    const closed = next(client, 'disconnected', (detail) => !detail.willReconnect);
    client.connect();
    const detail = await closed;

    assert.equal(detail.reason, 'done');
    assert.equal(text.join(''), 'Hello, world');
    assert.equal(requests.at(-2)?.url, '/api/v1/sse/projects/1/stages/rewrite/stream/?compact=1', 'asks for compact token events by default');
    assert.equal(requests.at(-2)?.headers.authorization, 'Bearer jwt');
    assert.equal(requests.at(-1)?.headers['last-event-id'], '1-0');
  });

  it('rebuilds full_text of compact tokens, and resumes from before a token that does not continue the text', async () => {
    scripts.push(
      (_req, res) => {
        sse(res);
        res.write('retry: 10\n\n');
        send(res, 'token', '1-0', { stage: 'rewrite', content: 'Hello', full_text: 'Hello' });
        send(res, 'token', '2-0', { stage: 'rewrite', content: ',', offset: 5 });
        // A piece at the wrong place (a token between them was lost): never rendered as text.
        send(res, 'token', '4-0', { stage: 'rewrite', content: 'world', offset: 9 });
      },
      (_req, res) => {
        sse(res);
        send(res, 'token', '3-0', { stage: 'rewrite', content: ' big ', full_text: 'Hello, big ' });
        send(res, 'token', '4-0', { stage: 'rewrite', content: 'world', offset: 11 });
        send(res, 'done', '5-0', { stage: 'rewrite', full_text: 'Hello, big world', metadata: {} });
      },
    );
    const client = createSSEClient('1', 'rewrite', { baseUrl, closeOnDone: true });
    const texts: string[] = [];
    client.on('token', (message) => texts.push(message.full_text));
    const closed = next(client, 'disconnected', (detail) => !detail.willReconnect);
    client.connect();
    await closed;
    assert.deepEqual(texts, ['Hello', 'Hello,', 'Hello, big ', 'Hello, big world']);
    assert.equal(requests.at(-1)?.headers['last-event-id'], '2-0', 'the refused token is asked for again');
  });

  it('retries a 503 that sent Retry-After, after exactly that delay, and reports it as an http failure', async () => {
    const before = requests.length;
    scripts.push(
      (_req, res) => {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '0' }).end(JSON.stringify({ error: { code: 'unavailable', message: 'Redis is down' } }));
      },
      (_req, res) => {
        sse(res);
        send(res, 'connected', undefined, { project_id: '1', stage: 'rewrite', resumed: false });
      },
    );
    const client = createSSEClient('1', 'rewrite', { baseUrl });
    const retrying = next(client, 'reconnecting');
    const connected = next(client, 'connected');
    client.connect();
    const { delayMs, failure } = await retrying;
    assert.equal(delayMs, 0);
    assert.deepEqual(failure, { kind: 'http', status: 503, code: 'unavailable', message: 'Redis is down', server: baseUrl, attempts: 1, fatal: false });
    await connected;
    assert.equal(client.failure, undefined, 'an open stream clears it');
    client.disconnect();
    assert.equal(requests.length - before, 2);
  });

  it('stops on 401 without retrying', async () => {
    const before = requests.length;
    scripts.push((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'unauthorized', message: 'token expired' } }));
    });
    const client = createSSEClient('1', null, { baseUrl });
    const closed = next(client, 'disconnected');
    client.connect();
    const detail = await closed;
    assert.deepEqual(detail, {
      reason: 'http_status',
      status: 401,
      error: { code: 'unauthorized', message: 'token expired' },
      willReconnect: false,
      failure: { kind: 'http', status: 401, code: 'unauthorized', message: 'token expired', server: baseUrl, attempts: 1, fatal: true },
    });
    assert.equal(client.state, 'closed');
    assert.equal(requests.length - before, 1);
  });
});
