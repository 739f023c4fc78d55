import { expect } from '@open-wc/testing';
import { createSSEClient, ConnectionState, DisconnectReason, SSEClient, type SSEClientOptions } from './sse-client.js';
import { FakeClock } from '../test/fake-clock.js';
import { Recorder } from '../test/recorder.js';
import { ScriptedServer, errorResponse, startWorker, worker } from '../test/sse-server.js';
import { connected, done, snapshot, stageUpdate, token } from '../test/fixtures.js';

let server: ScriptedServer;
let clients: SSEClient[];

function client(stageName: string | null = 'rewrite', options: SSEClientOptions = {}): SSEClient {
  const created = createSSEClient('1', stageName, options);
  clients.push(created);
  return created;
}

function setOnline(online: boolean): void {
  Object.defineProperty(navigator, 'onLine', { configurable: true, get: () => online });
  window.dispatchEvent(new Event(online ? 'online' : 'offline'));
}

beforeEach(() => {
  server = new ScriptedServer();
  clients = [];
});

afterEach(() => {
  for (const each of clients) each.disconnect();
  server.closeAll();
  Reflect.deleteProperty(navigator, 'onLine');
});

describe('SSEClient through a scripted server (msw)', () => {
  before(startWorker);
  beforeEach(() => worker.use(server.handler()));
  afterEach(() => worker.resetHandlers());

  it('requests the stage endpoint as an event stream and delivers typed events', async () => {
    const sse = client();
    const events = new Recorder(sse);
    expect(sse.state).to.equal(ConnectionState.closed);
    sse.connect();
    expect(sse.state).to.equal(ConnectionState.connecting);
    const stream = await server.nextStream();

    expect(new URL(stream.request.url).pathname).to.equal('/api/v1/sse/projects/1/stages/rewrite/');
    expect(stream.request.headers.get('accept')).to.equal('text/event-stream');
    expect(stream.lastEventId).to.equal(null);
    stream.write('retry: 3000\n\n').event('connected', connected()).event('token', token('rewrite', 'Once', 'Once'), '1-0');
    await events.count('token', 1);

    expect(sse.isConnected()).to.equal(true);
    expect(events.of('connected')[0]).to.deep.equal(connected());
    expect(events.of('token')[0]?.content).to.equal('Once');
    expect(sse.lastEventId).to.equal('1-0');
    expect(events.of('state').map((change) => change.state)).to.deep.equal(['connecting', 'open']);
  });

  it('delivers a snapshot as its own event, continues its text with compact tokens, and resumes after it without one', async () => {
    const sse = client(null, { backoff: () => 0 });
    const events = new Recorder(sse);
    sse.connect();
    const stream = await server.nextStream();
    expect(new URL(stream.request.url).searchParams.has('snapshot'), 'snapshots are asked for by default').to.equal(false);
    const state = snapshot({
      rewrite: { stage_update: stageUpdate('rewrite', 'processing', 20, 'Rewriting'), text: 'Once upon' },
      storyboard: { done: done('storyboard', 'Panel one') },
    });
    stream.event('connected', connected(null)).event('snapshot', state, '7-0');
    stream.event('token', { type: 'token', stage: 'rewrite', project_id: '1', timestamp: 1, content: ' a', offset: 9 }, '8-0');
    await events.count('token', 1);

    expect(events.of('snapshot')).to.deep.equal([state]);
    expect(events.of('token')[0]?.full_text, 'the compact token continues the snapshot text').to.equal('Once upon a');
    expect(events.of('message').map((event) => event.type)).to.deep.equal(['connected', 'snapshot', 'token']);

    stream.fail();
    const resumed = await server.nextStream();
    expect(resumed.lastEventId, 'a reconnect resumes, it does not fetch the state again').to.equal('8-0');
  });

  it('asks for no snapshot with `snapshot: false`', async () => {
    client('rewrite', { snapshot: false }).connect();
    const stream = await server.nextStream();
    const url = new URL(stream.request.url);
    expect(url.searchParams.get('snapshot')).to.equal('0');
    expect(url.searchParams.get('compact')).to.equal('1');
  });

  it('passes unknown event types through by name and every event through `message`', async () => {
    const sse = client();
    const events = new Recorder(sse, ['message', 'thumbnail']);
    sse.connect();
    const stream = await server.nextStream();
    stream.event('thumbnail', { type: 'thumbnail', url: '/a.png' }, '5-0');
    stream.write('data: not json\n\n');
    await events.count('message', 2);

    expect(events.of('thumbnail')).to.deep.equal([{ type: 'thumbnail', url: '/a.png' }]);
    expect(events.of('message')).to.deep.equal([
      { type: 'thumbnail', data: { type: 'thumbnail', url: '/a.png' }, id: '5-0' },
      { type: 'message', data: 'not json', id: undefined },
    ]);
    expect(sse.lastEventId, 'an event without id keeps the last one').to.equal('5-0');
  });

  it('uses the all-stages endpoint, and the authenticated one with a token function asked before each attempt', async () => {
    const clock = new FakeClock();
    let issued = 0;
    const sse = client(null, { token: async () => `jwt-${++issued}`, clock, backoff: () => 10 });
    const events = new Recorder(sse);
    sse.connect();
    const first = await server.nextStream();
    expect(new URL(first.request.url).pathname).to.equal('/api/v1/sse/projects/1/stream/');
    expect(first.request.headers.get('authorization')).to.equal('Bearer jwt-1');

    first.end();
    await events.until(() => sse.state === ConnectionState.reconnecting);
    clock.tick(10);
    const second = await server.nextStream();
    expect(second.request.headers.get('authorization')).to.equal('Bearer jwt-2');
  });

  it('resumes after a dropped connection with Last-Event-ID and loses nothing', async () => {
    const clock = new FakeClock();
    const sse = client('rewrite', { clock, backoff: () => 1000 });
    const events = new Recorder(sse);
    sse.connect();
    const first = await server.nextStream();
    first.event('connected', connected()).event('token', token('rewrite', 'a', 'a'), '1-0').event('token', token('rewrite', 'ab', 'b'), '2-0');
    await events.count('token', 2);

    first.fail();
    await events.until(() => sse.state === ConnectionState.reconnecting);
    expect(events.of('disconnected')[0]).to.include({ reason: DisconnectReason.network, willReconnect: true });
    clock.tick(1000);
    const second = await server.nextStream();
    expect(second.lastEventId).to.equal('2-0');
    second.event('connected', connected('rewrite', true)).event('token', token('rewrite', 'abc', 'c'), '3-0');
    await events.count('token', 3);

    expect(events.of('token').map((message) => message.content).join('')).to.equal('abc');
    expect(server.requests).to.have.length(2);
  });

  it("honours the server's retry: as the backoff base", async () => {
    const clock = new FakeClock();
    const bases: number[] = [];
    const sse = client('rewrite', {
      clock,
      backoff: ({ baseMs }) => {
        bases.push(baseMs);
        return baseMs;
      },
    });
    const events = new Recorder(sse);
    sse.connect();
    const stream = await server.nextStream();
    stream.write('retry: 3000\n\n').event('connected', connected());
    await events.count('connected', 1);
    stream.end();
    await events.count('reconnecting', 1);

    expect(bases).to.deep.equal([3000]);
    expect(events.of('reconnecting')[0]).to.deep.equal({ attempt: 1, delayMs: 3000, reason: DisconnectReason.streamEnded });
    clock.tick(2999);
    expect(sse.state).to.equal(ConnectionState.reconnecting);
    clock.tick(1);
    expect(sse.state).to.equal(ConnectionState.connecting);
    await server.nextStream();
  });

  it('stops for good on 401, with the server error in `disconnected`', async () => {
    const clock = new FakeClock();
    server.respondWith(() => errorResponse(401, 'unauthorized'));
    const sse = client('rewrite', { clock, token: 'expired' });
    const events = new Recorder(sse);
    sse.connect();
    await events.count('disconnected', 1);

    expect(sse.state).to.equal(ConnectionState.closed);
    expect(events.of('disconnected')).to.deep.equal([
      {
        reason: DisconnectReason.httpStatus,
        status: 401,
        error: { code: 'unauthorized', message: 'unauthorized (scripted)' },
        willReconnect: false,
        failure: { kind: 'http', status: 401, code: 'unauthorized', message: 'unauthorized (scripted)', server: location.origin, attempts: 1, fatal: true },
      },
    ]);
    expect(events.of('reconnecting')).to.deep.equal([]);
    expect(events.of('error'), 'a transport failure is never the task error').to.deep.equal([]);
    expect(clock.pending, 'no timer left behind').to.equal(0);
    expect(server.requests).to.have.length(1);
  });

  const fatal: Array<[string, () => Response]> = [
    ['400', () => errorResponse(400, 'bad_request')],
    ['403', () => errorResponse(403, 'forbidden')],
    ['404', () => errorResponse(404, 'not_found')],
    ['204', () => new Response(null, { status: 204 })],
    ['a 503 auth_not_configured (a token sent to a server without token keys)', () => errorResponse(503, 'auth_not_configured')],
    ['a 200 that is not text/event-stream', () => new Response('<!doctype html>', { headers: { 'content-type': 'text/html' } })],
  ];
  for (const [name, response] of fatal) {
    it(`does not retry after ${name}`, async () => {
      const clock = new FakeClock();
      server.respondWith(response);
      const sse = client('rewrite', { clock });
      const events = new Recorder(sse);
      sse.connect();
      await events.count('disconnected', 1);

      expect(sse.state).to.equal(ConnectionState.closed);
      expect(events.of('disconnected')[0]?.willReconnect).to.equal(false);
      expect(clock.pending).to.equal(0);
    });
  }

  it('counts failed attempts of one kind in a row, starts over on another kind, and clears them once open', async () => {
    const clock = new FakeClock();
    const unreachable = () => {
      throw new TypeError('Failed to fetch');
    };
    let tokenFails = false;
    server.respondWith(unreachable, unreachable, () => errorResponse(502, 'bad_gateway'));
    const sse = client('rewrite', {
      fetch: server.fetch,
      clock,
      backoff: () => 10,
      token: () => {
        if (tokenFails) throw new Error('session expired');
        return 'jwt';
      },
    });
    const events = new Recorder(sse);
    sse.connect();
    await events.count('reconnecting', 1);
    clock.tick(10);
    await events.count('reconnecting', 2);
    clock.tick(10);
    await events.count('reconnecting', 3);
    tokenFails = true;
    clock.tick(10);
    await events.count('reconnecting', 4);
    const seen = events.of('reconnecting').map(({ failure }) => [failure?.kind, failure?.status, failure?.attempts, failure?.message]);
    expect(seen).to.deep.equal([
      ['network', undefined, 1, 'Failed to fetch'],
      ['network', undefined, 2, 'Failed to fetch'],
      ['http', 502, 1, 'bad_gateway (scripted)'],
      ['token', undefined, 1, 'session expired'],
    ]);
    expect(events.of('state').filter((change) => change.state === 'reconnecting').map((change) => change.failure?.kind), 'state events carry it').to.deep.equal([
      'network',
      'network',
      'http',
      'token',
    ]);
    expect(sse.failure?.kind).to.equal('token');

    tokenFails = false;
    clock.tick(10);
    (await server.nextStream()).event('connected', connected());
    await events.count('connected', 1);
    expect(sse.failure, 'an open stream clears it').to.equal(undefined);
  });

  it('waits exactly Retry-After after a 503, then reconnects', async () => {
    const clock = new FakeClock();
    server.respondWith(() => errorResponse(503, 'unavailable', { 'retry-after': '2' }));
    const sse = client('rewrite', { clock, backoff: () => 50 });
    const events = new Recorder(sse);
    sse.connect();
    await events.count('reconnecting', 1);

    expect(events.of('disconnected')[0]).to.include({ reason: DisconnectReason.httpStatus, status: 503, willReconnect: true });
    expect(events.of('reconnecting')[0]).to.deep.equal({
      attempt: 1,
      delayMs: 2000,
      reason: DisconnectReason.httpStatus,
      failure: { kind: 'http', status: 503, code: 'unavailable', message: 'unavailable (scripted)', server: location.origin, attempts: 1, fatal: false },
    });
    clock.tick(1999);
    expect(sse.state).to.equal(ConnectionState.reconnecting);
    expect(server.requests).to.have.length(1);
    clock.tick(1);
    expect(sse.state).to.equal(ConnectionState.connecting);
    await server.nextStream();
  });

  it('retries 408, 429 and 5xx with backoff', async () => {
    const clock = new FakeClock();
    server.respondWith(
      () => errorResponse(408, 'timeout'),
      () => errorResponse(429, 'too_many_requests'),
      () => errorResponse(500, 'internal'),
    );
    const sse = client('rewrite', { clock, backoff: ({ attempt }) => attempt * 100 });
    const events = new Recorder(sse);
    sse.connect();
    for (const [attempt, status] of [[1, 408], [2, 429], [3, 500]] as const) {
      await events.count('reconnecting', attempt);
      expect(events.of('disconnected')[attempt - 1]?.status).to.equal(status);
      expect(events.of('reconnecting')[attempt - 1]?.delayMs).to.equal(attempt * 100);
      clock.tick(attempt * 100);
    }
    await server.nextStream();
    expect(server.requests).to.have.length(4);
  });

  it('cancels a pending retry on disconnect(); nothing reconnects afterwards', async () => {
    const clock = new FakeClock();
    const sse = client('rewrite', { clock, backoff: () => 1000 });
    const events = new Recorder(sse);
    sse.connect();
    (await server.nextStream()).end();
    await events.count('reconnecting', 1);
    expect(clock.pending).to.equal(1);

    sse.disconnect();
    expect(sse.state).to.equal(ConnectionState.closed);
    expect(clock.pending).to.equal(0);
    expect(events.of('disconnected').at(-1)).to.deep.equal({ reason: DisconnectReason.disconnect, willReconnect: false });
    clock.tick(60_000);
    expect(sse.state).to.equal(ConnectionState.closed);
    expect(server.requests).to.have.length(1);
  });

  it('makes disconnect() idempotent', async () => {
    const sse = client();
    const events = new Recorder(sse);
    sse.connect();
    await server.nextStream();
    await events.until(() => sse.isConnected());
    sse.disconnect().disconnect();
    sse.disconnect();
    expect(events.of('disconnected')).to.have.length(1);
    expect(events.of('state').map((change) => change.state)).to.deep.equal(['connecting', 'open', 'closed']);
  });

  it('closes a single-stage client after done when closeOnDone is set', async () => {
    const clock = new FakeClock();
    const sse = client('rewrite', { clock, closeOnDone: true });
    const events = new Recorder(sse);
    sse.connect();
    (await server.nextStream()).event('done', done('rewrite', 'The end.'), '9-0');
    await events.count('disconnected', 1);

    expect(events.of('done')).to.have.length(1);
    expect(events.of('disconnected')[0]).to.deep.equal({ reason: DisconnectReason.done, willReconnect: false });
    expect(sse.state).to.equal(ConnectionState.closed);
    expect(clock.pending).to.equal(0);
  });

  it('waits while the browser is offline and connects at once when it comes back', async () => {
    const clock = new FakeClock();
    Object.defineProperty(navigator, 'onLine', { configurable: true, get: () => false });
    const sse = client('rewrite', { clock });
    sse.connect();
    expect(sse.state).to.equal(ConnectionState.offline);
    expect(clock.pending, 'no polling while offline').to.equal(0);

    setOnline(true);
    expect(sse.state).to.equal(ConnectionState.connecting);
    await server.nextStream();
  });

  it('goes offline with the browser and skips the backoff when the network returns', async () => {
    const clock = new FakeClock();
    const sse = client('rewrite', { clock, backoff: () => 30_000 });
    const events = new Recorder(sse);
    sse.connect();
    (await server.nextStream()).event('token', token('rewrite', 'a', 'a'), '1-0');
    await events.count('token', 1);

    setOnline(false);
    expect(sse.state).to.equal(ConnectionState.offline);
    expect(events.of('disconnected')[0]).to.deep.equal({ reason: DisconnectReason.offline, willReconnect: true });
    setOnline(true);
    expect(sse.state).to.equal(ConnectionState.connecting);
    expect((await server.nextStream()).lastEventId).to.equal('1-0');
  });
});

describe('SSEClient with an injected fetch', () => {
  it('parses one event split across two chunks at every byte', async () => {
    const frame = new TextEncoder().encode(
      `id: 7-0\nevent: token\ndata: ${JSON.stringify(token('rewrite', '从前有一个故事', '故事'))}\n\n`,
    );
    for (let at = 1; at < frame.length; at++) {
      const sse = client('rewrite', { fetch: server.fetch });
      const events = new Recorder(sse, ['token']);
      sse.connect();
      const stream = await server.nextStream();
      stream.write(frame.slice(0, at));
      stream.write(frame.slice(at));
      await events.count('token', 1);
      expect(events.of('token')[0]?.content, `split at byte ${at}`).to.equal('故事');
      expect(sse.lastEventId).to.equal('7-0');
      sse.disconnect();
    }
  });

  it('parses a stream fed one byte at a time', async () => {
    const sse = client('rewrite', { fetch: server.fetch });
    const events = new Recorder(sse, ['token']);
    sse.connect();
    const stream = await server.nextStream();
    const bytes = new TextEncoder().encode(
      ': ping\n\n' + ['你', '好', '!'].map((piece, i) => `id: ${i}-0\nevent: token\ndata: ${JSON.stringify(token('rewrite', '', piece))}\n\n`).join(''),
    );
    for (const byte of bytes) stream.write(Uint8Array.of(byte));
    await events.count('token', 3);
    expect(events.of('token').map((message) => message.content).join('')).to.equal('你好!');
  });

  it('aborts and reconnects when no byte arrives for heartbeatMs x watchdogMultiplier', async () => {
    const clock = new FakeClock();
    const sse = client('rewrite', { fetch: server.fetch, clock, heartbeatMs: 100, watchdogMultiplier: 2, backoff: () => 10 });
    const events = new Recorder(sse);
    sse.connect();
    const stream = await server.nextStream();
    stream.event('connected', connected(), '1-0');
    await events.count('connected', 1);

    clock.tick(150);
    const drained = stream.drained();
    stream.ping();
    await drained;
    clock.tick(199);
    expect(sse.state, 'a ping restarted the window').to.equal(ConnectionState.open);
    clock.tick(1);
    expect(sse.state).to.equal(ConnectionState.reconnecting);
    expect(events.of('disconnected')[0]).to.deep.equal({ reason: DisconnectReason.watchdog, willReconnect: true });
    expect(stream.closed, 'the dead request was aborted').to.equal(true);

    clock.tick(10);
    expect((await server.nextStream()).lastEventId).to.equal('1-0');
  });

  it('reconnects exactly at the backoff delay, growing per attempt and reset once a connection stayed up', async () => {
    const clock = new FakeClock();
    const sse = client('rewrite', { fetch: server.fetch, clock, backoff: ({ attempt }) => attempt * 1000, stableAfterMs: 5000 });
    const events = new Recorder(sse);
    sse.connect();
    (await server.nextStream()).fail();
    await events.count('reconnecting', 1);

    clock.tick(999);
    expect(sse.state).to.equal(ConnectionState.reconnecting);
    clock.tick(1);
    expect(sse.state).to.equal(ConnectionState.connecting);
    (await server.nextStream()).fail();
    await events.count('reconnecting', 2);
    expect(events.of('reconnecting')[1]).to.deep.include({ attempt: 2, delayMs: 2000 });

    clock.tick(1999);
    expect(sse.state).to.equal(ConnectionState.reconnecting);
    clock.tick(1);
    const stable = await server.nextStream();
    await events.until(() => sse.state === ConnectionState.open);
    clock.tick(5000);
    stable.end();
    await events.count('reconnecting', 3);
    expect(events.of('reconnecting')[2]).to.deep.include({ attempt: 1, delayMs: 1000 });
  });

  it('keeps streaming when a handler throws', async () => {
    const sse = client('rewrite', { fetch: server.fetch });
    const events = new Recorder(sse, ['token']);
    // The client reports a handler's exception through reportError (like an uncaught error) and carries on.
    const thrown: unknown[] = [];
    const original = globalThis.reportError;
    globalThis.reportError = (error) => thrown.push(error);
    try {
      sse.on('token', () => {
        throw new Error('handler bug');
      });
      sse.connect();
      const stream = await server.nextStream();
      stream.event('token', token('rewrite', 'a', 'a')).event('token', token('rewrite', 'ab', 'b'));
      await events.count('token', 2);
      expect(thrown).to.have.length(2);
      expect(sse.state).to.equal(ConnectionState.open);
    } finally {
      globalThis.reportError = original;
    }
  });

  it('delivers nothing more once a handler disconnects, not even the rest of the chunk', async () => {
    const sse = client('rewrite', { fetch: server.fetch });
    const seen: string[] = [];
    sse.on('token', (message) => {
      seen.push(message.content);
      sse.disconnect();
    });
    const events = new Recorder(sse, ['disconnected']);
    sse.connect();
    (await server.nextStream()).event('token', token('rewrite', 'a', 'a')).event('token', token('rewrite', 'ab', 'b'));
    await events.count('disconnected', 1);
    expect(seen).to.deep.equal(['a']);
  });

  it('treats a failing token function as a retryable failure', async () => {
    const clock = new FakeClock();
    const sse = client('rewrite', {
      fetch: server.fetch,
      clock,
      token: () => Promise.reject(new Error('auth server down')),
      backoff: () => 100,
    });
    const events = new Recorder(sse);
    sse.connect();
    await events.count('reconnecting', 1);
    expect(events.of('disconnected')[0]).to.deep.include({ reason: DisconnectReason.network, willReconnect: true });
    expect(server.requests).to.have.length(0);
  });

  it('refuses invalid ids and a relative baseUrl with messages that say how to fix them', () => {
    expect(() => createSSEClient('a b')).to.throw(TypeError, /projectId "a b" is invalid/);
    expect(() => createSSEClient('1', 'x/y')).to.throw(TypeError, /stageName "x\/y" is invalid/);
    expect(createSSEClient('1', 'rewrite', { baseUrl: 'https://example.com/' }).url).to.equal(
      'https://example.com/api/v1/sse/projects/1/stages/rewrite/',
    );
  });
});
