/**
 * One connection per browser: many demo tabs of one browser (one Playwright context) hold one stream to the
 * server, whatever they watch; and without SharedWorker, a leader tab holds it and another takes over when it
 * closes, with no gap and no duplicate in any tab.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import {
  counter,
  demoStack,
  recordViewerEvents,
  runFromPage,
  serverMetrics,
  viewerEvents,
  waitForStageText,
  waitForViewerEvent,
} from './harness.js';
import { waitUntil } from '../server/test/wait-until.js';

const stack = demoStack();

/** A gauge of the server's /metrics. */
async function metric(name: string): Promise<number> {
  const value = (await serverMetrics(stack.server.url)).get(name);
  assert.ok(value !== undefined, `${name} is in /metrics`);
  return value;
}

/** Waits until the streams of the tests before (their browser contexts are closed) are gone: 0 open streams. */
async function idle(): Promise<number> {
  await waitUntil(async () => (await metric('sse_streams_open')) === 0, 'no stream is open');
  return 0;
}

async function newContext(options: { sharedWorker: boolean; webSocket?: boolean }): Promise<BrowserContext> {
  const context = await stack.browser.newContext({ viewport: { width: 1280, height: 900 } });
  // The fallback path: a browser without SharedWorker (Safari before 16, some Android browsers).
  if (!options.sharedWorker) await context.addInitScript('delete window.SharedWorker;');
  // A network or an extension that blocks WebSocket: the constructor throws, as Chromium's does when blocked.
  if (options.webSocket === false) await context.addInitScript("window.WebSocket = function WebSocket() { throw new DOMException('blocked', 'SecurityError'); };");
  stack.track(context);
  return context;
}

/** Opens the demo on `project` in a new tab of `context`, and waits until both of its viewers stream. */
async function openTab(context: BrowserContext, project: string, query = ''): Promise<Page> {
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  await recordViewerEvents(page);
  await page.goto(`${stack.server.url}/sse-demo/?project=${project}${query}`);
  await page.waitForSelector('#state-single[data-state="open"]', { timeout: 20_000 });
  await page.waitForSelector('#state-all[data-state="open"]', { timeout: 20_000 });
  assert.deepEqual(problems, [], `no uncaught error in the tab of ${project}`);
  return page;
}

/** The id of each message a viewer got is new, and the tokens of `stage` make the done's `full_text`, in order. */
async function assertExact(page: Page, viewer: string, stage: string): Promise<string> {
  const done = await waitForViewerEvent(page, viewer, 'done', stage, 40_000).catch(async (error: unknown) => {
    // What the viewer got instead, for the failure message.
    const events = await viewerEvents(page, viewer);
    const badge = await page.getAttribute(viewer === 'single-viewer' ? '#state-single' : '#state-all', 'data-state');
    // A refusal names its status and code (e.g. disconnected:http_status 409 subscription_exists).
    const why = (e: (typeof events)[number]) => [e.detail.status, (e.detail.error as { code?: string } | undefined)?.code].filter((v) => v !== undefined).join(' ');
    const last = events.slice(-5).map((e) => `${e.type}:${String(e.detail.id ?? e.detail.reason ?? '')}${why(e) ? ` ${why(e)}` : ''}`);
    throw new Error(`${String(error)}; #${viewer} (${badge}) got ${events.length} events, the last ${last.join(' ')}`);
  });
  await waitForStageText(page, viewer, stage, String(done.full_text));
  const events = await viewerEvents(page, viewer);
  const ids = events.filter((e) => e.type !== 'connected' && e.type !== 'disconnected').map((e) => e.detail.id);
  assert.equal(new Set(ids).size, ids.length, `no id reaches #${viewer} twice`);
  const tokens = events.filter((e) => e.type === 'token' && e.detail.stage === stage);
  // A viewer that joined mid-stage starts from a snapshot: its tokens are the end of the text.
  assert.ok(String(done.full_text).endsWith(tokens.map((t) => t.detail.content).join('')), `every ${stage} token after the start arrived once, in order`);
  return String(done.full_text);
}

describe('one connection per browser', () => {
  it('ten demo tabs on ten projects hold one stream, all of them stream, and a plain fetch from the last still answers', async () => {
    const before = await idle();
    const context = await newContext({ sharedWorker: true });
    const pages: Page[] = [];
    for (let i = 0; i < 10; i++) pages.push(await openTab(context, `tab-${i}`));
    await pages[9]!.waitForSelector('#health[data-sharing="worker"]');
    // Two viewers per tab, twenty subscriptions, one stream.
    assert.equal(await metric('sse_streams_open'), before + 1, 'the ten tabs hold one stream');
    assert.ok((await metric('sse_mux_subscriptions_open')) >= 20, 'each viewer is a subscription on it');

    const status = await pages[9]!.evaluate(() => Promise.race([fetch('/healthz').then((r) => r.status), new Promise((resolve) => setTimeout(() => resolve('timeout'), 5000))]));
    assert.equal(status, 200, 'the tenth tab can still make a plain request');

    // Every tab streams its own project at once.
    await Promise.all(pages.map((page) => runFromPage(page, { stage: 'rewrite', speed: 5 })));
    for (const page of pages) {
      await assertExact(page, 'single-viewer', 'rewrite');
      assert.equal(await counter(page, 'gaps'), 0);
      assert.equal(await counter(page, 'duplicates'), 0);
    }
    assert.equal(await metric('sse_streams_open'), before + 1, 'still one stream');

    // A tab that closes takes its subscriptions with it; the stream stays for the others.
    const subscriptions = await metric('sse_mux_subscriptions_open');
    await pages[0]!.close();
    await waitUntil(async () => (await metric('sse_mux_subscriptions_open')) <= subscriptions - 2, 'the closed tab\'s subscriptions are gone');
    assert.equal(await metric('sse_streams_open'), before + 1);
  });

  it('without SharedWorker, a leader tab holds the stream; when it closes mid-stage another takes over, and no tab loses or repeats anything', async () => {
    const before = await idle();
    const context = await newContext({ sharedWorker: false });
    const project = 'leader-handover';
    // The first tab takes the leader's lock.
    const leader = await openTab(context, project);
    const followers = [await openTab(context, project), await openTab(context, project)];
    for (const page of [leader, ...followers]) await page.waitForSelector('#health[data-sharing="leader"]');
    assert.equal(await metric('sse_streams_open'), before + 1, 'three tabs without SharedWorker hold one stream');

    await runFromPage(followers[0]!, { stage: 'rewrite', speed: 1 });
    // Mid-stage: some tokens reached every follower.
    for (const page of followers) {
      await page.waitForFunction(() => window.__viewerEvents.filter((e) => e.viewer === 'single-viewer' && e.type === 'token').length >= 15, undefined, { timeout: 20_000, polling: 20 });
    }
    await leader.close();

    const texts: string[] = [];
    for (const page of followers) {
      texts.push(await assertExact(page, 'single-viewer', 'rewrite'));
      texts.push(await assertExact(page, 'all-viewer', 'rewrite'));
      assert.equal(await counter(page, 'gaps'), 0);
      assert.equal(await counter(page, 'duplicates'), 0);
    }
    assert.equal(new Set(texts).size, 1, 'every viewer of every tab shows the same text');
    await waitUntil(async () => (await metric('sse_streams_open')) === before + 1, 'one stream again, held by the new leader');
  });

  it('streams the demo over a WebSocket (?transport=websocket) with every HTTP event stream blocked', async () => {
    await idle();
    const context = await newContext({ sharedWorker: true });
    // No event stream over HTTP can open: whatever streams, streams over the WebSocket.
    await context.route('**/api/v1/sse/**', (route) => (route.request().url().includes('/api/v1/sse/ws/') ? route.continue() : route.abort()));
    const page = await openTab(context, 'over-ws', '&transport=websocket');
    await runFromPage(page, { stage: 'rewrite', speed: 5 });
    await assertExact(page, 'single-viewer', 'rewrite');
    await assertExact(page, 'all-viewer', 'rewrite');
    assert.equal(await counter(page, 'gaps'), 0);
    assert.equal(await counter(page, 'duplicates'), 0);
    assert.equal(await metric('sse_streams_open'), 1, 'one WebSocket for the tab');
  });

  it('falls back to SSE under ?transport=auto in a page where WebSocket is blocked', async () => {
    await idle();
    // Without SharedWorker the connection lives in the page (the leader tab), where WebSocket is blocked.
    const context = await newContext({ sharedWorker: false, webSocket: false });
    const page = await openTab(context, 'auto-fallback', '&transport=auto');
    await runFromPage(page, { stage: 'rewrite', speed: 5 });
    await assertExact(page, 'single-viewer', 'rewrite');
    assert.equal(await counter(page, 'gaps'), 0);
    assert.equal(await metric('sse_streams_open'), 1);
  });
});
