/**
 * The page of the render scenario: the kit's single-file build (`scripts/build-client.mjs`, built into a
 * temporary folder) and one `<sse-stream-viewer>`, served on one origin with the stream routes proxied to
 * our server, so the page needs no CORS. The page records long tasks and the longest gap between frames.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './targets.js';

export const CHROMIUM = process.env.CHROME_PATH ?? '/usr/bin/chromium';

const page = (project: string, stage: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>render bench</title>
<script type="module" src="/sse-kit.js"></script></head>
<body>
<sse-stream-viewer id="viewer" project-id="${project}" stage-name="${stage}" auto-connect></sse-stream-viewer>
<script type="module">
  const bench = (window.__bench = { longTasks: [], maxFrameGap: 0, tokens: 0, connected: false, done: null });
  // Long tasks from the reset until the done message, not the bench's own check of the text after it.
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (bench.doneAt === undefined || entry.startTime < bench.doneAt) bench.longTasks.push(entry.duration);
  }).observe({ type: 'longtask', buffered: true });
  let last = performance.now();
  const frame = (t) => { if (bench.doneAt === undefined) bench.maxFrameGap = Math.max(bench.maxFrameGap, t - last); last = t; requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  bench.reset = () => { bench.longTasks = []; bench.maxFrameGap = 0; bench.doneAt = undefined; last = performance.now(); };
  const viewer = document.getElementById('viewer');
  viewer.addEventListener('connected', () => { bench.connected = true; });
  viewer.addEventListener('token', () => { bench.tokens++; });
  viewer.addEventListener('done', (event) => {
    bench.doneAt = performance.now();
    // The text is written at the next frame: read it after two.
    requestAnimationFrame(() => requestAnimationFrame(() => {
      bench.done = { length: event.detail.full_text.length, shown: viewer.shadowRoot.textContent.includes(event.detail.full_text.slice(-200)), at: performance.now() };
    }));
  });
</script></body></html>`;

export interface RenderPage {
  url: string;
  close(): Promise<void>;
}

/** Why the render scenario cannot run, or undefined. */
export function renderMissing(): string | undefined {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROME_PATH)`;
  if (!existsSync(join(ROOT, 'node_modules/playwright-core'))) return 'playwright-core is not installed (npm install)';
  return undefined;
}

export async function startRenderPage(serverPort: number, project: string, stage: string): Promise<RenderPage> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-kit-'));
  const build = spawnSync(process.execPath, ['scripts/build-client.mjs', '--out-dir', dir], { cwd: ROOT, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`the client build failed: ${(build.stderr || build.stdout).trim().split('\n').at(-1)}`);
  const bundle = readFileSync(join(dir, 'sse-kit.js'));
  const html = page(project, stage);
  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/api/')) {
      const upstream = request({ host: '127.0.0.1', port: serverPort, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      res.on('close', () => upstream.destroy());
      req.pipe(upstream);
    } else if (req.url === '/sse-kit.js') res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(bundle);
    else res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
