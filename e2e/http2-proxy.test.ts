/**
 * deploy/nginx-http2.conf: TLS and HTTP/2 at nginx with a self-signed certificate, in front of two server processes,
 * driving Chromium (certificate errors ignored). Ten tabs of the demo in one browser profile, each with a connection
 * of its own (no SharedWorker or Web Locks, so the kit cannot share one), all stream at once: over HTTP/2 they are
 * streams of one connection, where HTTP/1.1 would stall the seventh tab (the negative control shows it). Then a server
 * process is SIGKILLed under them, and every tab resumes on the other one and ends with exactly the published text.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { StreamPublisher } from '../server/src/publisher.js';
import { RedisBroker } from '../server/src/broker/redis-broker.js';
import { NGINX, NGINX_CONF, NGINX_HTTP2_CONF, startNginx, type RunningNginx } from '../server/test/nginx.js';
import { waitUntil } from '../server/test/wait-until.js';
import { buildDemo, counter, launchBrowser, recordViewerEvents, startRedis, startServer, waitForStageText, type ServerProcess, type TestRedis } from './harness.js';

const TABS = 10;
const missing = [spawnSync(NGINX, ['-v']).status !== 0 && 'nginx', spawnSync('openssl', ['version']).status !== 0 && 'openssl'].filter(Boolean);
const skip = missing.length > 0 && !process.env.CI ? `${missing.join(' and ')} not found (apt-get install nginx openssl)` : false;

let dir: string;
let redis: TestRedis;
let broker: RedisBroker;
let servers: ServerProcess[] = [];
let nginx: RunningNginx;
let browser: Browser;
const contexts: BrowserContext[] = [];
let tls: { certificate: string; key: string };

before(async () => {
  if (skip) return;
  buildDemo();
  dir = await mkdtemp(join(tmpdir(), 'sse-h2-'));
  tls = { certificate: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', tls.key, '-out', tls.certificate], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  redis = await startRedis();
  broker = new RedisBroker({ url: redis.url });
  const env = { SSE_TRUSTED_PROXIES: '127.0.0.1' };
  servers = await Promise.all([startServer({ redisUrl: redis.url, env }), startServer({ redisUrl: redis.url, env })]);
  nginx = await startNginx(servers.map((server) => server.port), undefined, { conf: NGINX_HTTP2_CONF, tls });
  browser = await launchBrowser();
});
after(async () => {
  await Promise.all(contexts.map((context) => context.close()));
  await browser?.close();
  await nginx?.close();
  await Promise.all(servers.map((server) => server.kill('SIGKILL')));
  await broker?.close();
  await redis?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A browser profile whose pages cannot share a connection: each tab holds its own (the kit's `page` mode). */
async function unsharedContext(): Promise<BrowserContext> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 800 } });
  contexts.push(context);
  await context.addInitScript('delete window.SharedWorker; Object.defineProperty(navigator, "locks", { value: undefined });');
  return context;
}

const demoUrl = (base: string, project: string) => `${base}/sse-demo/?project=${project}`;
const isOpen = (page: Page) =>
  page.evaluate(() => document.querySelector('#state-single')?.getAttribute('data-state') === 'open' && document.querySelector('#state-all')?.getAttribute('data-state') === 'open');

async function streamsOf(server: ServerProcess): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return Number(/^sse_streams_open (\d+)$/m.exec(text)?.[1] ?? NaN);
}

describe('TLS and HTTP/2 at nginx (deploy/nginx-http2.conf)', { skip }, () => {
  it('is deploy/nginx.conf with only the listen line replaced by the TLS and HTTP/2 block', async () => {
    const plain = await readFile(NGINX_CONF, 'utf8');
    const h2 = await readFile(NGINX_HTTP2_CONF, 'utf8');
    const body = (text: string) => text.slice(text.indexOf('worker_processes'));
    const withoutTls = body(h2).replace(/^ {8}# --- TLS and HTTP\/2 [\s\S]*?# --- end of TLS and HTTP\/2 ---\n/m, '        listen 8080;\n');
    assert.equal(withoutTls, body(plain), 'deploy/nginx-http2.conf differs from deploy/nginx.conf: run node scripts/build-nginx-http2.mjs');
    assert.match(h2, /^ {8}listen 443 ssl http2;$/m);
  });

  it(`streams to ${TABS} demo tabs over one HTTP/2 connection, and resumes them all after a server process is killed`, async () => {
    const context = await unsharedContext();
    const pages: Page[] = [];
    for (let i = 0; i < TABS; i++) {
      const page = await context.newPage();
      await recordViewerEvents(page);
      await page.goto(demoUrl(nginx.url, 'h2'));
      pages.push(page);
    }
    for (const page of pages) {
      await page.waitForSelector('#state-single[data-state="open"]', { timeout: 15_000 });
      await page.waitForSelector('#state-all[data-state="open"]', { timeout: 15_000 });
    }
    for (const page of pages) {
      assert.equal(await page.evaluate(() => (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).nextHopProtocol), 'h2');
      // Each tab holds a connection of its own: the kit could not share one here.
      await page.waitForSelector('#health[data-sharing="page"]', { timeout: 10_000 });
    }
    // Ten multiplexed connections on the servers, one per tab, spread over both processes by their ids.
    await waitUntil(async () => (await Promise.all(servers.map(streamsOf))).reduce((a, b) => a + b) === TABS, 'one stream per tab on the servers');
    const counts = await Promise.all(servers.map(streamsOf));
    assert.ok(counts.every((count) => count > 0), `both processes hold tabs: ${counts}`);

    await using publisher = new StreamPublisher({ projectId: 'h2', stage: 'rewrite', broker });
    const words = Array.from({ length: 60 }, (_, i) => `w${i} `);
    let text = '';
    for (const [i, word] of words.entries()) {
      await publisher.publishToken(word, (text += word));
      if (i === 20) {
        await Promise.all(pages.map((page) => waitForStageText(page, 'single-viewer', 'rewrite', text, 10_000)));
        await servers[0]!.kill('SIGKILL');
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await publisher.publishDone(text, {});
    for (const page of pages) await waitForStageText(page, 'single-viewer', 'rewrite', text, 20_000);
    const resumes = await Promise.all(pages.map((page) => counter(page, 'resumes')));
    assert.equal(resumes.filter((count) => count > 0).length, counts[0], `the tabs of the killed process resumed: ${resumes}`);
    for (const page of pages) {
      assert.equal(await counter(page, 'gaps'), 0);
      assert.equal(await counter(page, 'duplicates'), 0);
    }
    assert.equal(await streamsOf(servers[1]!), TABS, 'every tab is on the process that is left');
    // nginx logs a request when it ends: the streams the kill ended are there, and every request was HTTP/2.
    const log = await nginx.accessLog();
    assert.ok(/"GET \/api\/v1\/sse\/mux\/ HTTP\/2\.0" 200/.test(log), 'the streams went over HTTP/2');
    assert.ok(!/ HTTP\/1\.[01]" /.test(log), 'nothing went over HTTP/1.x');
    await context.close();
  });

  it('negative control: the same ten tabs over HTTP/1.1 stall at six connections', async () => {
    const http1 = await startNginx([servers[1]!.port], (config) => config.replace(/listen (\S+) ssl http2;/, 'listen $1 ssl;'), { conf: NGINX_HTTP2_CONF, tls });
    try {
      const context = await unsharedContext();
      const pages = await Promise.all(Array.from({ length: TABS }, () => context.newPage()));
      // Not awaited one by one: the seventh tab's own page load may wait for a connection.
      await Promise.all(pages.map((page) => page.goto(demoUrl(http1.url, 'h1'), { waitUntil: 'commit', timeout: 5000 }).catch(() => {})));
      // A sleep, to show that something does not happen: with six connections held by streams, the other tabs' streams
      // and even the subscribe requests of the first ones wait (the time the tabs above took to stream, and more).
      await new Promise((resolve) => setTimeout(resolve, 8000));
      const open = (await Promise.all(pages.map((page) => isOpen(page).catch(() => false)))).filter(Boolean).length;
      assert.ok(open < TABS, `${open} of ${TABS} tabs streaming over HTTP/1.1`);
      // The positive control of the negative one: the same server and page do stream over HTTP/2 (the test above).
      await context.close();
    } finally {
      await http1.close();
    }
  });
});
