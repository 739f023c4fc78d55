// SSEClient against the real hub (a real redis-server, real HTTP), over each transport: the same scenarios, the
// same assertions. `sse` is the client's own stream; `websocket` the multiplexed connection over one WebSocket
// (the `ws` package's client: Node 20 has no WebSocket of its own).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { signToken } from '../../server/src/http/auth.js';
import { StreamPublisher } from '../../server/src/publisher.js';
import { startHarness, type Harness } from '../../server/test/harness.js';
import { freePort } from '../../server/test/redis-server.js';
import { waitUntil } from '../../server/test/wait-until.js';
import { createSSEClient, type SSEClient, type SSEClientEventMap, type SSEClientOptions, type StateChangeEvent } from '../src/sse-client.js';
import type { Transport } from '../src/shared/mux-core.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long';
let h: Harness;
let projects = 0;
const clients: SSEClient[] = [];

before(async () => {
  h = await startHarness({ settings: { authSecret: SECRET, heartbeatMs: 200 } });
});
after(async () => {
  for (const client of clients) client.disconnect();
  await h.close();
});

function next<K extends keyof SSEClientEventMap>(client: SSEClient, type: K, predicate: (data: SSEClientEventMap[K]) => boolean = () => true, timeoutMs = 10_000) {
  return new Promise<SSEClientEventMap[K]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} within ${timeoutMs} ms`)), timeoutMs);
    const handler = (data: SSEClientEventMap[K]) => {
      if (!predicate(data)) return;
      clearTimeout(timer);
      client.off(type, handler);
      resolve(data);
    };
    client.on(type, handler);
  });
}

for (const transport of ['sse', 'websocket'] satisfies Transport[]) {
  describe(`SSEClient over ${transport}`, () => {
    const project = () => `${transport}-${++projects}`;
    const client = (projectId: string, stage: string | null, options: SSEClientOptions = {}) => {
      const made = createSSEClient(projectId, stage, { baseUrl: h.url, transport, WebSocket: WebSocket as unknown as typeof globalThis.WebSocket, ...options });
      clients.push(made);
      return made;
    };
    /** Every token's content and the done's full_text, as a handler saw them. */
    const record = (sse: SSEClient) => {
      const seen = { tokens: [] as string[], ids: [] as string[], done: undefined as string | undefined };
      sse.on('token', (m) => {
        seen.tokens.push(m.content);
        seen.ids.push(m.id ?? '');
      });
      sse.on('done', (m) => (seen.done = m.full_text));
      return seen;
    };

    it('streams a stage: every token once, in order, with its full_text, then done', async () => {
      const id = project();
      const sse = client(id, 'rewrite');
      const seen = record(sse);
      const texts: string[] = [];
      sse.on('token', (m) => texts.push(m.full_text));
      sse.connect();
      await next(sse, 'connected');
      await using pub = new StreamPublisher({ projectId: id, stage: 'rewrite', broker: h.broker });
      let text = '';
      for (const word of ['Once', ' upon', ' a', ' time']) await pub.publishToken(word, (text += word));
      await pub.publishDone(text);
      await waitUntil(() => seen.done !== undefined, 'done');
      assert.deepEqual(seen.tokens, ['Once', ' upon', ' a', ' time']);
      assert.deepEqual(texts, ['Once', 'Once upon', 'Once upon a', 'Once upon a time']);
      assert.equal(seen.done, 'Once upon a time');
      sse.disconnect();
    });

    it('starts mid-stage with the snapshot, and continues its text exactly', async () => {
      const id = project();
      await using pub = new StreamPublisher({ projectId: id, stage: 'rewrite', broker: h.broker });
      await pub.publishToken('Hello', 'Hello');
      const sse = client(id, null);
      const snapshot = next(sse, 'snapshot');
      const texts: string[] = [];
      sse.on('token', (m) => texts.push(m.full_text));
      sse.connect();
      assert.equal((await snapshot).stages.rewrite?.text, 'Hello');
      await pub.publishToken(' world', 'Hello world');
      await waitUntil(() => texts.length === 1, 'the next token');
      assert.deepEqual(texts, ['Hello world']);
      sse.disconnect();
    });

    it('resumes exactly after the demo cuts the connection mid-stage: no gap, no duplicate', async () => {
      const id = project();
      const sse = client(id, 'rewrite', { retryMs: 50, backoff: () => 50 });
      const seen = record(sse);
      sse.connect();
      await next(sse, 'connected');
      await using pub = new StreamPublisher({ projectId: id, stage: 'rewrite', broker: h.broker });
      let text = '';
      const published: string[] = [];
      for (let i = 0; i < 60; i++) {
        published.push(` ${i}`);
        await pub.publishToken(` ${i}`, (text += ` ${i}`));
        if (i === 20) {
          const reconnected = next(sse, 'connected', (m) => m.resumed === true);
          const cut = await fetch(`${h.url}/api/v1/demo/projects/${id}/cut/`, { method: 'POST', headers: { 'Content-Type': 'application/json' } });
          assert.equal(cut.status, 200);
          await reconnected;
        }
      }
      await pub.publishDone(text);
      await waitUntil(() => seen.done !== undefined, 'done');
      assert.deepEqual(seen.tokens, published);
      assert.equal(new Set(seen.ids).size, seen.ids.length, 'no id twice');
      sse.disconnect();
    });

    it('stops for good on a token for another project (403) and on a bad token (401), with the server’s error', async () => {
      const id = project();
      const other = client(id, null, { token: await signToken(SECRET, ['someone-else']) });
      const refused = next(other, 'disconnected');
      other.connect();
      const detail = await refused;
      assert.equal(detail.willReconnect, false);
      assert.equal(detail.status, 403);
      assert.equal(detail.error?.code, 'forbidden');
      assert.equal(other.state, 'closed');

      const bad = client(id, null, { token: 'not.a.jwt' });
      const unauthorized = next(bad, 'disconnected');
      bad.connect();
      assert.equal((await unauthorized).status, 401);
      assert.equal(bad.state, 'closed');
    });

    it('asks its token source again when the token expires, and resumes with no gap', async () => {
      const id = project();
      let asked = 0;
      const sse = client(id, 'rewrite', {
        token: async () => {
          asked++;
          // The first token lives one second; the next ones an hour.
          return signToken(SECRET, [id], asked === 1 ? 1 : 3600);
        },
      });
      const seen = record(sse);
      sse.connect();
      await next(sse, 'connected');
      await using pub = new StreamPublisher({ projectId: id, stage: 'rewrite', broker: h.broker });
      const expired = next(sse, 'token_expired', () => true, 5000);
      await pub.publishToken('a', 'a');
      await expired;
      await pub.publishToken('b', 'ab');
      await pub.publishDone('ab');
      await waitUntil(() => seen.done !== undefined, 'done after the new token');
      assert.deepEqual(seen.tokens, ['a', 'b']);
      assert.ok(asked >= 2, 'the token source was asked again');
      sse.disconnect();
    });
  });
}

// A newcomer's first hour: a server that cannot be reached, and a token sent to a server without token keys.
describe('SSEClient failures, as its events report them', () => {
  let open: Harness;
  before(async () => {
    open = await startHarness({ broker: 'memory' }); // no SSE_AUTH_SECRET, no public key
  });
  after(async () => {
    for (const client of clients) client.disconnect();
    await open.close();
  });

  for (const transport of ['sse', 'websocket'] satisfies Transport[]) {
    const client = (baseUrl: string, options: SSEClientOptions = {}) => {
      const made = createSSEClient('p1', 'rewrite', { baseUrl, transport, WebSocket: WebSocket as unknown as typeof globalThis.WebSocket, ...options });
      clients.push(made);
      return made;
    };

    it(`over ${transport}: names a server it cannot reach as a network failure, counting the attempts in a row`, async () => {
      const baseUrl = `http://127.0.0.1:${await freePort()}`;
      const sse = client(baseUrl, { backoff: () => 5 });
      const states: StateChangeEvent[] = [];
      sse.on('state', (change) => states.push(change));
      const second = next(sse, 'reconnecting', (event) => event.failure?.attempts === 2);
      sse.connect();
      const { failure } = await second;
      sse.disconnect();
      assert.deepEqual({ ...failure, message: typeof failure?.message }, { kind: 'network', message: 'string', server: baseUrl, attempts: 2, fatal: false });
      assert.equal(states.find((change) => change.state === 'reconnecting')?.failure?.kind, 'network', 'the state event carries it too');
      assert.equal(sse.failure, undefined, 'disconnect() clears it');
    });

    it(`over ${transport}: stops for good on auth_not_configured (503, no Retry-After), with the server's code`, async () => {
      const sse = client(open.url, { token: 'a-token', backoff: () => 5 });
      let retries = 0;
      sse.on('reconnecting', () => retries++);
      const closed = next(sse, 'disconnected');
      sse.connect();
      const detail = await closed;
      assert.equal(detail.willReconnect, false);
      assert.equal(detail.status, 503);
      assert.equal(detail.error?.code, 'auth_not_configured');
      assert.deepEqual(
        { ...detail.failure, message: undefined },
        { kind: 'http', status: 503, code: 'auth_not_configured', message: undefined, server: open.url, attempts: 1, fatal: true },
      );
      assert.match(detail.failure?.message ?? '', /SSE_AUTH_SECRET/);
      assert.equal(sse.state, 'closed');
      assert.equal(retries, 0, 'never retried');
    });
  }
});
