/**
 * The demo at /sse-demo in Chromium, against the real server (a child process) and a private
 * redis-server: worker -> Redis -> server -> browser as one.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir } from 'node:fs/promises';
import { describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { MOCK_STAGES as PIPELINE_STAGES } from '../server/src/mock/mock-stage.js';
import {
  ROOT,
  counter,
  demoStack,
  openDemo,
  runFromPage,
  screenshot,
  stageText,
  viewerEvents,
  waitForStageStatus,
  waitForStageText,
  waitForViewerEvent,
  type RecordedEvent,
} from './harness.js';

const SECRET = 'e2e-secret-long-enough-for-hs256-signatures';
const TEXT_STAGES = ['rewrite', 'storyboard'];

let projects = 0;

/** A project no other test of this file uses (each file has its own redis-server). */
const project = (name: string) => `${name}-${++projects}`;

// With a secret: the authenticated endpoints work, and execute_stage wants a token (the demo mints one).
const stack = demoStack({ env: { SSE_AUTH_SECRET: SECRET } });

async function open(name: string, viewport?: { width: number; height: number }): Promise<{ page: Page; problems: string[]; id: string }> {
  const id = project(name);
  const demo = await openDemo(stack.browser, stack.server.url, id, viewport);
  stack.track(demo.page.context());
  return { ...demo, id };
}

/** Uncaught exceptions in the page fail the test; console noise does not. */
function assertNoPageErrors(problems: string[]): void {
  assert.deepEqual(
    problems.filter((p) => p.startsWith('pageerror')),
    [],
  );
}

/** The recorded stream messages (not the lifecycle events) of a viewer. */
function messagesOf(events: RecordedEvent[]): RecordedEvent[] {
  return events.filter((e) => e.type !== 'connected' && e.type !== 'disconnected');
}

function assertEachIdOnce(events: RecordedEvent[], viewer: string): void {
  const ids = messagesOf(events).map((e) => e.detail.id);
  assert.ok(ids.every((id) => typeof id === 'string'), `every message to #${viewer} has an id`);
  assert.equal(new Set(ids).size, ids.length, `no id reaches #${viewer} twice`);
}

describe('the demo page', () => {
  it('runs a single stage and the viewer shows exactly the done message\'s full_text', async () => {
    const { page, problems } = await open('single');
    await runFromPage(page, { stage: 'rewrite', speed: 20 });
    const done = await waitForViewerEvent(page, 'single-viewer', 'done', 'rewrite');
    const fullText = String(done.full_text);
    assert.ok(fullText.length > 100, 'the mock rewrite produced a story');
    await waitForStageText(page, 'single-viewer', 'rewrite', fullText);

    const events = await viewerEvents(page, 'single-viewer');
    const tokens = events.filter((e) => e.type === 'token');
    assert.ok(tokens.length >= 20, `at least 20 tokens, got ${tokens.length}`);
    assert.equal(tokens.map((t) => t.detail.content).join(''), fullText);
    assertEachIdOnce(events, 'single-viewer');
    await page.waitForSelector('#run-status[data-tone="ok"]');
    assert.equal(await counter(page, 'gaps'), 0);
    assert.equal(await counter(page, 'duplicates'), 0);
    assert.ok((await counter(page, 'events')) >= tokens.length);
    assertNoPageErrors(problems);
  });

  it('runs the whole pipeline on the all-stages viewer: every stage panel reaches its final state', async () => {
    const { page, problems } = await open('pipeline');
    await runFromPage(page, { stage: 'pipeline', speed: 50 });
    await page.waitForSelector('#run-status[data-tone="ok"]', { timeout: 30_000 });
    assert.match((await page.textContent('#run-status')) ?? '', /Pipeline completed/);

    for (const stage of PIPELINE_STAGES) {
      const done = await waitForViewerEvent(page, 'all-viewer', 'done', stage);
      await waitForStageStatus(page, 'all-viewer', stage, 'completed');
      if (TEXT_STAGES.includes(stage)) await waitForStageText(page, 'all-viewer', stage, String(done.full_text));
    }
    // Stages started one after another: each began only after the previous one was done.
    const events = await viewerEvents(page, 'all-viewer');
    const firstOf = (stage: string) => events.findIndex((e) => e.detail.stage === stage);
    const doneOf = (stage: string) => events.findIndex((e) => e.type === 'done' && e.detail.stage === stage);
    for (const [index, stage] of PIPELINE_STAGES.entries()) {
      if (index > 0) assert.ok(firstOf(stage) > doneOf(PIPELINE_STAGES[index - 1]!), `${stage} started after the previous stage's done`);
    }
    const progress = events.filter((e) => e.type === 'progress' && e.detail.stage === 'image_generation');
    assert.ok(progress.length >= 2, 'image_generation sent a progress message per item');
    assertEachIdOnce(events, 'all-viewer');
    assert.equal(await counter(page, 'gaps'), 0);
    assert.equal(await counter(page, 'duplicates'), 0);
    assertNoPageErrors(problems);
  });

  it('shows the error state when a failure is injected, and the pipeline stops at the failed stage', async () => {
    const { page, problems } = await open('failure');
    await runFromPage(page, { stage: 'pipeline', speed: 30, fail: true });
    const error = await waitForViewerEvent(page, 'all-viewer', 'error', 'rewrite');
    assert.match(String(error.error), /Simulated failure/);
    await waitForStageStatus(page, 'all-viewer', 'rewrite', 'failed');
    await waitForStageStatus(page, 'single-viewer', 'rewrite', 'failed');
    await page.waitForSelector('#run-status[data-tone="bad"]');
    assert.match((await page.textContent('#run-status')) ?? '', /rewrite failed .*the pipeline stopped there/);
    // The runner decided before the status line changed: the next stage was never started.
    const events = await viewerEvents(page, 'all-viewer');
    assert.deepEqual(events.filter((e) => e.detail.stage === 'storyboard'), []);
    // The failed stage is marked in the page's event log too.
    await page.waitForSelector('#event-log-body tr[data-type="error"]');
    assertNoPageErrors(problems);
  });

  it('shows two pages watching the same project the same events in the same order', async () => {
    const first = await open('pair');
    const second = await openDemo(stack.browser, stack.server.url, first.id);
    stack.track(second.page.context());
    await runFromPage(first.page, { stage: 'pipeline', speed: 50 });
    await waitForViewerEvent(first.page, 'all-viewer', 'done', 'video_generation', 30_000);
    await waitForViewerEvent(second.page, 'all-viewer', 'done', 'video_generation', 30_000);

    const sequence = async (page: Page, viewer: string) =>
      messagesOf(await viewerEvents(page, viewer)).map((e) => `${e.type} ${String(e.detail.stage)} ${String(e.detail.id)}`);
    const seen = await sequence(first.page, 'all-viewer');
    assert.ok(seen.length > 20);
    assert.deepEqual(await sequence(second.page, 'all-viewer'), seen);
    assert.deepEqual(await sequence(second.page, 'single-viewer'), await sequence(first.page, 'single-viewer'));
    assertNoPageErrors(first.problems);
    assertNoPageErrors(second.problems);
  });

  it('resumes after "Cut the connection" mid-stream with 0 gaps and 0 duplicates; saves screenshots', async () => {
    // Tall enough to show the controls, the counters and the streaming stages side by side.
    const { page, problems } = await open('story', { width: 1280, height: 1100 });
    await runFromPage(page, { stage: 'pipeline', speed: 2 });
    // Mid-stream: the rewrite is done and the storyboard is streaming.
    await page.waitForFunction(
      () => window.__viewerEvents.filter((e) => e.viewer === 'all-viewer' && e.type === 'token' && e.detail.stage === 'storyboard').length >= 10,
      undefined,
      { timeout: 20_000, polling: 20 },
    );
    await page.click('#cut');
    await page.waitForSelector('#cut-status[data-tone="ok"]');
    // Both public viewers come back with Last-Event-ID.
    await page.waitForFunction(() => Number(document.getElementById('counter-resumes')?.textContent) >= 2, undefined, { timeout: 15_000, polling: 50 });
    await screenshot(page, 'demo-mid-stream');

    await page.waitForSelector('#run-status[data-tone="ok"]', { timeout: 40_000 });
    const events = await viewerEvents(page, 'all-viewer');
    const resumedAt = events.findIndex((e) => e.type === 'connected' && e.detail.resumed === true);
    assert.ok(resumedAt > 0, 'the all-stages viewer resumed');
    assert.ok(
      events.slice(resumedAt).some((e) => e.type === 'token' && e.detail.stage === 'storyboard'),
      'the storyboard was still streaming after the cut',
    );
    for (const stage of TEXT_STAGES) {
      const done = await waitForViewerEvent(page, 'all-viewer', 'done', stage);
      await waitForStageText(page, 'all-viewer', stage, String(done.full_text));
      const tokens = events.filter((e) => e.type === 'token' && e.detail.stage === stage);
      assert.equal(tokens.map((t) => t.detail.content).join(''), done.full_text, `every ${stage} token arrived once, in order`);
    }
    assertEachIdOnce(events, 'all-viewer');
    assertEachIdOnce(await viewerEvents(page, 'single-viewer'), 'single-viewer');
    assert.equal(await counter(page, 'gaps'), 0);
    assert.equal(await counter(page, 'duplicates'), 0);
    assert.ok((await counter(page, 'resumes')) >= 2);
    for (const stage of PIPELINE_STAGES) await waitForStageStatus(page, 'all-viewer', stage, 'completed');

    // The finished page, from the top, into test-artifacts/. The README's copy (docs/screenshot.png) is
    // refreshed only on request (UPDATE_SCREENSHOT=1), so a test run never writes into the tree.
    await page.evaluate(() => window.scrollTo(0, 0));
    const finished = await screenshot(page, 'demo-finished');
    if (process.env.UPDATE_SCREENSHOT === '1') {
      await mkdir(`${ROOT}docs`, { recursive: true });
      await copyFile(finished, `${ROOT}docs/screenshot.png`);
    }
    await screenshot(page, 'demo-finished-full-page', true);
    assertNoPageErrors(problems);
  });

  it('streams the authenticated endpoint with a development token', async () => {
    const { page, problems, id } = await open('auth');
    assert.equal(await page.isVisible('#auth-viewer'), false, 'no authenticated viewer before a token');
    await page.click('#auth-connect');
    await page.waitForSelector('#state-auth[data-state="open"]');
    assert.equal(await page.isVisible('#auth-viewer'), true);
    assert.match((await page.textContent('#auth-status')) ?? '', new RegExp(`Token for project "${id}"`));
    await runFromPage(page, { stage: 'rewrite', speed: 20 });
    const done = await waitForViewerEvent(page, 'auth-viewer', 'done', 'rewrite');
    await waitForStageText(page, 'auth-viewer', 'rewrite', String(done.full_text));
    assertNoPageErrors(problems);
  });

  it('fits a narrow screen in dark mode without horizontal scrolling', async () => {
    const context = await stack.browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark', deviceScaleFactor: 2 });
    stack.track(context);
    const page = await context.newPage();
    await page.goto(`${stack.server.url}/sse-demo/?project=${project('narrow')}`);
    await page.waitForSelector('#state-all[data-state="open"]');
    await page.waitForSelector('#health[data-state="ok"]');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'no horizontal scrollbar at 390 px');
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.notEqual(background, 'rgb(255, 255, 255)', 'dark mode has a dark background');
    await screenshot(page, 'demo-narrow-dark', true);
  });

  it('shows the broker in the header and an API reference written for the current project', async () => {
    const { page, id } = await open('reference');
    await page.waitForSelector('#health[data-state="ok"]');
    assert.match((await page.textContent('#health-text')) ?? '', /Redis/);
    const docs = (await page.textContent('#docs')) ?? '';
    for (const needle of ['createSSEClient', 'isConnected()', 'RedisStreamPublisher', 'publish_token', 'execute_stage', 'Last-Event-ID', 'stage_update', 'auto-connect']) {
      assert.ok(docs.includes(needle), `the reference mentions ${needle}`);
    }
    assert.ok(docs.includes(`curl -N ${stack.server.url}/api/v1/sse/projects/${id}/stages/rewrite/`), 'the curl example targets this server and project');
  });

  describe('state on connect (snapshot)', () => {
    /** What the viewer shows right when its `snapshot` arrived: recorded in the page, before any later token is applied. */
    async function textAtSnapshot(page: Page, viewer: string, stage: string): Promise<{ snapshotText: string; shown: string; tokensBefore: number }> {
      const handle = await page.waitForFunction(
        ([viewer, stage]) => {
          const events = window.__viewerEvents.filter((e) => e.viewer === viewer);
          const index = events.findIndex((e) => e.type === 'snapshot');
          if (index < 0) return undefined;
          const state = (events[index]!.detail.stages as Record<string, { text?: string; done?: { full_text: string } }>)[stage];
          return { snapshotText: state?.done?.full_text ?? state?.text ?? '', tokensBefore: events.slice(0, index).filter((e) => e.type === 'token').length };
        },
        [viewer, stage] as const,
        { polling: 'raf', timeout: 10_000 },
      );
      const found = (await handle.jsonValue()) as { snapshotText: string; tokensBefore: number };
      return { ...found, shown: await stageText(page, viewer, stage) };
    }

    it('reloaded mid-stage, shows the text so far at once, then continues it exactly', async () => {
      const { page, problems } = await open('reload-mid');
      await runFromPage(page, { stage: 'rewrite', speed: 1 });
      await page.waitForFunction(
        () => (window.__deepQuery('single-viewer', '[data-stage="rewrite"] [part="text"]')?.textContent ?? '').length > 20,
        undefined,
        { timeout: 15_000, polling: 50 },
      );
      await page.reload();
      await page.waitForSelector('#state-single[data-state="open"]');
      const { snapshotText, shown, tokensBefore } = await textAtSnapshot(page, 'single-viewer', 'rewrite');
      assert.equal(tokensBefore, 0, 'no token reached the reloaded viewer before the snapshot');
      assert.ok(snapshotText.length > 20, `the snapshot holds the text so far (${snapshotText.length} chars)`);
      assert.ok(shown.startsWith(snapshotText), 'the viewer shows the snapshot text as soon as it arrived');

      const done = await waitForViewerEvent(page, 'single-viewer', 'done', 'rewrite', 60_000);
      const events = await viewerEvents(page, 'single-viewer');
      const after = events.filter((e) => e.type === 'token').map((e) => e.detail.content).join('');
      assert.equal(snapshotText + after, String(done.full_text), 'snapshot text + the later tokens = the final text: no gap, no duplicate');
      await waitForStageText(page, 'single-viewer', 'rewrite', String(done.full_text));
      assert.equal(await counter(page, 'gaps'), 0);
      assert.equal(await counter(page, 'duplicates'), 0);
      assertNoPageErrors(problems);
    });

    it('reloaded after the pipeline is done, shows every stage panel in its final state', async () => {
      const { page, problems } = await open('reload-done');
      await runFromPage(page, { stage: 'pipeline', speed: 50 });
      await page.waitForSelector('#run-status[data-tone="ok"]', { timeout: 30_000 });
      const finals = new Map<string, string>();
      for (const stage of PIPELINE_STAGES) finals.set(stage, String((await waitForViewerEvent(page, 'all-viewer', 'done', stage)).full_text));

      await page.reload();
      await waitForViewerEvent(page, 'all-viewer', 'snapshot');
      for (const stage of PIPELINE_STAGES) {
        await waitForStageStatus(page, 'all-viewer', stage, 'completed', 2000);
        if (TEXT_STAGES.includes(stage)) await waitForStageText(page, 'all-viewer', stage, finals.get(stage)!, 2000);
      }
      await waitForStageStatus(page, 'single-viewer', 'rewrite', 'completed', 2000);
      const replayed = (await viewerEvents(page, 'all-viewer')).filter((e) => ['token', 'done', 'stage_update', 'progress'].includes(e.type));
      assert.deepEqual(replayed, [], 'the history is not re-fired as message events');
      assertNoPageErrors(problems);
    });

    it('a second tab opened late shows the current state at once', async () => {
      const first = await open('late-tab');
      await runFromPage(first.page, { stage: 'pipeline', speed: 50 });
      const rewrite = await waitForViewerEvent(first.page, 'all-viewer', 'done', 'rewrite');

      const second = await openDemo(stack.browser, stack.server.url, first.id);
      stack.track(second.page.context());
      const snapshot = await waitForViewerEvent(second.page, 'all-viewer', 'snapshot');
      assert.ok(Object.hasOwn(snapshot.stages as object, 'rewrite'), 'the snapshot holds the stages so far');
      await waitForStageStatus(second.page, 'all-viewer', 'rewrite', 'completed', 2000);
      await waitForStageText(second.page, 'all-viewer', 'rewrite', String(rewrite.full_text), 2000);

      await first.page.waitForSelector('#run-status[data-tone="ok"]', { timeout: 30_000 });
      for (const stage of PIPELINE_STAGES) await waitForStageStatus(second.page, 'all-viewer', stage, 'completed');
      assert.equal(await counter(second.page, 'gaps'), 0);
      assert.equal(await counter(second.page, 'duplicates'), 0);
      assertNoPageErrors(second.problems);
    });
  });
});
