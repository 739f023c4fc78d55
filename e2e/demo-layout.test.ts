/**
 * The demo's small things, each checked where a newcomer would trip over it: what a page load asks of the
 * server, the speed slider's name, tiles and chips at common laptop widths, what Run shows on a phone, and
 * what "Cut the connection" says it cut. Its own server, so the page-load counts are this file's alone.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import {
  demoStack,
  openDemo,
  runFromPage,
  screenshot,
  serverMetrics,
  waitForViewerEvent,
} from './harness.js';

let projects = 0;
const project = (name: string) => `${name}-${++projects}`;

const stack = demoStack();

async function open(name: string, viewport = { width: 1280, height: 900 }): Promise<{ page: Page; id: string }> {
  const id = project(name);
  const demo = await openDemo(stack.browser, stack.server.url, id, viewport);
  stack.track(demo.page.context());
  return { page: demo.page, id };
}

const metrics = () => serverMetrics(stack.server.url);

describe('the demo page, the small things', () => {
  // First in the file: nothing else has talked to this server yet.
  it('a page load opens one connection with one subscription per viewer, and ends none of them', async () => {
    const before = await metrics();
    const context = await stack.browser.newContext({ viewport: { width: 1280, height: 900 } });
    stack.track(context);
    const page = await context.newPage();
    const failed: string[] = [];
    page.on('requestfailed', (request) => failed.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`));
    await page.goto(`${stack.server.url}/sse-demo/?project=${project('load')}`);
    await page.waitForSelector('#state-single[data-state="open"]');
    await page.waitForSelector('#state-all[data-state="open"]');
    await page.waitForSelector('#health[data-state="ok"]');
    // Long enough for a stray request opened and aborted on the first render to have shown up in the counts.
    await page.waitForTimeout(500);
    const now = await metrics();
    const delta = (name: string) => (now.get(name) ?? 0) - (before.get(name) ?? 0);
    // The page's own requests (the SharedWorker's are not seen here; the server's counters see both).
    assert.deepEqual(failed, [], 'no request of the page was aborted');
    assert.equal(delta('sse_streams_opened_total'), 1, 'one connection: the multiplexed stream the viewers share');
    assert.equal(delta('sse_mux_subscriptions_total'), 2, 'one subscription each for the single-stage and the all-stages viewer');
    assert.equal(delta('sse_streams_closed_total'), 0, 'no stream was opened and dropped at once');
    assert.equal(delta('sse_mux_subscriptions_closed_total'), 0, 'no subscription was opened and dropped at once');
  });

  it('names the speed slider "Speed" and reads its value as the multiplier', async () => {
    const { page } = await open('slider');
    const slider = page.getByRole('slider', { name: 'Speed', exact: true });
    assert.equal(await slider.count(), 1);
    await slider.fill('7');
    assert.equal(await slider.getAttribute('aria-valuetext'), '7×');
    assert.equal(await page.textContent('#speed-value'), '7×');
  });

  for (const width of [1024, 1280]) {
    it(`at ${width} px the counter tiles hold their labels and short code chips stay on one line`, async () => {
      const { page } = await open(`tiles-${width}`, { width, height: 900 });
      const overflowing = await page.$$eval('.counter', (tiles) =>
        tiles.filter((tile) => tile.scrollWidth > tile.clientWidth).map((tile) => tile.querySelector('dt')?.textContent),
      );
      assert.deepEqual(overflowing, [], 'no counter is wider than its tile');
      // Every inline code chip that would fit on a line of its parent is on one line: its text has one line box.
      const broken = await page.$$eval(':not(pre) > code', (chips) =>
        chips
          .filter((chip) => {
            if (chip.getBoundingClientRect().width === 0) return false; // hidden
            const parent = getComputedStyle(chip.parentElement!);
            const room = chip.parentElement!.clientWidth - parseFloat(parent.paddingLeft) - parseFloat(parent.paddingRight);
            const range = document.createRange();
            range.selectNodeContents(chip);
            const lines = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top))).size;
            chip.style.whiteSpace = 'nowrap';
            chip.style.maxWidth = 'none';
            const oneLine = chip.getBoundingClientRect().width;
            chip.style.whiteSpace = chip.style.maxWidth = '';
            return oneLine <= room && lines > 1;
          })
          .map((chip) => chip.textContent),
      );
      assert.deepEqual(broken, [], 'no short chip breaks across lines');
      await page.locator('#resume-card').scrollIntoViewIfNeeded();
      await screenshot(page, `demo-tiles-${width}`);
    });
  }

  it('at 390 px, pressing Run brings a viewer into view while it streams', async () => {
    const { page } = await open('phone', { width: 390, height: 844 });
    await page.locator('#run').scrollIntoViewIfNeeded();
    await runFromPage(page, { stage: 'rewrite', speed: 5 });
    await waitForViewerEvent(page, 'all-viewer', 'token', 'rewrite');
    // Scrolling is smooth: wait for it to settle with the viewer on screen.
    await page.waitForFunction(
      () => {
        const box = document.getElementById('all-viewer')!.getBoundingClientRect();
        return box.top >= 0 && box.top < innerHeight * 0.75;
      },
      undefined,
      { timeout: 5000, polling: 50 },
    );
    await screenshot(page, 'demo-phone-after-run');
  });

  it('"Cut the connection" says which streams it ended, the pipeline\'s own watcher among them', async () => {
    const { page } = await open('cut');
    await runFromPage(page, { stage: 'pipeline', speed: 1 });
    await waitForViewerEvent(page, 'all-viewer', 'token', 'rewrite');
    await page.click('#cut');
    await page.waitForSelector('#cut-status[data-tone="ok"]');
    assert.equal(
      await page.textContent('#cut-status'),
      "Cut 1 stream (this browser's shared connection, carrying this page's 2 viewers and the Run button's own watcher): watch them resume.",
    );
    await page.click('#stop');
  });
});
