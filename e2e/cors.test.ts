/**
 * Cross-origin use in a real browser: a page on one origin (a tiny static server of this test's own, serving the
 * kit's single-file build) streams a stage from the hub on another origin through
 * `<sse-stream-viewer base-url="http://127.0.0.1:<hub port>">` with a token: the multiplexed connection (its GET
 * and its JSON POSTs, each preflighted) works when SSE_CORS_ORIGINS lists the page's origin, and the very same page
 * is blocked by the browser against a hub without the setting.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { signToken } from '../server/src/http/auth.js';
import { StreamPublisher } from '../server/src/publisher.js';
import { ROOT, launchBrowser, startRedis, startServer, type ServerProcess, type TestRedis } from './harness.js';

const SECRET = 'e2e-cors-secret-that-is-long-enough-for-hs256';
const WORDS = 'A page on one origin reads a stream from another, token and all.'.split(' ');
const SENTENCE = WORDS.join(' ');

let work: string;
let redis: TestRedis;
/** The page's origin: a static server on a port of its own. */
let site: Server;
let pageOrigin: string;
/** SSE_CORS_ORIGINS lists the page's origin. */
let hub: ServerProcess;
/** The same hub without SSE_CORS_ORIGINS: same-origin only. */
let closedHub: ServerProcess;
let browser: Browser;
const contexts: BrowserContext[] = [];

/** The page: the kit from this origin, one viewer of `project`/`rewrite` on the hub at `hub`, with `token`. */
function pageHtml(hubUrl: string): string {
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>Cross-origin viewer</title>
    <script type="module" src="/sse-kit.js"></script>
  </head>
  <body>
    <sse-stream-viewer id="viewer" stage-name="rewrite" base-url="${hubUrl}"></sse-stream-viewer>
    <script type="module">
      const params = new URLSearchParams(location.search);
      const viewer = document.getElementById('viewer');
      viewer.setAttribute('project-id', params.get('project'));
      viewer.token = params.get('token');
      viewer.setAttribute('auto-connect', '');
    </script>
  </body>
</html>`;
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sse-cors-e2e-'));
  // The kit's single-file build (and its SharedWorker beside it), as a user builds it: npm run build:client.
  const built = spawnSync(process.execPath, ['scripts/build-client.mjs', '--out-dir', work], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(built.status, 0, `building the kit failed:\n${built.stdout}\n${built.stderr}`);
  const files: Record<string, Buffer> = {
    '/sse-kit.js': await readFile(join(work, 'sse-kit.js')),
    '/sse-kit-worker.js': await readFile(join(work, 'sse-kit-worker.js')),
  };
  site = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://page');
    const file = files[url.pathname];
    if (file) return res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(file);
    const hubUrl = url.searchParams.get('hub');
    if (url.pathname === '/' && hubUrl) return res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(pageHtml(escapeHtml(hubUrl)));
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;

  redis = await startRedis();
  const env = { SSE_AUTH_SECRET: SECRET, LOG_LEVEL: 'info' };
  [hub, closedHub] = await Promise.all([
    startServer({ redisUrl: redis.url, env: { ...env, SSE_CORS_ORIGINS: pageOrigin } }),
    startServer({ redisUrl: redis.url, env }),
  ]);
  browser = await launchBrowser();
});

afterEach(async () => {
  await Promise.all(contexts.splice(0).map((context) => context.close()));
});

after(async () => {
  await browser?.close();
  await Promise.all([hub?.kill(), closedHub?.kill()]);
  await redis?.close();
  await new Promise((resolve) => (site ? site.close(resolve) : resolve(undefined)));
  if (work) await rm(work, { recursive: true, force: true });
});

/** Opens the page on the page origin, its viewer watching `project` on the hub at `hubUrl` with a token for it. */
async function openPage(hubUrl: string, project: string): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  const token = await signToken(SECRET, [project], 600);
  await page.goto(`${pageOrigin}/?${new URLSearchParams({ hub: hubUrl, project, token })}`);
  assert.deepEqual(problems, [], 'no uncaught error in the page');
  return page;
}

/** The viewer's badge state and the text of its rewrite stage, read in the page. */
function shown(page: Page) {
  return page.evaluate(() => {
    const root = document.getElementById('viewer')?.shadowRoot;
    return {
      state: root?.querySelector<HTMLElement>('[part="badge"]')?.dataset.state,
      text: root?.querySelector('[data-stage="rewrite"] [part="text"]')?.textContent ?? '',
    };
  });
}

async function publishStage(project: string): Promise<void> {
  const publisher = new StreamPublisher({ projectId: project, stage: 'rewrite', redisUrl: redis.url });
  try {
    await publisher.publishStageUpdate('processing', 0, 'Rewriting');
    let text = '';
    for (const [index, word] of WORDS.entries()) {
      text += index === 0 ? word : ` ${word}`;
      await publisher.publishToken(index === 0 ? word : ` ${word}`, text);
    }
    await publisher.publishStageUpdate('completed', 100, 'Rewritten');
    await publisher.publishDone(text, { tokens_used: WORDS.length });
  } finally {
    await publisher.close();
  }
}

describe('a page on another origin', () => {
  it('streams a stage with a token through the multiplexed connection when SSE_CORS_ORIGINS lists its origin', async () => {
    assert.notEqual(new URL(pageOrigin).port, String(hub.port), 'two origins');
    const page = await openPage(hub.url, 'xo1');
    await page.waitForFunction(() => document.getElementById('viewer')?.shadowRoot?.querySelector<HTMLElement>('[part="badge"]')?.dataset.state === 'open', undefined, {
      timeout: 20_000,
    });
    await publishStage('xo1');
    await page.waitForFunction(
      (expected) => document.getElementById('viewer')?.shadowRoot?.querySelector('[data-stage="rewrite"] [part="text"]')?.textContent === expected,
      SENTENCE,
      { timeout: 20_000 },
    ).catch(async () => assert.equal((await shown(page)).text, SENTENCE, 'the viewer shows the exact text'));
    assert.equal((await shown(page)).text, SENTENCE);
    // It went through the multiplexed connection: the stream (a GET) and a subscription (a JSON POST, with the token).
    assert.match(hub.output(), /"msg":"mux connection opened"/);
    assert.match(hub.output(), /"project_id":"xo1"[^\n]*"msg":"subscription opened"/);
  });

  it('is blocked by the browser against a hub without SSE_CORS_ORIGINS, and sees nothing', async () => {
    await publishStage('xo2');
    const page = await openPage(closedHub.url, 'xo2');
    // The preflight fails (405, no CORS headers): the connection never opens and the viewer retries.
    await page.waitForFunction(() => document.getElementById('viewer')?.shadowRoot?.querySelector<HTMLElement>('[part="badge"]')?.dataset.state === 'reconnecting', undefined, {
      timeout: 20_000,
    });
    const seen = await shown(page);
    assert.equal(seen.text, '', 'no text reached the page');
    assert.notEqual(seen.state, 'open');
    assert.doesNotMatch(closedHub.output(), /mux connection opened|subscription opened|stream opened/, 'no stream was opened on that hub');
    // The same page on the hub that lists its origin gets the text, so it was the setting that made the difference.
    const allowed = await openPage(hub.url, 'xo2');
    await allowed.waitForFunction(
      (expected) => document.getElementById('viewer')?.shadowRoot?.querySelector('[data-stage="rewrite"] [part="text"]')?.textContent === expected,
      SENTENCE,
      { timeout: 20_000 },
    );
  });
});
