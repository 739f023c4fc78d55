/**
 * The server dies mid-stream (SIGKILL) and comes back on the same port: the viewers resume from the
 * Redis replay log and finish with exactly the right text. The worker is this test process (the
 * mock publisher would die with the server), publishing into the same private redis-server throughout.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { StreamPublisher } from '../server/src/publisher.js';
import { REWRITE_TEXT, toTokens } from '../server/src/mock/scripts.js';
import {
  counter,
  demoStack,
  openDemo,
  viewerEvents,
  waitForStageStatus,
  waitForStageText,
  waitForViewerEvent,
} from './harness.js';

// No SSE_AUTH_SECRET here: the authenticated stream explains how to turn it on. The test restarts the server.
const stack = demoStack({ stopSignal: 'SIGKILL' });
let publisher: StreamPublisher | undefined;

afterEach(async () => {
  await publisher?.close();
  publisher = undefined;
});

/** Waits until `viewer` received `count` tokens. */
async function waitForTokens(page: Page, viewer: string, count: number): Promise<void> {
  await page.waitForFunction(
    ([viewer, count]) => window.__viewerEvents.filter((e) => e.viewer === viewer && e.type === 'token').length >= count,
    [viewer, count] as const,
    { timeout: 20_000, polling: 20 },
  );
}

describe('a server restart mid-stream', () => {
  it('loses nothing and repeats nothing: the viewers finish with exactly the right text', async () => {
    const projectId = 'restart-1';
    const { page, problems } = await openDemo(stack.browser, stack.server.url, projectId);
    stack.track(page.context());
    publisher = new StreamPublisher({ projectId, stage: 'rewrite', redisUrl: stack.redis.url });

    const tokens = toTokens(REWRITE_TEXT);
    const [beforeKill, whileDown] = [Math.floor(tokens.length / 3), Math.floor((2 * tokens.length) / 3)];
    let fullText = '';
    const publishTokens = async (from: number, to: number) => {
      for (const token of tokens.slice(from, to)) await publisher!.publishToken(token, (fullText += token));
    };

    await publisher.publishStageUpdate('processing', 0, 'rewrite started');
    await publishTokens(0, beforeKill);
    await waitForTokens(page, 'single-viewer', beforeKill);
    await waitForTokens(page, 'all-viewer', beforeKill);

    await stack.server.kill('SIGKILL');
    // The worker goes on while the server is down: Redis logs every message.
    await publishTokens(beforeKill, whileDown);
    await stack.server.restart();

    // Both viewers reconnect on their own and replay what they missed from the log.
    await waitForTokens(page, 'single-viewer', whileDown);
    await waitForTokens(page, 'all-viewer', whileDown);
    await publishTokens(whileDown, tokens.length);
    await publisher.publishStageUpdate('completed', 100, 'rewrite completed');
    await publisher.publishDone(fullText, { tokens_used: tokens.length });

    for (const viewer of ['single-viewer', 'all-viewer']) {
      const done = await waitForViewerEvent(page, viewer, 'done', 'rewrite');
      assert.equal(done.full_text, REWRITE_TEXT);
      await waitForStageText(page, viewer, 'rewrite', REWRITE_TEXT);
      await waitForStageStatus(page, viewer, 'rewrite', 'completed');

      const events = await viewerEvents(page, viewer);
      const received = events.filter((e) => e.type === 'token');
      assert.equal(received.length, tokens.length, `${viewer}: every token exactly once`);
      assert.deepEqual(
        received.map((e) => e.detail.content),
        tokens,
        `${viewer}: the tokens in order`,
      );
      const ids = events.filter((e) => typeof e.detail.id === 'string').map((e) => String(e.detail.id));
      assert.equal(new Set(ids).size, ids.length, `${viewer}: no id twice`);
      assert.ok(
        events.some((e) => e.type === 'connected' && e.detail.resumed === true),
        `${viewer}: resumed with Last-Event-ID`,
      );
    }
    assert.equal(await counter(page, 'gaps'), 0);
    assert.equal(await counter(page, 'duplicates'), 0);
    assert.deepEqual(
      problems.filter((p) => p.startsWith('pageerror')),
      [],
    );
  });
});

describe('the authenticated stream on a server without SSE_AUTH_SECRET', () => {
  it("shows the server's error message and how to enable it", async () => {
    const { page } = await openDemo(stack.browser, stack.server.url, 'noauth-1');
    stack.track(page.context());
    await page.click('#auth-connect');
    await page.waitForSelector('#auth-status[data-tone="bad"]');
    const notice = (await page.textContent('#auth-status')) ?? '';
    assert.match(notice, /Set SSE_AUTH_SECRET on the server/, "the server's own message");
    assert.match(notice, /SSE_AUTH_SECRET=dev-secret-at-least-32-bytes-long npm start/);
    assert.equal(await page.getAttribute('#state-auth', 'data-state'), 'closed');
  });
});
