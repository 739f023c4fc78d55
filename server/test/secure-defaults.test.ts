/**
 * Secure by default: what a server started as the docs say lets through, over real HTTP. Each test reproduces
 * a finding of the security review and shows it closed: production defaults, JSON-only state changes, the
 * task cap, the Host check, health without details, metrics on their own port, streams that end with their
 * token (and an SSEClient that resumes with a fresh one, no gap), exact `projects` claims, issuer and audience.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createServer, request } from 'node:http';
import { SignJWT } from 'jose';
import { createSSEClient } from 'ai-story-sse/client';
import { readConfig } from '../src/config.js';
import { signToken } from '../src/http/auth.js';
import { mountSse } from '../src/mount.js';
import { MemoryBroker } from '../src/broker/memory-broker.js';
import { StreamPublisher } from '../src/publisher.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream, requestJson } from './sse-reader.js';
import { startServerProcess } from './server-process.js';
import { startRedis } from './redis-server.js';

const SECRET = 'a-secret-of-at-least-thirty-two-bytes-for-hs256';

function assertError(response: { status: number; body: any }, status: number, code: string) {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.equal(response.body?.error?.code, code, JSON.stringify(response.body));
  assert.equal(typeof response.body.error.message, 'string');
}

describe('production defaults (readConfig)', () => {
  it('turns public streams and the demo off under NODE_ENV=production, and keeps both on a laptop', () => {
    const production = readConfig({ NODE_ENV: 'production' });
    assert.equal(production.publicStreams, false);
    assert.equal(production.demoEnabled, false);
    const laptop = readConfig({});
    assert.equal(laptop.publicStreams, true);
    assert.equal(laptop.demoEnabled, true);
    // Deliberate opt-in still works (and main.ts logs a warning for each).
    assert.equal(readConfig({ NODE_ENV: 'production', SSE_PUBLIC_STREAMS: 'true' }).publicStreams, true);
  });

  it('refuses an SSE_AUTH_SECRET shorter than 32 bytes, saying how to make one', () => {
    assert.throws(() => readConfig({ SSE_AUTH_SECRET: 'x' }), /SSE_AUTH_SECRET is 1 bytes; at least 32 .*openssl rand/);
    assert.throws(() => readConfig({ SSE_AUTH_SECRET: 'a'.repeat(31) }), /at least 32/);
    assert.equal(readConfig({ SSE_AUTH_SECRET: 'a'.repeat(32) }).authSecret, 'a'.repeat(32));
    assert.throws(() => mountSse(createServer(), { broker: new MemoryBroker(), authSecret: 'short' }), /at least 32/);
  });

  it('answers only loopback host names on a loopback bind, any on another bind, and what SSE_ALLOWED_HOSTS lists', () => {
    assert.deepEqual(readConfig({}).allowedHosts, ['127.0.0.1', 'localhost', '::1']);
    assert.equal(readConfig({ HOST: '0.0.0.0' }).allowedHosts, null);
    // The loopback names always pass (local health checks), whatever the list says.
    assert.deepEqual(readConfig({ HOST: '0.0.0.0', SSE_ALLOWED_HOSTS: 'SSE.example.com, [::1]' }).allowedHosts, ['sse.example.com', '::1', '127.0.0.1', 'localhost']);
    assert.equal(readConfig({ SSE_ALLOWED_HOSTS: '*' }).allowedHosts, null);
    assert.throws(() => readConfig({ SSE_ALLOWED_HOSTS: 'https://x/' }), /SSE_ALLOWED_HOSTS/);
  });
});

describe('a server started with NODE_ENV=production and a secret (child process)', () => {
  it('streams nothing without a token, serves no demo, and refuses to mint tokens', async (t) => {
    const redis = await startRedis();
    const server = await startServerProcess({ NODE_ENV: 'production', SSE_AUTH_SECRET: SECRET, REDIS_URL: redis.url });
    t.after(async () => {
      await server.kill('SIGTERM');
      await redis.close();
    });
    assertError(await requestJson(`${server.url}/api/v1/sse/projects/victim42/`), 403, 'disabled');
    assertError(await requestJson(`${server.url}/api/v1/sse/projects/victim42/stream/`), 401, 'unauthorized');
    const json = { 'Content-Type': 'application/json' };
    assertError(await requestJson(`${server.url}/api/v1/demo/token/`, { method: 'POST', headers: json, body: '{"project_id":"victim42"}' }), 404, 'disabled');
    const run = { method: 'POST', headers: json, body: '{"stage_name":"rewrite"}' };
    assertError(await requestJson(`${server.url}/api/v1/projects/victim42/execute_stage/`, run), 404, 'disabled');
    assertError(await requestJson(`${server.url}/api/v1/demo/projects/victim42/cut/`, { method: 'POST', headers: json, body: '{}' }), 404, 'disabled');
    assertError(await requestJson(`${server.url}/sse-demo`), 404, 'not_found');
    const token = await signToken(SECRET, ['victim42'], 60);
    const reader = await openStream(`${server.url}/api/v1/sse/projects/victim42/stream/`, { Authorization: `Bearer ${token}` });
    assert.equal(reader.status, 200, 'the owner of a token still gets the stream');
    reader.close();
  });
});

describe('HTTP guards', () => {
  let h: Harness;
  let secured: Harness;
  before(async () => {
    h = await startHarness({ broker: 'memory', settings: { maxDemoTasks: 2, allowedHosts: ['127.0.0.1', 'localhost', '::1'] } });
    secured = await startHarness({ broker: 'memory', settings: { authSecret: SECRET, authIssuer: 'https://auth.example', authAudience: 'sse' } });
  });
  after(async () => {
    await h?.close();
    await secured?.close();
  });

  it('refuses state-changing POSTs that are not JSON with 415 (a cross-site form or text/plain fetch)', async () => {
    for (const path of ['/api/v1/projects/p1/execute_stage/', '/api/v1/demo/projects/p1/cut/', '/api/v1/demo/token/']) {
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined]) {
        const headers: Record<string, string> = type ? { 'Content-Type': type } : {};
        const response = await requestJson(h.url + path, { method: 'POST', headers, body: '{"stage_name":"rewrite","project_id":"p1"}' });
        assertError(response, 415, 'unsupported_media_type');
      }
    }
    const cut = await requestJson(`${h.url}/api/v1/demo/projects/p1/cut/`, { method: 'POST', headers: { 'Content-Type': 'application/json; charset=utf-8' }, body: '{}' });
    assert.equal(cut.status, 200, 'JSON (with a charset) still works');
  });

  it('caps concurrent mock tasks with a JSON 429 and Retry-After', async () => {
    const start = () =>
      requestJson(`${h.url}/api/v1/projects/cap/execute_stage/`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ stage_name: 'rewrite', input_data: { speed: 0.1 } }),
      });
    assert.equal((await start()).status, 202);
    assert.equal((await start()).status, 202);
    const third = await start();
    assertError(third, 429, 'too_many_tasks');
    assert.ok(Number(third.headers.get('retry-after')) > 0);
    h.server.hub.cutProject('cap');
  });

  it('answers 421 to a Host it does not serve (DNS rebinding), and serves the loopback names', async () => {
    const get = (host: string) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = request(`${h.url}/healthz`, { headers: { Host: host } }, (res) => {
          let text = '';
          res.on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
        });
        req.on('error', reject);
        req.end();
      });
    assertError(await get('evil.example:8000'), 421, 'misdirected_request');
    assertError(await get('127.0.0.1.evil.example'), 421, 'misdirected_request');
    for (const host of ['127.0.0.1:8000', 'localhost', 'LOCALHOST:1', '[::1]:8000']) assert.equal((await get(host)).status, 200, host);
  });

  it('tells the public only up or down on /healthz: no stream counts, no uptime', async () => {
    const health = await requestJson(`${h.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: 'ok', broker: 'memory' });
    assert.deepEqual((await requestJson(`${h.url}/livez`)).body, { status: 'ok' });
  });

  it('accepts project ids as strings and safe integers only; an unsafe integer is a 401 that says why', async () => {
    const sign = (projects: unknown[]) =>
      new SignJWT({ projects }).setProtectedHeader({ alg: 'HS256' }).setIssuer('https://auth.example').setAudience('sse').setExpirationTime('1m').sign(new TextEncoder().encode(SECRET));
    // Each of these is refused before the stream opens, so the answer is a whole JSON body.
    const open = (token: string, project: string) => requestJson(streamUrl(secured.url, project, undefined, true), { headers: { Authorization: `Bearer ${token}` } });
    // JSON.parse turns 9007199254740993 into ...992: the token must not grant the neighbour.
    const unsafe = await sign([9007199254740993]);
    const refused = await open(unsafe, '9007199254740992');
    assertError(refused, 401, 'unauthorized');
    assert.match(refused.body.error.message, /not a safe integer: send project ids as strings/);
    assertError(await open(unsafe, '9007199254740993'), 401, 'unauthorized');
    assertError(await open(await sign([1.5]), 'x'), 401, 'unauthorized');
    assertError(await open(await sign([{}]), 'x'), 401, 'unauthorized');
    const reader = await openStream(streamUrl(secured.url, '42', undefined, true), { Authorization: `Bearer ${await sign([42, 'abc'])}` });
    assert.equal(reader.status, 200, 'a safe integer grants its project');
    reader.close();
  });

  it('checks the issuer and audience when they are set', async () => {
    const base = () => new SignJWT({ projects: ['p'] }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1m');
    const key = new TextEncoder().encode(SECRET);
    const url = streamUrl(secured.url, 'p', undefined, true);
    const wrongIssuer = await requestJson(url, { headers: { Authorization: `Bearer ${await base().setIssuer('https://other').setAudience('sse').sign(key)}` } });
    assertError(wrongIssuer, 401, 'unauthorized');
    assert.match(wrongIssuer.body.error.message, /"iss" claim/);
    const noAudience = await requestJson(url, { headers: { Authorization: `Bearer ${await base().setIssuer('https://auth.example').sign(key)}` } });
    assertError(noAudience, 401, 'unauthorized');
    const token = await signToken(SECRET, ['p'], 60, { issuer: 'https://auth.example', audience: 'sse' });
    const reader = await openStream(url, { Authorization: `Bearer ${token}` });
    assert.equal(reader.status, 200);
    reader.close();
  });
});

describe('metrics on their own port (SSE_METRICS_PORT)', () => {
  it('serves /metrics there and not on the public port', async (t) => {
    const h = await startHarness({ broker: 'memory', settings: { metricsPort: 0 } });
    t.after(() => h.close());
    assert.ok(h.server.metricsUrl, 'the metrics URL is known');
    const scrape = await fetch(h.server.metricsUrl!);
    assert.equal(scrape.status, 200);
    assert.match(await scrape.text(), /sse_streams_open 0/);
    for (const path of ['/metrics', '/metrics/', '/METRICS']) assertError(await requestJson(h.url + path), 404, 'not_found');
  });
});

describe('a stream ends with its token', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ settings: { authSecret: SECRET } });
  });
  after(async () => {
    await h?.close();
  });

  it('sends token_expired at the token exp and ends; a message published after exp is not delivered on it', async () => {
    // `exp` is in whole seconds: a 1-second token signed late in a second may be expired by the time it is checked.
    const token = await signToken(SECRET, ['exp1'], 2);
    const reader = await openStream(streamUrl(h.url, 'exp1', 'rewrite', true), { Authorization: `Bearer ${token}` });
    assert.equal(reader.status, 200);
    const expired = await reader.waitFor((e) => e.event === 'token_expired', 5000);
    assert.equal(expired.json?.type, 'token_expired');
    assert.equal(expired.id, undefined, 'no id: the client resumes from the last message it got');
    await reader.ended;
    const publisher = new StreamPublisher({ projectId: 'exp1', stage: 'rewrite', broker: h.broker });
    await publisher.publishToken('late', 'late');
    assert.equal(reader.events.filter((e) => e.event === 'token').length, 0);
    const closed = await requestJson(`${h.url}/metrics`).then((m) => String(m.body));
    assert.match(closed, /sse_streams_closed_total\{reason="token_expired"\} 1/);
  });

  it('SSEClient asks its token source again and resumes with no gap and no duplicate', async () => {
    let tokensIssued = 0;
    const client = createSSEClient('exp2', 'rewrite', {
      baseUrl: h.url,
      // Each token lives about a second: the stream below outlives several of them.
      token: async () => {
        tokensIssued++;
        return signToken(SECRET, ['exp2'], 1);
      },
    });
    const received: string[] = [];
    const reasons: string[] = [];
    client.on('token', (m) => received.push(m.content));
    client.on('disconnected', (d) => reasons.push(d.reason));
    const connected = new Promise<void>((resolve) => client.on('connected', () => resolve()));
    client.connect();
    await connected;
    const publisher = new StreamPublisher({ projectId: 'exp2', stage: 'rewrite', broker: h.broker });
    const sent: string[] = [];
    let text = '';
    const until = Date.now() + 3500;
    for (let i = 0; Date.now() < until; i++) {
      const piece = `t${i} `;
      text += piece;
      sent.push(piece);
      await publisher.publishToken(piece, text);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const done = new Promise<void>((resolve) => client.on('done', () => resolve()));
    await publisher.publishDone(text, {});
    await done;
    client.disconnect();
    assert.deepEqual(received, sent, 'every token once, in order, across the token changes');
    assert.ok(reasons.filter((r) => r === 'token_expired').length >= 2, `the stream ended with its token (${reasons.join(', ')})`);
    assert.ok(tokensIssued >= 3, 'the token source was asked for each reconnect');
  });
});
