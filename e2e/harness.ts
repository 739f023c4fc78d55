/**
 * The end-to-end harness: a private redis-server, the real server as a child process (so a test can
 * SIGKILL it and start it again on the same port), and Debian's Chromium through playwright-core.
 * Every file builds what it needs in `before()` and tears it down in `after()`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startServerProcess, type ServerProcess } from '../server/test/server-process.js';

import { startRedis, type TestRedis } from '../server/test/redis-server.js';

export { startRedis, type TestRedis };

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/** Builds demo/dist when it is missing or older than its sources (what `npm start` does). */
export function buildDemo(): void {
  const result = spawnSync(process.execPath, ['scripts/build-if-stale.mjs', 'demo'], { cwd: ROOT, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`building the demo failed with exit code ${result.status}`);
}

export type { ServerProcess };

export interface ServerOptions {
  redisUrl: string;
  /** Extra environment, e.g. `SSE_AUTH_SECRET`. */
  env?: Record<string, string>;
}

/** The real server as a child process (so it can be killed and restarted), against `redisUrl`. */
export function startServer(options: ServerOptions): Promise<ServerProcess> {
  // A short retry: keeps reconnects (and so the tests) fast.
  return startServerProcess({ REDIS_URL: options.redisUrl, SSE_RETRY_MS: '250', ...options.env });
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.CHROME_PATH ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/** What a demo test file runs against (see {@link demoStack}). */
export interface DemoStack {
  readonly redis: TestRedis;
  readonly server: ServerProcess;
  readonly browser: Browser;
  /** Closes `context` after the test that opened it. */
  track(context: BrowserContext): void;
}

/**
 * A file's own redis-server, server (with `env`) and Chromium, started in its `before()` (the demo built first when
 * stale) and stopped in its `after()`; the browser contexts given to `track` close after each test. `stopSignal`:
 * how the server is stopped at the end (a test that restarts it may leave one that only SIGKILL ends).
 */
export function demoStack(options: { env?: Record<string, string>; stopSignal?: NodeJS.Signals } = {}): DemoStack {
  let redis: TestRedis | undefined;
  let server: ServerProcess | undefined;
  let browser: Browser | undefined;
  const contexts: BrowserContext[] = [];
  const started = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`the ${what} is not started: use it inside the tests`);
    return value;
  };
  before(async () => {
    buildDemo();
    redis = await startRedis();
    server = await startServer({ redisUrl: redis.url, env: options.env });
    browser = await launchBrowser();
  });
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()));
  });
  after(async () => {
    await browser?.close();
    await server?.kill(options.stopSignal);
    await redis?.close();
  });
  return {
    get redis() {
      return started(redis, 'redis-server');
    },
    get server() {
      return started(server, 'server');
    },
    get browser() {
      return started(browser, 'browser');
    },
    track: (context) => void contexts.push(context),
  };
}

/** The server's counters and gauges, each summed over its labels. */
export async function serverMetrics(serverUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${serverUrl}/metrics`)).text();
  const totals = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (match) totals.set(match[1]!, (totals.get(match[1]!) ?? 0) + Number(match[2]));
  }
  return totals;
}

/** One event a viewer dispatched, as recorded in the page. */
export interface RecordedEvent {
  /** The viewer's element id. */
  viewer: string;
  type: string;
  detail: Record<string, unknown>;
}

declare global {
  interface Window {
    /** Every DOM event of every `<sse-stream-viewer>` of the page, in order (see {@link recordViewerEvents}). */
    __viewerEvents: RecordedEvent[];
    /** `querySelector` that looks into open shadow roots too, starting at the element with id `hostId`. */
    __deepQuery: (hostId: string, selector: string) => Element | undefined;
  }
}

const RECORDED_TYPES = ['connected', 'snapshot', 'token', 'stage_update', 'progress', 'done', 'error', 'reset', 'disconnected'];

/**
 * Records every viewer event from the first moment of the page. A capturing listener on the document
 * sees events dispatched on the elements whether or not they bubble.
 */
export async function recordViewerEvents(page: Page): Promise<void> {
  // A string, not a function: tsx compiles functions with `__name(...)` helpers that do not exist in the page.
  await page.addInitScript(`
    const all = (root, selector) => {
      const found = [...root.querySelectorAll(selector)];
      for (const element of root.querySelectorAll('*')) if (element.shadowRoot) found.push(...all(element.shadowRoot, selector));
      return found;
    };
    window.__deepQuery = (hostId, selector) => {
      const host = document.getElementById(hostId);
      return host && host.shadowRoot ? all(host.shadowRoot, selector)[0] : undefined;
    };
    window.__viewerEvents = [];
    for (const type of ${JSON.stringify(RECORDED_TYPES)}) {
      document.addEventListener(type, (event) => {
        const target = event.target;
        if (!target || target.localName !== 'sse-stream-viewer') return;
        window.__viewerEvents.push({ viewer: target.id, type, detail: JSON.parse(JSON.stringify(event.detail ?? {})) });
      }, true);
    }
  `);
}

export interface DemoPage {
  page: Page;
  /** Problems the page reported: uncaught exceptions and console errors. */
  problems: string[];
}

/** Opens the demo on `project` and waits until both public viewers are connected. */
export async function openDemo(browser: Browser, baseUrl: string, project: string, viewport = { width: 1280, height: 900 }): Promise<DemoPage> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  await recordViewerEvents(page);
  await page.goto(`${baseUrl}/sse-demo/?project=${project}`);
  await page.waitForSelector('#state-single[data-state="open"]');
  await page.waitForSelector('#state-all[data-state="open"]');
  return { page, problems };
}

/** Sets the run controls and presses Run. */
export async function runFromPage(page: Page, options: { stage: string; speed: number; fail?: boolean }): Promise<void> {
  await page.selectOption('#run-stage', options.stage);
  // A range input cannot be typed into: set it as the slider would.
  await page.$eval(
    '#speed',
    (input, speed) => {
      (input as HTMLInputElement).value = String(speed);
      input.dispatchEvent(new Event('input', { bubbles: true }));
    },
    options.speed,
  );
  await page.setChecked('#fail', options.fail ?? false);
  await page.click('#run');
}

/** Waits until the viewer `viewer` dispatched an event matching `type` (and `stage`, if given); returns its detail. */
export async function waitForViewerEvent(page: Page, viewer: string, type: string, stage?: string, timeout = 30_000): Promise<Record<string, unknown>> {
  const handle = await page.waitForFunction(
    ({ viewer, type, stage }) =>
      window.__viewerEvents.find((e) => e.viewer === viewer && e.type === type && (stage === undefined || e.detail.stage === stage))?.detail,
    { viewer, type, stage },
    { timeout, polling: 50 },
  );
  return (await handle.jsonValue()) as Record<string, unknown>;
}

export async function viewerEvents(page: Page, viewer: string): Promise<RecordedEvent[]> {
  return page.evaluate((viewer) => window.__viewerEvents.filter((e) => e.viewer === viewer), viewer);
}

const textOf = (stage: string) => `[data-stage="${stage}"] [part="text"]`;

/** The text a viewer shows for a stage. */
export async function stageText(page: Page, viewer: string, stage: string): Promise<string> {
  return page.evaluate(([viewer, selector]) => window.__deepQuery(viewer, selector)?.textContent ?? '', [viewer, textOf(stage)] as const);
}

/** Waits until the viewer shows exactly `expected` for the stage; fails with the difference otherwise. */
export async function waitForStageText(page: Page, viewer: string, stage: string, expected: string, timeout = 10_000): Promise<void> {
  try {
    await page.waitForFunction(
      ([viewer, selector, expected]) => window.__deepQuery(viewer, selector)?.textContent === expected,
      [viewer, textOf(stage), expected] as const,
      { timeout, polling: 50 },
    );
  } catch {
    assert.equal(await stageText(page, viewer, stage), expected, `the text of ${stage} in #${viewer}`);
  }
}

/** Waits until the viewer's panel of the stage has `data-status="<status>"` (pending, processing, completed, failed). */
export async function waitForStageStatus(page: Page, viewer: string, stage: string, status: string, timeout = 10_000): Promise<void> {
  const selector = `[data-stage="${stage}"]`;
  try {
    await page.waitForFunction(
      ([viewer, selector, status]) => window.__deepQuery(viewer, selector)?.getAttribute('data-status') === status,
      [viewer, selector, status] as const,
      { timeout, polling: 50 },
    );
  } catch {
    const actual = await page.evaluate(([viewer, selector]) => window.__deepQuery(viewer, selector)?.getAttribute('data-status'), [viewer, selector] as const);
    assert.equal(actual, status, `the status of ${stage} in #${viewer}`);
  }
}

export async function counter(page: Page, name: 'events' | 'gaps' | 'duplicates' | 'resumes'): Promise<number> {
  return Number(await page.textContent(`#counter-${name}`));
}

export async function screenshot(page: Page, name: string, fullPage = false): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true });
  const path = `${ARTIFACTS}${name}.png`;
  await page.screenshot({ path, fullPage });
  return path;
}
