/**
 * A deployment that follows deploy/nginx.conf has no open doors: a server process started with the environment
 * the file's header exports (NODE_ENV=production, a 32+-byte secret, SSE_ALLOWED_HOSTS, SSE_METRICS_PORT), behind
 * that very nginx. Nothing streams without a token, the demo endpoints are gone, /metrics is on a private port, and
 * refused by nginx in every spelling the server's router matches when it is not, and a token in the query never
 * reaches nginx's access log.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { signToken } from '../src/http/auth.js';
import { streamUrl } from './harness.js';
import { NGINX, NGINX_CONF, deployEnvironment, startNginx, type RunningNginx } from './nginx.js';
import { freePort, startRedis, type TestRedis } from './redis-server.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import { openStream, type StreamReader } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

const missing = spawnSync(NGINX, ['-v']).status !== 0;
// As in nginx.test.ts: outside CI a machine without nginx skips with a message; in CI it must run.
const skip = missing && !process.env.CI ? `${NGINX} not found (apt-get install nginx, or set NGINX)` : false;

// What `openssl rand -base64 48` gives: 64 characters.
const SECRET = randomBytes(48).toString('base64');
const CONF = await readFile(NGINX_CONF, 'utf8');
const documented = deployEnvironment(CONF);
/** The public name the deploy commands allow: nginx forwards it as `Host $host`. */
const PUBLIC_HOST = documented.SSE_ALLOWED_HOSTS?.split(',')[0] ?? '';

let redis: TestRedis;
let server: ServerProcess;
let metricsPort: number;
let nginx: RunningNginx;
const open: StreamReader[] = [];

/** The documented environment, with the test's Redis and secret in place of the operator's. */
const environment = () => ({ ...documented, REDIS_URL: redis.url, SSE_AUTH_SECRET: SECRET });

before(async () => {
  if (skip) return;
  redis = await startRedis();
  metricsPort = await freePort();
  server = await startServerProcess({ ...environment(), SSE_METRICS_PORT: String(metricsPort) });
  nginx = await startNginx([server.port]);
});
after(async () => {
  for (const reader of open) reader.close();
  await nginx?.close();
  await server?.kill('SIGKILL');
  await redis?.close();
});

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** `text` parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

/**
 * One request with node:http, which sends the path exactly as given (fetch would normalise `/metrics/.` and
 * `/x/../metrics`, and drop a `Host` header). `Host` defaults to the public name, as a browser would send it.
 */
function send(base: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      { hostname, port, path, method: init.method ?? 'GET', headers: { Host: PUBLIC_HOST, ...init.headers }, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('error', reject);
        res.on('end', () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

const postJson = (path: string, body: unknown) =>
  send(nginx.url, path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

async function watch(url: string, headers: Record<string, string> = {}): Promise<StreamReader> {
  const reader = await openStream(url, headers);
  open.push(reader);
  return reader;
}

describe('a server process started as deploy/nginx.conf says, behind that nginx', { skip }, () => {
  it('is started the documented way: NODE_ENV=production, a secret, a loopback HOST and the public name allowed', () => {
    assert.equal(documented.NODE_ENV, 'production');
    assert.ok(documented.SSE_AUTH_SECRET, 'the commands set SSE_AUTH_SECRET');
    assert.ok(documented.REDIS_URL, 'the commands set REDIS_URL');
    assert.equal(documented.HOST, '127.0.0.1');
    assert.match(PUBLIC_HOST, /^[a-z0-9.-]+\.[a-z]+$/, 'SSE_ALLOWED_HOSTS starts with the public name');
    assert.match(CONF, /^#\s+PORT=\d+ SSE_METRICS_PORT=\d+ npx ai-story-sse &$/m, 'each process has its metrics port, and runs the compiled command');
    assert.equal(documented.SSE_TRUSTED_PROXIES, '127.0.0.1', 'the processes trust nginx for the client address');
  });

  it('refuses to start with a secret under 32 bytes', async () => {
    await assert.rejects(startServerProcess({ ...environment(), SSE_AUTH_SECRET: 'x'.repeat(31) }), /SSE_AUTH_SECRET/);
  });

  it('answers 404 to every demo endpoint: minting a token, execute_stage and cut', async () => {
    const minted = await postJson('/api/v1/demo/token', { project_id: 'victim42' });
    assert.equal(minted.status, 404, minted.text);
    assert.equal(minted.json?.token, undefined);
    const executed = await postJson('/api/v1/projects/victim42/execute_stage', { stage_name: 'rewrite' });
    assert.equal(executed.status, 404, executed.text);
    const cutAsJson = await postJson('/api/v1/demo/projects/victim42/cut/', {});
    assert.equal(cutAsJson.status, 404, cutAsJson.text);
    // A form's content type (what a cross-site page can send without a preflight): refused too.
    const cutAsText = await send(nginx.url, '/api/v1/demo/projects/victim42/cut/', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{}' });
    assert.ok([404, 415].includes(cutAsText.status), cutAsText.text);
    for (const answer of [minted, executed, cutAsJson, cutAsText]) assert.equal(typeof answer.json?.error?.code, 'string', answer.text);
  });

  it('refuses the public streams with 403', async () => {
    for (const path of ['/api/v1/sse/projects/victim42/', '/api/v1/sse/projects/victim42/stages/rewrite/']) {
      const answer = await send(nginx.url, path);
      assert.equal(answer.status, 403, `${path}: ${answer.text}`);
      assert.equal(answer.json?.error?.code, 'disabled', answer.text);
    }
  });

  it('refuses an authenticated stream without a token or with a bad one (401), and a token for another project (403)', async () => {
    const path = new URL(streamUrl(nginx.url, 'victim42', undefined, true)).pathname;
    const none = await send(nginx.url, path);
    assert.equal(none.status, 401, none.text);
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    const forged = await signToken(randomBytes(48).toString('base64'), ['victim42']);
    const badlySigned = await send(nginx.url, path, { headers: { Authorization: `Bearer ${forged}` } });
    assert.equal(badlySigned.status, 401, badlySigned.text);
    const other = await signToken(SECRET, ['someone-else']);
    const otherProject = await send(nginx.url, path, { headers: { Authorization: `Bearer ${other}` } });
    assert.equal(otherProject.status, 403, otherProject.text);
  });

  it('streams to a client with a valid token, in the Authorization header or in ?access_token=', async () => {
    const token = await signToken(SECRET, ['p1']);
    const url = streamUrl(nginx.url, 'p1', undefined, true);
    for (const reader of [await watch(url, { Authorization: `Bearer ${token}` }), await watch(`${url}?access_token=${token}`)]) {
      assert.equal(reader.status, 200);
      assert.equal(reader.headers.get('content-type'), 'text/event-stream; charset=utf-8');
      await reader.waitFor((e) => e.event === 'connected', 5000);
      reader.close();
    }
  });

  it('tells /healthz callers only the status and the broker kind', async () => {
    const health = await send(nginx.url, '/healthz');
    assert.equal(health.status, 200, health.text);
    assert.equal(health.json?.status, 'ok');
    assert.equal(health.json?.broker, 'redis');
    for (const detail of ['streams', 'subscriptions', 'tasks', 'uptime_s']) assert.equal(health.json?.[detail], undefined, `/healthz tells ${detail}`);
  });

  it('answers 421 to a Host that SSE_ALLOWED_HOSTS does not name, and serves the public name', async () => {
    assert.equal((await send(nginx.url, '/healthz', { headers: { Host: PUBLIC_HOST } })).status, 200);
    // A page on evil.example whose name resolves to this machine (DNS rebinding) still sends its own Host.
    const rebound = await send(nginx.url, '/healthz', { headers: { Host: 'evil.example' } });
    assert.equal(rebound.status, 421, rebound.text);
    assert.equal(typeof rebound.json?.error?.code, 'string', rebound.text);
  });

  it('serves /metrics on its metrics port only, not on the port behind nginx', async () => {
    const scraped = await send(`http://127.0.0.1:${metricsPort}`, '/metrics');
    assert.equal(scraped.status, 200);
    assert.match(scraped.text, /^nodejs_version_info/m);
    for (const base of [server.url, nginx.url]) {
      const answer = await send(base, '/metrics', { headers: { Host: '127.0.0.1' } });
      assert.equal(answer.status, 404, `${base}: ${answer.text}`);
    }
  });

  describe('/metrics without SSE_METRICS_PORT, on the port behind nginx', () => {
    let scraped: ServerProcess;
    let scrapedNginx: RunningNginx;
    before(async () => {
      scraped = await startServerProcess(environment());
      scrapedNginx = await startNginx([scraped.port]);
    });
    after(async () => {
      await scrapedNginx?.close();
      await scraped?.kill('SIGKILL');
    });

    // Each spelling the server's router matches (case-insensitive, optional trailing slash, query and fragment
    // ignored), and spellings that nginx normalises to one of those.
    const served = ['/metrics', '/metrics/', '/METRICS', '/Metrics', '/metrics?x=1', '/metrics#x'];
    const normalised = ['//metrics', '/metrics/.', '/x/../metrics', '/./METRICS/', '/%6Detrics', '/metrics//'];

    it('is served by the server process itself in every spelling its router matches (the control)', async () => {
      for (const path of served) {
        const answer = await send(scraped.url, path, { headers: { Host: '127.0.0.1' } });
        assert.equal(answer.status, 200, path);
        assert.match(answer.text, /^nodejs_version_info/m, path);
      }
    });

    for (const path of [...served, ...normalised]) {
      it(`answers ${path} through nginx with the JSON 404`, async () => {
        const answer = await send(scrapedNginx.url, path);
        assert.equal(answer.status, 404, `${path}: ${answer.text}`);
        assert.equal(answer.json?.error?.code, 'not_found', answer.text);
        assert.doesNotMatch(answer.text, /nodejs_|process_resident_memory|sse_streams_open/);
      });
    }
  });

  it('writes each request’s path to nginx’s access log, and never the token in its query', async () => {
    const token = await signToken(SECRET, ['logged']);
    const paths = [
      `/api/v1/sse/projects/logged/stream/?access_token=${token}`,
      `/api/v1/sse/projects/logged/stages/rewrite/stream/?compact=1&access_token=${token}`,
      // The server decodes parameter names, so this is a token too: a redacting regex would have to know that.
      `/api/v1/sse/projects/logged/stages/storyboard/stream/?access%5Ftoken=${token}`,
    ];
    for (const path of paths) {
      const reader = await watch(nginx.url + path);
      assert.equal(reader.status, 200, path);
      await reader.waitFor((e) => e.event === 'connected', 5000);
      reader.close();
    }
    // nginx writes a request's line when the request ends: for a stream, once the client has gone.
    const lines = (log: string) => paths.map((path) => log.split('\n').find((line) => line.includes(`"GET ${path.split('?')[0]} HTTP/1.1" 200 `)));
    await waitUntil(async () => lines(await nginx.accessLog()).every(Boolean), 'nginx logged the three streams');
    const log = await nginx.accessLog();
    assert.ok(!log.includes(token.split('.')[2]!), `the token's signature is in the access log:\n${log}`);
    assert.doesNotMatch(log, /access_token|access%5Ftoken|eyJ/);
  });
});
