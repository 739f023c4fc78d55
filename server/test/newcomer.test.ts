/**
 * A newcomer's first hour (issue 21), the server's half, over real HTTP with real redis-servers: /healthz answers
 * fast while Redis is down, the demo turned off is absent (no /sse-demo, not in the log), oversized headers get a
 * 431 of their own, and a token sent to a server with no token key gets a 503 that says what to configure.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { ConfigError, readConfig } from '../src/config.js';
import { DEFAULTS } from '../src/defaults.js';
import { signToken } from '../src/http/auth.js';
import { mountSse } from '../src/mount.js';
import { startServer, type RunningServer } from '../src/server.js';
import { TEST_SETTINGS } from './harness.js';
import { openMux } from './mux-reader.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import { requestJson } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SECRET = 'newcomer-test-secret-that-is-long-enough';

function assertError(response: { status: number; body: any }, status: number, code: string) {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.equal(response.body?.error?.code, code, JSON.stringify(response.body));
  assert.equal(typeof response.body.error.message, 'string');
}

/** Runs the command from the sources with `env`; resolves with its exit code and what it printed. */
function runMain(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL: 'redis://127.0.0.1:1', PORT: '0', NODE_ENV: 'test', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

describe('/healthz while the broker is down', () => {
  let redis: TestRedis;
  let broker: RedisBroker;
  let server: RunningServer;
  let quick: RunningServer;

  before(async () => {
    redis = await startRedis();
    broker = new RedisBroker({ url: redis.url });
    [server, quick] = await Promise.all([
      // The default timeout, as SSE_HEALTH_TIMEOUT_MS unset gives it.
      startServer({ ...TEST_SETTINGS }, broker),
      startServer({ ...TEST_SETTINGS, healthTimeoutMs: 100 }, broker),
    ]);
  });
  after(async () => {
    await Promise.all([server?.close(), quick?.close()]);
    await broker?.close();
    await redis?.close();
  });

  it('answers 503 within SSE_HEALTH_TIMEOUT_MS (500 by default), with a JSON body that says why, and 200 again once Redis is back', async () => {
    assert.equal(DEFAULTS.healthTimeoutMs, 500);
    assert.equal((await requestJson(`${server.url}/healthz`)).status, 200);
    await redis.stop();
    try {
      for (const path of ['/healthz', '/readyz']) {
        const started = performance.now();
        const down = await requestJson(server.url + path);
        const took = performance.now() - started;
        assert.equal(down.status, 503, JSON.stringify(down.body));
        assert.equal(down.body.status, 'unavailable');
        assert.equal(down.body.broker, 'redis');
        assertError(down, 503, 'unavailable');
        assert.match(down.body.error.message, /^The message broker (did not answer within 500 ms|refused the check)\.$/);
        // Redis's command timeout is 5 s: a check that waits for it fails this bound.
        assert.ok(took < 2500, `${path} answered in ${Math.round(took)} ms`);
      }
      const started = performance.now();
      const down = await requestJson(`${quick.url}/healthz`);
      assert.equal(down.status, 503);
      assert.ok(performance.now() - started < 1500, `healthTimeoutMs: 100 answered in ${Math.round(performance.now() - started)} ms`);
      assert.equal((await requestJson(`${server.url}/livez`)).status, 200, 'alive all along');
    } finally {
      await redis.restart();
    }
    await waitUntil(async () => (await requestJson(`${server.url}/healthz`)).status === 200, '/healthz is 200 again after Redis restarted', 20_000);
  });

  it('reads SSE_HEALTH_TIMEOUT_MS, and refuses one that is not a positive integer', async () => {
    assert.equal(readConfig({}).healthTimeoutMs, 500);
    assert.equal(readConfig({ SSE_HEALTH_TIMEOUT_MS: '250' }).healthTimeoutMs, 250);
    for (const bad of ['0', 'soon', '1.5', '-3']) assert.throws(() => readConfig({ SSE_HEALTH_TIMEOUT_MS: bad }), ConfigError, bad);
    assert.throws(() => mountSse(createServer(), { broker, healthTimeoutMs: 0, metrics: false }), /^TypeError: mountSse: healthTimeoutMs must be an integer >= 1/);
    const run = await runMain({ SSE_HEALTH_TIMEOUT_MS: 'soon' });
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.equal(run.stderr, 'ai-story-sse: SSE_HEALTH_TIMEOUT_MS must be an integer >= 1, got "soon"\n');
  });
});

describe('the demo, turned off', () => {
  let redis: TestRedis;
  const processes: ServerProcess[] = [];
  const start = async (env: Record<string, string>) => {
    const started = await startServerProcess({ REDIS_URL: redis.url, LOG_LEVEL: 'info', SSE_AUTH_SECRET: SECRET, ...env });
    processes.push(started);
    return started;
  };

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await Promise.all(processes.map((running) => running.kill()));
    await redis?.close();
  });

  it('is absent: /sse-demo answers the JSON 404 of any unknown path, and the start log does not advertise it', async () => {
    const offs: Array<Record<string, string>> = [{ SSE_ENABLE_DEMO: 'false' }, { NODE_ENV: 'production' }];
    for (const env of offs) {
      const running = await start(env);
      for (const path of ['/sse-demo', '/sse-demo/', '/sse-demo/index.html', '/sse-demo/assets/index.js']) {
        const answer = await requestJson(running.url + path);
        assertError(answer, 404, 'not_found');
        assert.equal(answer.body.error.message, `Nothing at GET ${path}.`);
      }
      assert.match(running.output(), /"msg":"listening on http:\/\/127\.0\.0\.1:\d+"/, `${JSON.stringify(env)}: it started`);
      assert.doesNotMatch(running.output(), /sse-demo|demo at/, `${JSON.stringify(env)}: the log does not mention the demo`);
    }
  });

  it('is advertised while it is on (the same check, the other way)', async () => {
    const running = await start({});
    assert.match(running.output(), /listening on http:\/\/127\.0\.0\.1:\d+ — demo at http:\/\/127\.0\.0\.1:\d+\/sse-demo/);
    assert.notEqual((await requestJson(`${running.url}/sse-demo`)).body?.error?.code, 'not_found');
  });
});

describe('oversized headers and auth_not_configured', () => {
  let redis: TestRedis;
  let broker: RedisBroker;
  let server: RunningServer;

  before(async () => {
    redis = await startRedis();
    broker = new RedisBroker({ url: redis.url });
    // No SSE_AUTH_SECRET and no public key.
    server = await startServer({ ...TEST_SETTINGS }, broker);
  });
  after(async () => {
    await server?.close();
    await broker?.close();
    await redis?.close();
  });

  /** Sends `request` on a raw socket and resolves with the whole answer (the server closes after an error). */
  function rawRequest(request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(server.port, '127.0.0.1', () => socket.write(request));
      let answer = '';
      socket.on('data', (chunk) => (answer += chunk));
      socket.on('end', () => resolve(answer));
      socket.on('error', reject);
    });
  }

  it('answers headers that are too large with 431 request_header_fields_too_large, and bad framing still with 400', async () => {
    const huge = await rawRequest(`GET /api/v1/sse/projects/p1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(huge, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.match(huge, /\r\nContent-Type: application\/json; charset=utf-8\r\n/);
    const body = JSON.parse(huge.slice(huge.indexOf('\r\n\r\n') + 4));
    assert.equal(body.error.code, 'request_header_fields_too_large');
    assert.match(body.error.message, /headers are larger than this server accepts/);

    const malformed = await rawRequest('GET /healthz HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n');
    assert.match(malformed, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.equal(JSON.parse(malformed.slice(malformed.indexOf('\r\n\r\n') + 4)).error.code, 'bad_request');
  });

  it('answers a token on a server with no token key 503 auth_not_configured: a configuration error, saying what to set, without Retry-After', async () => {
    const token = await signToken(SECRET, ['p1'], 60);
    const assertNotConfigured = (answer: { status: number; body: any; headers?: Headers }) => {
      assertError(answer, 503, 'auth_not_configured');
      assert.match(answer.body.error.message, /configuration error/i);
      assert.match(answer.body.error.message, /SSE_AUTH_SECRET/);
      assert.match(answer.body.error.message, /SSE_AUTH_PUBLIC_KEY_FILE, SSE_AUTH_JWKS_FILE or SSE_AUTH_JWKS_URL/);
      if (answer.headers) assert.equal(answer.headers.get('retry-after'), null, 'no Retry-After: retrying cannot help');
    };
    for (const path of ['/api/v1/sse/projects/p1/stream/', '/api/v1/sse/projects/p1/stages/rewrite/stream/']) {
      assertNotConfigured(await requestJson(server.url + path, { headers: { Authorization: `Bearer ${token}` } }));
      assertNotConfigured(await requestJson(`${server.url}${path}?access_token=${token}`));
    }
    // A subscription of the multiplexed stream with a token: the same answer, for that subscription.
    const mux = await openMux(server.url);
    try {
      const subscribed = await mux.subscribe({ subscription: 'a', project_id: 'p1', stage: 'rewrite', token });
      assertNotConfigured(subscribed);
    } finally {
      mux.close();
    }
  });
});
