/** The HTTP surface: execute_stage, validation, errors, auth and health, over real HTTP. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { signToken } from '../src/http/auth.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream, requestJson } from './sse-reader.js';

const SECRET = 'test-secret-that-is-long-enough-for-hs256';
let h: Harness;
let secured: Harness;

before(async () => {
  h = await startHarness();
  secured = await startHarness({ broker: 'memory', settings: { authSecret: SECRET } });
});
after(async () => {
  await h.close();
  await secured.close();
});

const execute = (base: string, projectId: string, body: unknown, headers: Record<string, string> = {}) =>
  requestJson(`${base}/api/v1/projects/${projectId}/execute_stage/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

function assertError(response: { status: number; body: any }, status: number, code?: string) {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.equal(typeof response.body?.error?.message, 'string', `JSON error body: ${JSON.stringify(response.body)}`);
  if (code) assert.equal(response.body.error.code, code);
}

describe('execute_stage', () => {
  it('answers 202 with task_id and the full channel, and the stage streams to done', async () => {
    const reader = await openStream(streamUrl(h.url, 'e1', 'rewrite'));
    await reader.waitFor((e) => e.event === 'connected');
    const response = await execute(h.url, 'e1', { stage_name: 'rewrite', input_data: { speed: 100 } });
    assert.equal(response.status, 202);
    assert.equal(response.body.channel, 'ai_story:project:e1:stage:rewrite');
    assert.match(response.body.task_id, /^[0-9a-f-]{36}$/);
    const done = await reader.waitFor((e) => e.event === 'done');
    const tokens = reader.events.filter((e) => e.event === 'token');
    assert.ok(tokens.length >= 20, `at least 20 tokens, got ${tokens.length}`);
    assert.equal(tokens.map((t) => t.json?.content).join(''), done.json?.full_text);
    assert.equal(tokens.at(-1)!.json?.full_text, done.json?.full_text);
    const metadata = done.json?.metadata as Record<string, unknown>;
    assert.equal(typeof metadata.tokens_used, 'number');
    assert.equal(typeof metadata.latency_ms, 'number');
    const updates = reader.events.filter((e) => e.event === 'stage_update').map((e) => e.json?.status);
    assert.deepEqual(updates, ['processing', 'completed']);
    reader.close();
  });

  it('sends a progress message per item for image_generation', async () => {
    const reader = await openStream(streamUrl(h.url, 'e2'));
    await reader.waitFor((e) => e.event === 'connected');
    await execute(h.url, 'e2', { stage_name: 'image_generation', input_data: { speed: 200 } });
    await reader.waitFor((e) => e.event === 'done');
    const progress = reader.events.filter((e) => e.event === 'progress').map((e) => e.json!);
    assert.ok(progress.length >= 2);
    assert.deepEqual(progress.map((p) => p.current), progress.map((_, i) => i + 1));
    assert.equal(progress.at(-1)!.progress, 100);
    assert.ok(progress.every((p) => typeof p.item_name === 'string' && p.total === progress.length));
    reader.close();
  });

  it('ends the stage with an error message when input_data.fail is true', async () => {
    const reader = await openStream(streamUrl(h.url, 'e3', 'storyboard'));
    await reader.waitFor((e) => e.event === 'connected');
    await execute(h.url, 'e3', { stage_name: 'storyboard', input_data: { speed: 200, fail: true } });
    const error = await reader.waitFor((e) => e.event === 'error');
    assert.equal(typeof error.json?.error, 'string');
    assert.equal(typeof error.json?.retry_count, 'number');
    assert.equal(reader.events.filter((e) => e.event === 'done').length, 0);
    assert.equal(reader.events.find((e) => e.event === 'stage_update' && e.json?.status === 'failed')?.event, 'stage_update');
    reader.close();
  });

  it('lets runs overlap on one project', async () => {
    const reader = await openStream(streamUrl(h.url, 'e4'));
    await reader.waitFor((e) => e.event === 'connected');
    const [a, b] = await Promise.all([
      execute(h.url, 'e4', { stage_name: 'rewrite', input_data: { speed: 100 } }),
      execute(h.url, 'e4', { stage_name: 'storyboard', input_data: { speed: 100 } }),
    ]);
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    assert.notEqual(a.body.task_id, b.body.task_id);
    await reader.waitFor((e) => e.event === 'done' && e.json?.stage === 'rewrite');
    await reader.waitFor((e) => e.event === 'done' && e.json?.stage === 'storyboard');
    reader.close();
  });

  it('refuses bad bodies with 400 and oversized ones with 413', async () => {
    assertError(await execute(h.url, 'e5', '{not json'), 400, 'invalid_json');
    assertError(await execute(h.url, 'e5', '[1]'), 400, 'invalid_json');
    assertError(await execute(h.url, 'e5', {}), 400);
    assertError(await execute(h.url, 'e5', { stage_name: 'nope' }), 400);
    assertError(await execute(h.url, 'e5', { stage_name: 'a:*' }), 400);
    assertError(await execute(h.url, 'e5', { stage_name: 'rewrite', input_data: { speed: 'fast' } }), 400);
    assertError(await execute(h.url, 'e5', { stage_name: 'rewrite', input_data: { fail: 'yes' } }), 400);
    assertError(await execute(h.url, 'e5', { stage_name: 'rewrite', input_data: [] }), 400);
    assertError(await execute(h.url, 'e5', { stage_name: 'rewrite', input_data: { pad: 'x'.repeat(1024 * 1024) } }), 413, 'payload_too_large');
  });
});

describe('input validation', () => {
    // As they appear in the path: glob characters, separators, NUL, non-ASCII, over-long.
  const badIds = ['a*', 'a:b', 'a%3Fb', '%5Bab%5D', 'x'.repeat(65), 'a%2Fb', 'a%00b', '%E4%B8%AD', 'a%20b', 'a.b'];
  for (const bad of badIds) {
    it(`refuses the project id ${JSON.stringify(bad.length > 20 ? bad.slice(0, 8) + '…' : bad)} with 400 before it reaches Redis`, async () => {
      const inspector = new Redis(h.redis!.url);
      try {
        assertError(await requestJson(`${h.url}/api/v1/sse/projects/${bad}/`), 400, 'invalid_id');
        assertError(await requestJson(`${h.url}/api/v1/sse/projects/p/stages/${bad}/`), 400, 'invalid_id');
        assert.equal(Number(await inspector.pubsub('NUMPAT')), 0);
      } finally {
        await inspector.quit();
      }
    });
  }

  it('refuses an over-long or control-character Last-Event-ID with 400', async () => {
    assertError(await requestJson(streamUrl(h.url, 'v', 'rewrite'), { headers: { 'Last-Event-ID': '1'.repeat(65) } }), 400);
    assertError(await requestJson(`${streamUrl(h.url, 'v', 'rewrite')}?lastEventId=%01`), 400);
  });

  it('answers 404 as JSON for unknown paths and 405 for wrong methods', async () => {
    assertError(await requestJson(`${h.url}/nope`), 404, 'not_found');
    assertError(await requestJson(`${h.url}/api/v1/sse/projects/p/stages/s/extra/x`), 404);
    const wrong = await requestJson(`${h.url}/api/v1/sse/projects/p/`, { method: 'POST' });
    assertError(wrong, 405, 'method_not_allowed');
    assert.equal(wrong.headers.get('allow'), 'GET');
    assertError(await requestJson(`${h.url}/api/v1/projects/p/execute_stage/`), 405);
    assertError(await requestJson(`${h.url}/api/v1/projects/p/execute_stage`, { method: 'DELETE' }), 405);
  });

  it('serves paths with and without the trailing slash', async () => {
    for (const path of ['/api/v1/sse/projects/t1', '/api/v1/sse/projects/t1/', '/api/v1/sse/projects/t1/stages/rewrite', '/api/v1/sse/projects/t1/stages/rewrite/']) {
      const reader = await openStream(h.url + path);
      assert.equal(reader.status, 200, path);
      reader.close();
    }
  });
});

describe('authenticated endpoints', () => {
  const authUrl = (projectId: string, stage?: string) => streamUrl(secured.url, projectId, stage, true);

  it('refuses clearly when the server has no SSE_AUTH_SECRET', async () => {
    assertError(await requestJson(streamUrl(h.url, 'a1', 'rewrite', true)), 503, 'auth_not_configured');
  });

  it('answers 401 for a missing, malformed, expired or badly signed token, before any event byte', async () => {
    const expired = await signToken(SECRET, ['a1'], -10);
    const otherKey = await signToken('another-secret-another-secret-xx', ['a1']);
    for (const headers of [{} as Record<string, string>, { Authorization: 'Bearer nonsense' }, { Authorization: `Bearer ${expired}` }, { Authorization: `Bearer ${otherKey}` }, { Authorization: 'Basic abc' }]) {
      const response = await requestJson(authUrl('a1', 'rewrite'), { headers });
      assertError(response, 401, 'unauthorized');
      assert.match(response.headers.get('content-type') ?? '', /application\/json/);
    }
  });

  it('answers 403 for a valid token of another project', async () => {
    const token = await signToken(SECRET, ['other']);
    assertError(await requestJson(authUrl('a1'), { headers: { Authorization: `Bearer ${token}` } }), 403, 'forbidden');
  });

  it('streams with a Bearer header, an access_token parameter, or a wildcard token', async () => {
    const token = await signToken(SECRET, ['a2']);
    const wildcard = await signToken(SECRET, ['*']);
    for (const [url, headers] of [
      [authUrl('a2', 'rewrite'), { Authorization: `Bearer ${token}` }],
      [`${authUrl('a2')}?access_token=${token}`, {}],
      [authUrl('a2'), { Authorization: `Bearer ${wildcard}` }],
    ] as const) {
      const reader = await openStream(url, headers);
      assert.equal(reader.status, 200);
      await reader.waitFor((e) => e.event === 'connected');
      reader.close();
    }
  });

  it('answers 403 on the public endpoints when SSE_PUBLIC_STREAMS is off, while the authenticated ones work', async () => {
    const locked = await startHarness({ broker: 'memory', settings: { authSecret: SECRET, publicStreams: false } });
    try {
      assertError(await requestJson(streamUrl(locked.url, 'a4', 'rewrite')), 403, 'disabled');
      assertError(await requestJson(streamUrl(locked.url, 'a4')), 403, 'disabled');
      const token = await signToken(SECRET, ['a4']);
      const reader = await openStream(streamUrl(locked.url, 'a4', undefined, true), { Authorization: `Bearer ${token}` });
      assert.equal(reader.status, 200);
      reader.close();
    } finally {
      await locked.close();
    }
  });

  it('hides execute_stage and the demo controls when the demo is off (NODE_ENV=production)', async () => {
    const production = await startHarness({ broker: 'memory', settings: { demoEnabled: false } });
    try {
      assertError(await execute(production.url, 'a5', { stage_name: 'rewrite' }), 404, 'disabled');
      assertError(await requestJson(`${production.url}/api/v1/demo/projects/a5/cut/`, { method: 'POST' }), 404, 'disabled');
      assertError(await requestJson(`${production.url}/api/v1/demo/token/`, { method: 'POST', body: '{"project_id":"a5"}' }), 404, 'disabled');
    } finally {
      await production.close();
    }
  });

  it('requires a token for execute_stage when a secret is set', async () => {
    assertError(await execute(secured.url, 'a3', { stage_name: 'rewrite' }), 401);
    const token = await signToken(SECRET, ['a3']);
    const ok = await execute(secured.url, 'a3', { stage_name: 'rewrite', input_data: { speed: 1000 } }, { Authorization: `Bearer ${token}` });
    assert.equal(ok.status, 202);
  });
});

describe('limits and health', () => {
  it('refuses streams over the per-client cap with 429 and Retry-After', async () => {
    const capped = await startHarness({ broker: 'memory', settings: { maxStreamsPerClient: 2 } });
    try {
      const a = await openStream(streamUrl(capped.url, 'l1'));
      const b = await openStream(streamUrl(capped.url, 'l1'));
      const refused = await requestJson(streamUrl(capped.url, 'l1'));
      assertError(refused, 429, 'too_many_streams');
      assert.equal(refused.headers.get('retry-after'), '5');
      a.close();
      b.close();
    } finally {
      await capped.close();
    }
  });

  it('reports the broker on /healthz and /readyz, 503 while Redis is down, while /livez stays 200', async () => {
    const ok = await requestJson(`${h.url}/healthz`);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, 'ok');
    assert.equal(ok.body.broker, 'redis');
    assert.equal((await requestJson(`${h.url}/readyz`)).status, 200);
    await h.redis!.stop();
    try {
      const down = await requestJson(`${h.url}/healthz`);
      assert.equal(down.status, 503);
      assert.equal(down.body.broker, 'redis');
      assert.equal((await requestJson(`${h.url}/readyz`)).status, 503, 'not ready while the broker is down');
      assert.equal((await requestJson(`${h.url}/livez`)).status, 200, 'but alive: no restart for a broker outage');
    } finally {
      await h.redis!.restart();
    }
  });
});
