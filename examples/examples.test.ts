/**
 * The examples, run as a user would: the plain HTML, Vue and React pages in Chromium, served by the example
 * server (the hub embedded with mountSse, on a private redis-server), while the Node worker example publishes
 * from a process of its own; and the Node watcher following the same stage with SSEClient.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { RedisBroker } from '../server/src/broker/redis-broker.js';
import { startRedis, type TestRedis } from '../server/test/redis-server.js';
import { startExampleServer, type ExampleServer } from './server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SENTENCE = 'Once upon a time, a small robot learned to paint the sea at night.';
const TOKENS = SENTENCE.split(' ').length;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a node script from the repository root (so `ai-story-sse/*` resolves to the sources through tsconfig paths). */
function node(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const run: Run = { code: null, stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk) => (run.stdout += chunk));
  child.stderr!.on('data', (chunk) => (run.stderr += chunk));
  const done = new Promise<Run>((resolve) => child.once('close', (code) => resolve({ ...run, code })));
  return { child, done };
}

async function mustSucceed(what: string, args: string[]): Promise<void> {
  const run = await node(args).done;
  assert.equal(run.code, 0, `${what} failed:\n${run.stdout}\n${run.stderr}`);
}

let redis: TestRedis;
let broker: RedisBroker;
let example: ExampleServer;
let browser: Browser;
let work: string;
const children: ChildProcess[] = [];

function worker(projectId: string): Promise<Run> {
  const run = node(['--import', 'tsx', 'examples/node/worker.ts', projectId, 'rewrite'], { REDIS_URL: redis.url, WORKER_DELAY_MS: '30' });
  children.push(run.child);
  return run.done;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sse-examples-'));
  // The two builds a user runs first (npm run examples does both), into a folder of this test's own.
  [redis] = await Promise.all([
    startRedis(),
    mustSucceed('the client bundle', ['scripts/build-client.mjs', '--out-dir', join(work, 'client')]),
    mustSucceed('the Vue and React pages', ['node_modules/vite/bin/vite.js', 'build', '--config', 'examples/vite.config.ts', '--outDir', join(work, 'pages')]),
  ]);
  broker = new RedisBroker({ url: redis.url });
  example = await startExampleServer({ broker, port: 0, pagesDir: join(work, 'pages'), bundleFile: join(work, 'client/sse-kit.js') });
  browser = await chromium.launch({
    executablePath: process.env.CHROME_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--no-first-run'],
  });
});

after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill();
  await browser?.close();
  await example?.close();
  await broker?.close();
  await redis?.close();
  await rm(work, { recursive: true, force: true });
});

/** Reads, inside the page, what the viewer and the page around it show. */
function shown(page: Page) {
  return page.evaluate(() => {
    const viewer = document.querySelector('sse-stream-viewer');
    const root = viewer?.shadowRoot;
    return {
      badge: root?.querySelector<HTMLElement>('[part="badge"]')?.dataset.state,
      chip: root?.querySelector<HTMLElement>('[data-stage="rewrite"] [part="status"]')?.dataset.status,
      text: root?.querySelector('[data-stage="rewrite"] [part="text"]')?.textContent ?? '',
      result: document.querySelector('#result')?.textContent ?? '',
      status: document.querySelector('.status')?.textContent ?? '',
      tokens: (window as unknown as { tokens?: number }).tokens ?? 0,
    };
  });
}

const pages = [
  { name: 'plain HTML', path: '/html/', appStatus: false },
  { name: 'Vue 3', path: '/vue/', appStatus: true },
  { name: 'React 19', path: '/react/', appStatus: true },
];

describe('the browser examples', () => {
  for (const [index, { name, path, appStatus }] of pages.entries()) {
    it(`${name}: shows the stage live while a worker process publishes it, and handles done`, async () => {
      const projectId = `ex${index}`;
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      try {
        await page.goto(`${example.url}${path}?project=${projectId}`);
        await page.waitForFunction(() => document.querySelector('sse-stream-viewer')?.shadowRoot?.querySelector<HTMLElement>('[part="badge"]')?.dataset.state === 'open');
        // Count the token events the element dispatches, one per message as it arrives.
        await page.evaluate(() => {
          const counter = window as unknown as { tokens: number };
          counter.tokens = 0;
          document.querySelector('sse-stream-viewer')!.addEventListener('token', () => counter.tokens++);
        });

        const published = await worker(projectId);
        assert.equal(published.code, 0, published.stderr);
        await page.waitForFunction(() => document.querySelector('#result')?.textContent?.startsWith('Done'));
        await page.waitForFunction((sentence) => {
          const text = document.querySelector('sse-stream-viewer')?.shadowRoot?.querySelector('[data-stage="rewrite"] [part="text"]');
          return text?.textContent === sentence;
        }, SENTENCE);

        const view = await shown(page);
        assert.equal(view.badge, 'open');
        assert.equal(view.chip, 'completed');
        assert.equal(view.text, SENTENCE);
        assert.equal(view.tokens, TOKENS);
        assert.equal(view.result, `Done: ${SENTENCE.length} characters, ${TOKENS} tokens.`);
        if (appStatus) assert.equal(view.status, 'completed · 100%');
        assert.deepEqual(errors, []);
      } finally {
        await page.close();
      }
    });
  }
});

describe('the Node examples', () => {
  it('the watcher prints the stage as a worker process publishes it, and exits 0 when it is done', async () => {
    const watcher = node(['--import', 'tsx', 'examples/node/watch.ts', example.url, 'nodeproj', 'rewrite']);
    children.push(watcher.child);
    // It says so on stderr once its stream is subscribed: from then on nothing published is missed.
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        if (!String(chunk).includes('watching nodeproj/rewrite')) return;
        watcher.child.stderr!.off('data', onData);
        resolve();
      };
      watcher.child.stderr!.on('data', onData);
      watcher.child.once('close', () => reject(new Error('the watcher exited before connecting')));
    });
    const published = await worker('nodeproj');
    assert.equal(published.code, 0, published.stderr);
    assert.match(published.stdout, /published 14 tokens to ai_story:project:nodeproj:stage:rewrite/);
    const watched = await watcher.done;
    assert.equal(watched.code, 0, watched.stderr);
    assert.equal(watched.stdout, `${SENTENCE}\n`);
    assert.match(watched.stderr, /done: 66 characters/);
  });
});
