/**
 * SSE_TRUSTED_PROXIES behind real nginx (deploy/nginx.conf): the per-client limit counts each browser address, not
 * nginx's; an X-Forwarded-For a client writes itself changes nothing, through nginx or straight to the server; the
 * log lines name the real client. The clients are separate loopback addresses (127.0.0.2, 127.0.0.3, …) bound on
 * this machine, so nginx sees each as its own `$remote_addr`. The negative control: without the setting, every user
 * behind nginx is one client.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { request, type ClientRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { streamUrl } from './harness.js';
import { NGINX, NGINX_CONF, deployEnvironment, startNginx, type RunningNginx } from './nginx.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import { waitUntil } from './wait-until.js';

const missing = spawnSync(NGINX, ['-v']).status !== 0;
// As in nginx.test.ts: outside CI a machine without nginx skips with a message; in CI it must run.
const skip = missing && !process.env.CI ? `${NGINX} not found (apt-get install nginx, or set NGINX)` : false;

const LIMIT = 3;
let redis: TestRedis;
let trusting: ServerProcess;
let naive: ServerProcess;
let nginx: RunningNginx;
let naiveNginx: RunningNginx;
const open: ClientRequest[] = [];

before(async () => {
  if (skip) return;
  const documented = deployEnvironment(await readFile(NGINX_CONF, 'utf8'));
  assert.ok(documented.SSE_TRUSTED_PROXIES, 'deploy/nginx.conf exports SSE_TRUSTED_PROXIES');
  assert.equal(documented.SSE_MAX_STREAMS_PER_CLIENT, undefined, 'deploy/nginx.conf no longer turns the per-client limit off');
  redis = await startRedis();
  const env = { REDIS_URL: redis.url, SSE_MAX_STREAMS_PER_CLIENT: String(LIMIT), LOG_LEVEL: 'info' };
  [trusting, naive] = await Promise.all([startServerProcess({ ...env, SSE_TRUSTED_PROXIES: documented.SSE_TRUSTED_PROXIES }), startServerProcess(env)]);
  [nginx, naiveNginx] = await Promise.all([startNginx([trusting.port]), startNginx([naive.port])]);
});
after(async () => {
  for (const req of open) req.destroy();
  await nginx?.close();
  await naiveNginx?.close();
  await Promise.all([trusting?.kill('SIGKILL'), naive?.kill('SIGKILL')]);
  await redis?.close();
});

interface Answer {
  status: number;
  /** The JSON error of a refusal. */
  error?: { code: string; message: string };
}

/** Opens a stream from the local address `from`; a 200 stays open (closed in after()), a refusal is read whole. */
function openFrom(from: string, url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path: pathname, localAddress: from, agent: false, headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
      if (res.statusCode === 200) {
        open.push(req);
        return resolve({ status: 200 });
      }
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, error: JSON.parse(text).error }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function closeAll(server: ServerProcess): Promise<void> {
  for (const req of open.splice(0)) req.destroy();
  await waitUntil(async () => /^sse_streams_open 0$/m.test(await (await fetch(`${server.url}/metrics`)).text()), 'every stream closed');
}

describe('SSE_TRUSTED_PROXIES behind nginx', { skip }, () => {
  it('limits streams per browser address, not per nginx', async () => {
    for (let i = 0; i < LIMIT; i++) assert.equal((await openFrom('127.0.0.2', streamUrl(nginx.url, 't1', 'rewrite'))).status, 200);
    const refused = await openFrom('127.0.0.2', streamUrl(nginx.url, 't1', 'rewrite'));
    assert.equal(refused.status, 429);
    assert.equal(refused.error?.code, 'too_many_streams');
    assert.match(refused.error!.message, new RegExp(`At most ${LIMIT} open streams per client`), 'the server refused it, not nginx');
    // Another browser behind the same nginx is not affected.
    assert.equal((await openFrom('127.0.0.3', streamUrl(nginx.url, 't1', 'rewrite'))).status, 200);
    await closeAll(trusting);
  });

  it('ignores an X-Forwarded-For the client wrote itself, through nginx', async () => {
    for (let i = 0; i < LIMIT; i++) {
      const answer = await openFrom('127.0.0.2', streamUrl(nginx.url, 't2'), { 'X-Forwarded-For': `198.51.100.${i + 1}` });
      assert.equal(answer.status, 200);
    }
    const spoofed = await openFrom('127.0.0.2', streamUrl(nginx.url, 't2'), { 'X-Forwarded-For': '198.51.100.99, 127.0.0.3' });
    assert.equal(spoofed.status, 429, 'a forged list still counts as 127.0.0.2');
    await closeAll(trusting);
  });

  it('ignores X-Forwarded-For from an address that is not a trusted proxy', async () => {
    for (let i = 0; i < LIMIT; i++) assert.equal((await openFrom('127.0.0.4', streamUrl(trusting.url, 't3'), { 'X-Forwarded-For': `203.0.113.${i + 1}` })).status, 200);
    assert.equal((await openFrom('127.0.0.4', streamUrl(trusting.url, 't3'), { 'X-Forwarded-For': '203.0.113.50' })).status, 429);
    await closeAll(trusting);
  });

  it('writes the real client address in the log lines', async () => {
    await waitUntil(() => /"remote":"127\.0\.0\.2".*"msg":"stream opened"|"msg":"stream opened".*"remote":"127\.0\.0\.2"/.test(trusting.output()), 'a log line for 127.0.0.2');
    const remotes = new Set([...trusting.output().matchAll(/"remote":"([^"]+)"/g)].map((match) => match[1]));
    assert.deepEqual([...remotes].sort(), ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
  });

  it('negative control: without it, every user behind nginx is one client', async () => {
    for (let i = 0; i < LIMIT; i++) assert.equal((await openFrom('127.0.0.2', streamUrl(naiveNginx.url, 't4'))).status, 200);
    assert.equal((await openFrom('127.0.0.3', streamUrl(naiveNginx.url, 't4'))).status, 429, 'another browser is refused');
    assert.match(naive.output(), /"remote":"127\.0\.0\.1"/);
    await closeAll(naive);
  });
});
