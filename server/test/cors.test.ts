/**
 * Cross-origin use (SSE_CORS_ORIGINS, mountSse's corsOrigins), over real HTTP against a real redis-server: the
 * preflights of every endpoint a page calls, the headers on streams and on the JSON errors (401, 403, 429, 503), an
 * unlisted origin left without CORS headers, the WebSocket's Origin check, the unchanged behaviour without the
 * setting, and the settings the command refuses to start with.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { MUX_CLOSE, MUX_CONNECTION_HEADER, MUX_ROUTES, MUX_WS_ROUTE, newConnectionId } from '../../protocol/mux.js';
import { MemoryBroker } from '../src/broker/memory-broker.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { ConfigError, readConfig } from '../src/config.js';
import { signToken } from '../src/http/auth.js';
import { mountSse, type SseMount } from '../src/mount.js';
import { startServer, type RunningServer } from '../src/server.js';
import { TEST_SETTINGS } from './harness.js';
import { openMux, openWebSocketMux } from './mux-reader.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { openStream, requestJson, type StreamReader } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SECRET = 'cors-test-secret-that-is-long-enough-for-hs256';
const APP = 'http://localhost:8200';
const OTHER_APP = 'https://app.example.com';
const STRANGER = 'http://evil.example';

let redis: TestRedis;
const brokers: RedisBroker[] = [];
/** SSE_CORS_ORIGINS set, a secret, the demo on, two streams per client. */
let cors: RunningServer;
/** SSE_CORS_ORIGINS set, no secret, the demo off, one stream in all. */
let bare: RunningServer;
/** No SSE_CORS_ORIGINS: same-origin only, as before. */
let plain: RunningServer;
const readers: StreamReader[] = [];

before(async () => {
  redis = await startRedis();
  const broker = () => {
    const created = new RedisBroker({ url: redis.url });
    brokers.push(created);
    return created;
  };
  [cors, bare, plain] = await Promise.all([
    startServer({ ...TEST_SETTINGS, authSecret: SECRET, corsOrigins: [APP, OTHER_APP], maxStreamsPerClient: 2 }, broker()),
    startServer({ ...TEST_SETTINGS, demoEnabled: false, corsOrigins: [APP], maxStreams: 1 }, broker()),
    startServer({ ...TEST_SETTINGS, authSecret: SECRET }, broker()),
  ]);
});
after(async () => {
  for (const reader of readers) reader.close();
  await Promise.all([cors, bare, plain].map((server) => server?.close()));
  await Promise.all(brokers.map((broker) => broker.close()));
  await redis?.close();
});

/** Every path a page calls, with its method (project p1, stage rewrite). */
const HUB_ENDPOINTS: ReadonlyArray<readonly [string, string]> = [
  ['/api/v1/sse/projects/p1/stages/rewrite/', 'GET'],
  ['/api/v1/sse/projects/p1/', 'GET'],
  ['/api/v1/sse/projects/p1/stages/rewrite/stream/', 'GET'],
  ['/api/v1/sse/projects/p1/stream/', 'GET'],
  ['/api/v1/sse/projects/p1/stream', 'GET'],
  [MUX_ROUTES.stream, 'GET'],
  [MUX_ROUTES.subscribe, 'POST'],
  [MUX_ROUTES.unsubscribe, 'POST'],
  ['/api/v1/projects/p1/stages/rewrite/cancel/', 'POST'],
];
const DEMO_ENDPOINTS: ReadonlyArray<readonly [string, string]> = [
  ['/api/v1/projects/p1/execute_stage/', 'POST'],
  ['/api/v1/demo/projects/p1/cut/', 'POST'],
  ['/api/v1/demo/token/', 'POST'],
];

/** The request headers a page's fetch of the kit sends, as a browser names them in the preflight. */
const REQUESTED_HEADERS = 'authorization,content-type,last-event-id,sse-connection';

function preflight(base: string, path: string, origin: string, method: string) {
  return requestJson(base + path, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': REQUESTED_HEADERS },
  });
}

/** The names of a comma-separated header, lower case. */
const listOf = (value: string | null) => (value ?? '').split(',').map((item) => item.trim().toLowerCase()).filter(Boolean);

/** No `Access-Control-*` header at all. */
function assertNoCors(headers: Headers, what: string) {
  const found = [...headers.keys()].filter((name) => name.startsWith('access-control-'));
  assert.deepEqual(found, [], `${what}: no CORS header`);
}

/** The headers a listed origin's (non-preflight) answer carries. */
function assertCors(headers: Headers, origin: string, what: string) {
  assert.equal(headers.get('access-control-allow-origin'), origin, `${what}: the origin reflected`);
  assert.ok(listOf(headers.get('vary')).includes('origin'), `${what}: Vary: Origin (got ${headers.get('vary')})`);
  assert.ok(listOf(headers.get('access-control-expose-headers')).includes('retry-after'), `${what}: Retry-After readable`);
  assert.equal(headers.get('access-control-allow-credentials'), null, `${what}: no credentials`);
}

function assertError(response: { status: number; body: any }, status: number, code: string) {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.equal(response.body?.error?.code, code, JSON.stringify(response.body));
  assert.equal(typeof response.body.error.message, 'string');
}

async function stream(url: string, headers: Record<string, string>): Promise<StreamReader> {
  const reader = await openStream(url, headers);
  readers.push(reader);
  return reader;
}

describe('preflights from a listed origin', () => {
  it('answers 204 for every stream endpoint, the multiplexed stream and its POSTs, and cancel', async () => {
    for (const [path, method] of HUB_ENDPOINTS) {
      const answer = await preflight(cors.url, path, APP, method);
      const what = `OPTIONS ${path}`;
      assert.equal(answer.status, 204, `${what}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.headers.get('access-control-allow-origin'), APP, what);
      assert.ok(listOf(answer.headers.get('vary')).includes('origin'), `${what}: Vary: Origin`);
      assert.ok(listOf(answer.headers.get('access-control-allow-methods')).includes(method.toLowerCase()), `${what}: allows ${method}`);
      const allowed = listOf(answer.headers.get('access-control-allow-headers'));
      for (const header of REQUESTED_HEADERS.split(',')) assert.ok(allowed.includes(header), `${what}: allows the header ${header} (got ${allowed.join(', ')})`);
      assert.ok(Number(answer.headers.get('access-control-max-age')) > 0, `${what}: a Max-Age`);
      assert.equal(answer.headers.get('access-control-allow-credentials'), null, `${what}: no credentials`);
    }
  });

  it('answers each listed origin with its own origin', async () => {
    const answer = await preflight(cors.url, MUX_ROUTES.subscribe, OTHER_APP, 'POST');
    assert.equal(answer.status, 204);
    assert.equal(answer.headers.get('access-control-allow-origin'), OTHER_APP);
  });

  it("answers the demo's POST endpoints while the demo is on, and not while it is off", async () => {
    for (const [path, method] of DEMO_ENDPOINTS) {
      const on = await preflight(cors.url, path, APP, method);
      assert.equal(on.status, 204, `demo on, OPTIONS ${path}`);
      assert.equal(on.headers.get('access-control-allow-origin'), APP);
      const off = await preflight(bare.url, path, APP, method);
      assert.notEqual(off.status, 204, `demo off, OPTIONS ${path}`);
      assertNoCors(off.headers, `demo off, OPTIONS ${path}`);
    }
  });

  it('leaves paths that are not endpoints alone: 404 without CORS headers', async () => {
    const answer = await preflight(cors.url, '/api/v1/nothing/here/', APP, 'POST');
    assertError(answer, 404, 'not_found');
    assertNoCors(answer.headers, 'an unknown path');
  });
});

describe('an unlisted origin', () => {
  it('gets a 403 JSON error for its preflight, naming the setting, and no CORS header', async () => {
    for (const [path, method] of [...HUB_ENDPOINTS, ...DEMO_ENDPOINTS]) {
      const answer = await preflight(cors.url, path, STRANGER, method);
      assertError(answer, 403, 'origin_not_allowed');
      assert.match(answer.body.error.message, /SSE_CORS_ORIGINS/);
      assertNoCors(answer.headers, `OPTIONS ${path} from ${STRANGER}`);
    }
    // Near misses are other origins: another port, another scheme, a trailing slash.
    for (const origin of ['http://localhost:8201', 'https://localhost:8200', `${APP}/`, 'null']) {
      assertError(await preflight(cors.url, MUX_ROUTES.stream, origin, 'GET'), 403, 'origin_not_allowed');
    }
  });

  it('gets its answers without CORS headers (the browser keeps them from the page), the errors too', async () => {
    const reader = await stream(`${cors.url}/api/v1/sse/projects/c1/stages/rewrite/`, { Origin: STRANGER });
    assert.equal(reader.status, 200);
    assertNoCors(reader.headers, 'a stream');
    reader.close();
    const refused = await requestJson(`${cors.url}/api/v1/sse/projects/c1/stream/`, { headers: { Origin: STRANGER } });
    assertError(refused, 401, 'unauthorized');
    assertNoCors(refused.headers, 'a 401');
  });
});

describe('answers to a listed origin', () => {
  it('carry the CORS headers on a stream', async () => {
    const reader = await stream(`${cors.url}/api/v1/sse/projects/c2/stages/rewrite/`, { Origin: APP });
    assert.equal(reader.status, 200);
    assert.match(reader.headers.get('content-type') ?? '', /^text\/event-stream/);
    assertCors(reader.headers, APP, 'a stream');
    await reader.waitFor((e) => e.event === 'connected');
    reader.close();
    const token = await signToken(SECRET, ['c2'], 60);
    const authenticated = await stream(`${cors.url}/api/v1/sse/projects/c2/stream/`, { Origin: APP, Authorization: `Bearer ${token}` });
    assert.equal(authenticated.status, 200);
    assertCors(authenticated.headers, APP, 'an authenticated stream');
    authenticated.close();
  });

  it('carry them on the JSON errors too: 401, 403, 429 and 503, so the page can read the reason', async () => {
    const url = (base: string, project: string) => `${base}/api/v1/sse/projects/${project}/stream/`;
    const unauthorized = await requestJson(url(cors.url, 'c3'), { headers: { Origin: APP } });
    assertError(unauthorized, 401, 'unauthorized');
    assertCors(unauthorized.headers, APP, '401');
    assert.ok(listOf(unauthorized.headers.get('access-control-expose-headers')).includes('www-authenticate'));

    const otherProject = await requestJson(url(cors.url, 'c3'), { headers: { Origin: APP, Authorization: `Bearer ${await signToken(SECRET, ['elsewhere'], 60)}` } });
    assertError(otherProject, 403, 'forbidden');
    assertCors(otherProject.headers, APP, '403');

    // Two streams per client on this server: the third is refused.
    await Promise.all([1, 2].map(async () => (await stream(`${cors.url}/api/v1/sse/projects/c3/`, {})).waitFor((e) => e.event === 'connected')));
    const tooMany = await requestJson(`${cors.url}/api/v1/sse/projects/c3/`, { headers: { Origin: APP } });
    assertError(tooMany, 429, 'too_many_streams');
    assertCors(tooMany.headers, APP, '429');
    assert.equal(tooMany.headers.get('retry-after'), '5');
    for (const reader of readers.splice(0)) reader.close();
    await waitUntil(() => cors.hub.size === 0, 'the streams are gone');

    const notConfigured = await requestJson(url(bare.url, 'c3'), { headers: { Origin: APP, Authorization: `Bearer ${await signToken(SECRET, ['c3'], 60)}` } });
    assertError(notConfigured, 503, 'auth_not_configured');
    assertCors(notConfigured.headers, APP, '503 auth_not_configured');

    // One stream in all on that server: the second is refused.
    await (await stream(`${bare.url}/api/v1/sse/projects/c3/`, {})).waitFor((e) => e.event === 'connected');
    const full = await requestJson(`${bare.url}/api/v1/sse/projects/c4/`, { headers: { Origin: APP } });
    assertError(full, 503, 'too_many_streams');
    assertCors(full.headers, APP, '503 too_many_streams');
    assert.equal(full.headers.get('retry-after'), '5');
    for (const reader of readers.splice(0)) reader.close();
    await waitUntil(() => bare.hub.size === 0, 'the stream is gone');
  });

  it('carry them on the multiplexed stream and its control requests, errors included', async () => {
    const reader = await openMux(cors.url, { headers: { Origin: APP } });
    readers.push(reader);
    assertCors(reader.headers, APP, 'the mux stream');
    const token = await signToken(SECRET, ['c5'], 60);
    const subscribed = await reader.subscribe({ subscription: 'a', project_id: 'c5', stage: 'rewrite' }, { Origin: APP, Authorization: `Bearer ${token}` });
    assert.equal(subscribed.status, 200, JSON.stringify(subscribed.body));
    assertCors(subscribed.headers, APP, 'subscribe');
    const unknown = await requestJson(cors.url + MUX_ROUTES.subscribe, {
      method: 'POST',
      headers: { Origin: APP, 'Content-Type': 'application/json', [MUX_CONNECTION_HEADER]: newConnectionId() },
      body: JSON.stringify({ subscription: 'a', project_id: 'c5' }),
    });
    assertError(unknown, 404, 'unknown_connection');
    assertCors(unknown.headers, APP, '404 unknown_connection');
    reader.close();
  });
});

describe('without SSE_CORS_ORIGINS', () => {
  it('sends no CORS header and answers a preflight as before (405), from any origin', async () => {
    const answer = await preflight(plain.url, MUX_ROUTES.subscribe, APP, 'POST');
    assertError(answer, 405, 'method_not_allowed');
    assertNoCors(answer.headers, 'a preflight');
    const reader = await stream(`${plain.url}/api/v1/sse/projects/c6/stages/rewrite/`, { Origin: APP });
    assert.equal(reader.status, 200);
    assertNoCors(reader.headers, 'a stream');
    assert.equal(reader.headers.get('vary'), null);
    reader.close();
    const refused = await requestJson(`${plain.url}/api/v1/sse/projects/c6/stream/`, { headers: { Origin: APP } });
    assertError(refused, 401, 'unauthorized');
    assertNoCors(refused.headers, 'a 401');
  });
});

describe('the WebSocket upgrade', () => {
  it('refuses an Origin that is not listed with 4403 origin_not_allowed, when SSE_CORS_ORIGINS is set', async () => {
    const close = await new Promise<{ code: number; reason: string }>((resolve) => {
      const ws = new WebSocket(cors.url.replace(/^http/, 'ws') + MUX_WS_ROUTE, { headers: { Origin: STRANGER } });
      ws.on('error', () => {});
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    assert.equal(close.code, MUX_CLOSE.statusBase + 403);
    assert.match(close.reason, /^origin_not_allowed: /);
    assert.equal(cors.hub.size, 0, 'no connection was opened');
  });

  it('opens for a listed Origin, the server\'s own, and a client that sends none; any Origin without the setting', async () => {
    const own = cors.url; // http://127.0.0.1:<port>, what a page the hub serves itself sends
    for (const [base, headers] of [
      [cors.url, { Origin: APP }],
      [cors.url, { Origin: own }],
      [cors.url, {}],
      [plain.url, { Origin: STRANGER }],
    ] as const) {
      const reader = await openWebSocketMux(base, headers);
      assert.ok(reader.connection, `${JSON.stringify(headers)} on ${base === plain.url ? 'the plain server' : 'the CORS server'}`);
      reader.close();
    }
  });
});

describe('mountSse({ corsOrigins }) on a node:http server of your own', () => {
  let server: Server;
  let sse: SseMount;
  let base: string;
  const broker = new MemoryBroker();

  before(async () => {
    server = createServer((_req, res) => res.end('mine'));
    sse = mountSse(server, { broker, corsOrigins: [APP], corsRoutes: [{ pattern: '/api/jobs/:id/start', methods: ['POST'] }], metrics: false });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await sse?.close();
    await new Promise((resolve) => server?.close(resolve));
    await broker.close();
  });

  it("answers the hub's preflights and those of corsRoutes, and leaves your other answers alone", async () => {
    assert.equal((await preflight(base, MUX_ROUTES.subscribe, APP, 'POST')).status, 204);
    const yours = await preflight(base, '/api/jobs/7/start', APP, 'POST');
    assert.equal(yours.status, 204);
    assert.deepEqual(listOf(yours.headers.get('access-control-allow-methods')), ['post']);
    const other = await fetch(`${base}/somewhere/else`, { headers: { Origin: APP } });
    assert.equal(await other.text(), 'mine');
    assertNoCors(other.headers, 'your own route');
  });

  it('refuses what is not an origin with a TypeError that names it', () => {
    for (const bad of ['*', 'http://localhost:8200/', 'localhost:8200', 'https://app.example.com/path', 'HTTP://LOCALHOST:8200']) {
      assert.throws(() => mountSse(createServer(), { broker, corsOrigins: [bad], metrics: false }), (error: Error) => {
        assert.ok(error instanceof TypeError, `${bad}: ${error}`);
        assert.match(error.message, /^mountSse: corsOrigins: /);
        return true;
      });
    }
  });
});

describe('SSE_CORS_ORIGINS at startup', () => {
  it('reads exact origins, comma-separated', () => {
    const config = readConfig({ SSE_CORS_ORIGINS: ' http://localhost:8200, https://app.example.com ,http://[::1]:5173' });
    assert.deepEqual(config.corsOrigins, ['http://localhost:8200', 'https://app.example.com', 'http://[::1]:5173']);
    assert.equal(readConfig({}).corsOrigins, undefined);
    assert.throws(() => readConfig({ SSE_CORS_ORIGINS: '*' }), ConfigError);
  });

  it('refuses *, and anything that is not scheme://host[:port], with one line on stderr and exit code 2', async () => {
    const cases: Array<[string, RegExp]> = [
      ['*', /^ai-story-sse: SSE_CORS_ORIGINS: "\*" is not allowed: list the exact origins/],
      ['http://localhost:8200,*', /^ai-story-sse: SSE_CORS_ORIGINS: "\*" is not allowed/],
      ['http://localhost:8200/', /^ai-story-sse: SSE_CORS_ORIGINS: "http:\/\/localhost:8200\/" is not an origin .*write "http:\/\/localhost:8200"/],
      ['https://app.example.com/app', /^ai-story-sse: SSE_CORS_ORIGINS: "https:\/\/app\.example\.com\/app" is not an origin/],
      ['localhost:8200', /^ai-story-sse: SSE_CORS_ORIGINS: "localhost:8200" is not an origin/],
      ['app.example.com', /^ai-story-sse: SSE_CORS_ORIGINS: "app\.example\.com" is not an origin/],
      ['ftp://files.example.com', /^ai-story-sse: SSE_CORS_ORIGINS: "ftp:\/\/files\.example\.com" is not an origin: the scheme must be http or https/],
      [' , ', /^ai-story-sse: SSE_CORS_ORIGINS: lists no origin/],
    ];
    const runs = cases.map(async ([value, pattern]) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'server/src/main.ts'], {
        cwd: ROOT,
        // A REDIS_URL nobody listens on: the setting must be refused before any connection is tried.
        env: { ...process.env, SSE_CORS_ORIGINS: value, REDIS_URL: 'redis://127.0.0.1:1', PORT: '0', NODE_ENV: 'test' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      assert.equal(code, 2, `${JSON.stringify(value)}: ${stdout}${stderr}`);
      assert.equal(stderr.trim().split('\n').length, 1, `one line: ${stderr}`);
      assert.match(stderr, pattern);
    });
    await Promise.all(runs);
  });
});
