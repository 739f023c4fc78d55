// MuxCore, the shared connection, on a scripted fetch: why a subscription stops flowing (a connection that gets no
// response, a subscribe refused for good or for now), and an SSEClient on the page's shared connection reporting it.
import { expect, waitUntil } from '@open-wc/testing';
import { configureSharing } from './share.js';
import { MuxCore, type MuxSink, type MuxStatus } from './mux-core.js';
import { createSSEClient, type SSEClient } from '../sse-client.js';
import { FakeClock } from '../../test/fake-clock.js';
import { Recorder } from '../../test/recorder.js';
import { ScriptedServer, errorResponse } from '../../test/sse-server.js';

// This page's clients share one connection of the page (no worker, no leader tab): MuxCore in this very page.
configureSharing({ mode: 'page' });

const spec = { projectId: '1', stage: 'rewrite', snapshot: true, cursor: '', public: false } as const;

function sink(statuses: MuxStatus[]): MuxSink {
  return { token: async () => 'a-token', status: (status) => statuses.push(status), event: () => {} };
}

/** A subscribe answer of the server: one result per subscription. */
function refused(subscription: string, status: number, code: string): Response {
  return new Response(JSON.stringify({ results: [{ subscription, ok: false, status, error: { code, message: `${code} (scripted)` } }] }), {
    status: 200,
    headers: { 'content-type': 'application/json' },
  });
}

describe('MuxCore: why a subscription stops flowing', () => {
  let server: ScriptedServer;
  let clock: FakeClock;
  beforeEach(() => {
    server = new ScriptedServer();
    clock = new FakeClock();
  });
  afterEach(() => {
    clock.tick(0); // the last subscription went: the connection closes (lingerMs 0)
    server.closeAll();
  });
  const newCore = () => new MuxCore('http://127.0.0.1:1', { fetch: server.fetch, clock, backoff: () => 10, lingerMs: 0 });

  it('marks a connection attempt that got no response as a network failure', async () => {
    server.respondWith(() => {
      throw new TypeError('Failed to fetch');
    });
    const core = newCore();
    const statuses: MuxStatus[] = [];
    const handle = core.add(spec, sink(statuses));
    await waitUntil(() => statuses.some((status) => status.state === 'reconnecting'), 'a retry');
    expect(statuses.at(-1)).to.deep.equal({ state: 'reconnecting', attempt: 1, delayMs: 10, detail: { reason: 'network', cause: 'TypeError: Failed to fetch', failure: 'network' } });
    handle.remove();
  });

  it('opens again with a new connection id when the server holds the one it sent (409 connection_exists: its GET arrived twice)', async () => {
    server.respondWith(errorResponse(409, 'connection_exists'));
    const core = newCore();
    const statuses: MuxStatus[] = [];
    const handle = core.add(spec, sink(statuses));
    await waitUntil(() => statuses.some((status) => status.state === 'reconnecting'), 'a retry, not a failure');
    expect(statuses.some((status) => status.state === 'failed')).to.equal(false);
    clock.tick(10);
    await server.nextStream();
    const ids = server.requests.map((request) => request.headers.get('SSE-Connection'));
    expect(ids).to.have.length(2);
    expect(ids[1]).to.be.a('string').and.not.equal(ids[0]);
    handle.remove();
  });

  for (const [name, status, code, expected] of [
    ['fails a subscription refused with auth_not_configured for good', 503, 'auth_not_configured', 'failed'],
    ['retries a subscription refused with a 503 unavailable', 503, 'unavailable', 'reconnecting'],
  ] as const) {
    it(name, async () => {
      const core = newCore();
      const statuses: MuxStatus[] = [];
      const handle = core.add(spec, sink(statuses));
      const stream = await server.nextStream();
      server.respondWith(() => refused('s:1.rewrite:1', status, code));
      stream.event('connection', { type: 'connection', connection: 'c'.repeat(22) });
      await waitUntil(() => statuses.length > 1, 'the subscribe answered');
      const last = statuses.at(-1)!;
      expect(last.state).to.equal(expected);
      expect('detail' in last && last.detail).to.deep.include({ reason: 'http_status', status, error: { code, message: `${code} (scripted)` } });
      handle.remove();
    });
  }
});

describe('SSEClient on the shared connection: failures', () => {
  let client: SSEClient | undefined;
  afterEach(() => {
    client?.disconnect();
  });

  it('reports a server it cannot reach as a network failure, attempt after attempt', async function () {
    this.timeout(15_000);
    // Nothing listens there (Chromium refuses the port): the TypeError a CORS refusal gives too.
    client = createSSEClient('1', 'rewrite', { baseUrl: 'http://127.0.0.1:1', token: 'a-token' });
    expect(client.shared, 'a subscription on the page’s shared connection').to.equal(true);
    const events = new Recorder(client);
    client.connect();
    await events.until(() => events.of('reconnecting').some((event) => event.failure?.attempts === 2));
    const seen = events.of('reconnecting').map((event) => event.failure);
    expect(seen[0]).to.deep.include({ kind: 'network', attempts: 1, server: 'http://127.0.0.1:1', fatal: false });
    expect(seen[1]).to.deep.include({ kind: 'network', attempts: 2 });
    expect(events.of('disconnected')[1]?.failure?.attempts).to.equal(2);
  });

  it('stops on auth_not_configured answered by the connection itself', async () => {
    const server = new ScriptedServer();
    const original = window.fetch;
    // The shared connection looks fetch up at each attempt: this page's, scripted.
    window.fetch = server.fetch;
    try {
      server.respondWith(() => errorResponse(503, 'auth_not_configured'));
      client = createSSEClient('1', 'rewrite', { baseUrl: 'http://127.0.0.2:1', token: 'a-token' });
      const events = new Recorder(client);
      client.connect();
      await events.count('disconnected', 1);
      expect(events.of('disconnected')[0]).to.deep.include({ willReconnect: false, status: 503 });
      expect(events.of('disconnected')[0]?.failure).to.deep.include({ kind: 'http', code: 'auth_not_configured', fatal: true });
      expect(client.state).to.equal('closed');
      expect(events.of('reconnecting')).to.deep.equal([]);
    } finally {
      window.fetch = original;
    }
  });
});
