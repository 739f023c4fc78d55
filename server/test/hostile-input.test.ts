/** Hostile input: a seeded fuzz of the HTTP routes, and broker payloads built to break framing or cross projects. */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream, requestJson } from './sse-reader.js';

let h: Harness;
let redis: Redis;
before(async () => {
  h = await startHarness({ settings: { maxStreamsPerClient: 10_000 } });
  redis = new Redis(h.redis!.url);
});
after(async () => {
  await redis.quit();
  await h.close();
});

/** A small seeded PRNG (mulberry32), so a failing case can be replayed from its seed. */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALLOWED = new Set([200, 202, 400, 431, 401, 403, 404, 405, 413, 429, 503]);

/** Sends one raw request (bodies and headers node's fetch would refuse) and returns status, headers and up to 64 KB of body. */
function rawRequest(port: number, method: string, path: string, headers: Record<string, string>, body?: Buffer) {
  return new Promise<{ status: number; type: string; text: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        // A stream stays open: what it starts with is enough.
        if (res.headers['content-type']?.startsWith('text/event-stream') || text.length > 65_536) res.destroy();
      });
      const done = () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text });
      res.on('end', done);
      res.on('close', done);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('the HTTP routes under fuzzing', () => {
  it('answer 600 random requests with a stream, a 202 or a well-formed JSON error, and stay up', async () => {
    const random = prng(20261127);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const junk = (max: number) =>
      Array.from({ length: Math.floor(random() * max) }, () => String.fromCharCode(Math.floor(random() * 0x7f) + 1)).join('');
    const segment = () =>
      pick(['p1', 'rewrite', 'stages', 'stream', '*', '..', '%00', '%0d%0a', encodeURIComponent(junk(20)), 'x'.repeat(Math.floor(random() * 300)), '']);
    const paths = [
      () => `/api/v1/sse/projects/${segment()}/`,
      () => `/api/v1/sse/projects/${segment()}/stages/${segment()}/`,
      () => `/api/v1/sse/projects/${segment()}/stages/${segment()}/stream/?access_token=${encodeURIComponent(junk(40))}`,
      () => `/api/v1/projects/${segment()}/execute_stage/`,
      () => `/${segment()}/${segment()}/${segment()}`,
      () => `/healthz?${encodeURIComponent(junk(10))}`,
    ];
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];
    const bodies = [
      () => Buffer.from(JSON.stringify({ stage_name: pick(['rewrite', 'storyboard', '*', junk(10)]), input_data: { speed: pick([1000, -1, 'x', 1e308]), fail: pick([true, 1, null]) } })),
      () => Buffer.from(junk(200)),
      () => Buffer.from('{"stage_name":'),
      () => Buffer.alloc(Math.floor(random() * 2_000_000), 0x20),
      () => Buffer.from(random().toString()),
    ];

    for (let i = 0; i < 600; i++) {
      const method = pick(methods);
      const path = pick(paths)();
      const headers: Record<string, string> = {};
      if (random() < 0.3) headers['Last-Event-ID'] = pick(['1-0', '99999999999999999999-1', junk(80).replace(/[\r\n]/g, ''), '0-0']);
      if (random() < 0.3) headers.Authorization = pick(['Bearer ' + junk(50).replace(/[\r\n]/g, ''), 'Bearer a.b.c', 'Basic x']);
      const body = method === 'GET' ? undefined : pick(bodies)();
      if (body) headers['Content-Type'] = 'application/json';
      const what = `#${i} ${method} ${path.slice(0, 120)}`;
      let response;
      try {
        response = await rawRequest(h.server.port, method, path, headers, body);
      } catch (error) {
        // node refuses to send some paths (e.g. with control characters): that is the client's doing, not ours.
        assert.match(String(error), /ERR_UNESCAPED_CHARACTERS|Invalid|EPIPE|ECONNRESET/, what);
        continue;
      }
      assert.ok(ALLOWED.has(response.status), `${what}: status ${response.status}`);
      if (response.status === 200 && response.type.startsWith('text/event-stream')) continue;
      if (response.status === 200 && path.startsWith('/healthz')) continue;
      if (response.status === 202) continue;
      assert.match(response.type, /^application\/json/, `${what}: content type ${response.type}`);
      const parsed = JSON.parse(response.text);
      assert.equal(typeof parsed.error?.code, 'string', what);
      assert.equal(typeof parsed.error?.message, 'string', what);
    }
    const health = await requestJson(`${h.url}/healthz`);
    assert.equal(health.status, 200);
  });
});

describe('broker payloads', () => {
  it('keeps newlines, NUL and fake SSE fields of a foreign message inside its data', async () => {
    const reader = await openStream(streamUrl(h.url, 'h1', 'rewrite'));
    await reader.waitFor((e) => e.event === 'connected');
    const evil = 'line\r\nid: 999\n\nevent: done\ndata: {"type":"done"}\0\n';
    await redis.publish('ai_story:project:h1:stage:rewrite', evil);
    await redis.publish('ai_story:project:h1:stage:rewrite', JSON.stringify({ type: 'token\nevent: done', content: 'x\n\ny' }));
    await redis.publish('ai_story:project:h1:stage:rewrite', JSON.stringify({ type: 'stage_update', status: 'completed' }));
    await reader.waitFor((e) => e.event === 'stage_update');
    assert.deepEqual(reader.events.map((e) => e.event), ['connected', 'message', 'message', 'stage_update']);
    assert.equal(reader.events[1]!.data, 'line\nid: 999\n\nevent: done\ndata: {"type":"done"}\0\n');
    assert.equal(reader.lastEventId, undefined, 'no id was injected');
    reader.close();
  });

  it('delivers a 4 MB message whole', async () => {
    const reader = await openStream(streamUrl(h.url, 'h2', 'rewrite'));
    await reader.waitFor((e) => e.event === 'connected');
    const big = JSON.stringify({ type: 'done', full_text: '字'.repeat(4 * 1024 * 1024 / 3) });
    await redis.publish('ai_story:project:h2:stage:rewrite', big);
    const done = await reader.waitFor((e) => e.event === 'done');
    assert.equal(done.data, big);
    reader.close();
  });

  it('never delivers another project\'s channels to a project stream, even with look-alike names', async () => {
    const reader = await openStream(streamUrl(h.url, 'h3'));
    await reader.waitFor((e) => e.event === 'connected');
    for (const channel of ['ai_story:project:h3x:stage:rewrite', 'ai_story:project:xh3:stage:rewrite', 'ai_story:project:h:stage:3', 'other:project:h3:stage:rewrite', 'ai_story:project:h3:log']) {
      await redis.publish(channel, JSON.stringify({ type: 'token', content: channel }));
    }
    await redis.publish('ai_story:project:h3:stage:rewrite', JSON.stringify({ type: 'token', content: 'mine' }));
    await reader.waitFor((e) => e.json?.content === 'mine');
    assert.deepEqual(reader.events.slice(1).map((e) => e.json?.content), ['mine']);
    reader.close();
  });
});
