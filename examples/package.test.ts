/**
 * The package as users get it: `npm pack` (its prepack builds dist/), installed into an empty folder, then
 * used there with nothing from this repository: the client imported in Node, the server library publishing
 * and subscribing, its types checked, the Node examples run against a server built from the installed
 * package, and the packaged single-file build driving a plain page in Chromium.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { freePort, startRedis, type TestRedis } from '../server/test/redis-server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** tsx from this repository, to run the TypeScript examples in the app folder, which does not have it. */
const TSX = import.meta.resolve('tsx');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const SENTENCE = 'Once upon a time, a small robot learned to paint the sea at night.';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children: ChildProcess[] = [];

function run(command: string, args: string[], options: { cwd: string; env?: Record<string, string> }): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const out: Run = { code: null, stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk) => (out.stdout += chunk));
  child.stderr!.on('data', (chunk) => (out.stderr += chunk));
  return { child, done: new Promise((resolve) => child.once('close', (code) => resolve({ ...out, code }))) };
}

async function succeed(what: string, command: string, args: string[], options: { cwd: string; env?: Record<string, string> }): Promise<Run> {
  const result = await run(command, args, options).done;
  assert.equal(result.code, 0, `${what} failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** Resolves with the first stdout line matching `pattern`. */
function lineOf(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk;
      const match = pattern.exec(buffered);
      if (!match) return;
      child.stdout!.off('data', onData);
      resolve(match);
    };
    child.stdout!.on('data', onData);
    child.once('close', (code) => reject(new Error(`exited (${code}) before printing ${pattern}: ${buffered}`)));
  });
}

let work: string;
let app: string;
let redis: TestRedis;
let packed: Array<{ path: string }>;
let tarball: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sse-pack-'));
  app = join(work, 'app');
  await mkdir(app);
  const [pack] = await Promise.all([
    succeed('npm pack', 'npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT }),
    startRedis().then((started) => (redis = started)),
  ]);
  // prepack's build logs come first on stdout; the JSON report is last.
  const report = JSON.parse(pack.stdout.slice(pack.stdout.lastIndexOf('\n[') + 1)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  packed = report[0]!.files;
  tarball = join(work, report[0]!.filename);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  // Its dependencies come from npm's cache when they are there (CI has just installed them).
  await succeed('npm install of the tarball', 'npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work, report[0]!.filename)], { cwd: app });
});

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill();
  await redis?.close();
  await rm(work, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('ships the built modules, their types, the single-file build and the manifest, and no sources or tests', () => {
    const paths = packed.map((file) => file.path);
    for (const expected of [
      'package.json',
      'README.md',
      'CHANGELOG.md',
      'LICENSE',
      'dist/server/main.js',
      'demo/dist/index.html',
      'custom-elements.json',
      'dist/client/sse-kit.js',
      'dist/client/sse-kit-worker.js',
      'dist/client/index.js',
      'dist/client/index.d.ts',
      'dist/client/define.js',
      'dist/client/react.d.ts',
      'dist/client/vue.d.ts',
      'dist/server/index.js',
      'dist/server/index.d.ts',
      'dist/server/broker/publish.lua',
      'dist/protocol/index.js',
      'dist/protocol/index.d.ts',
    ]) {
      assert.ok(paths.includes(expected), `${expected} is missing from the package`);
    }
    const unwanted = paths.filter(
      (path) => /\.test\.|(^|\/)(test|e2e|examples|bench|workers)\//.test(path) || (path.startsWith('demo/') && !path.startsWith('demo/dist/')) || /\.tsx?$/.test(path.replace(/\.d\.ts$/, '')),
    );
    assert.deepEqual(unwanted, []);
  });

  it('passes the package linters: publint and @arethetypeswrong/cli', async () => {
    await succeed('npm run check:package', process.execPath, [join(ROOT, 'scripts/check-package.mjs'), '--tarball', tarball], { cwd: ROOT });
  });

  it('passes npm publish --dry-run', async () => {
    const result = await succeed('npm publish --dry-run', 'npm', ['publish', '--dry-run', '--ignore-scripts', '--json'], { cwd: ROOT });
    assert.match(result.stdout, /"name": "ai-story-sse"/);
  });

  it('is public, MIT-licensed, with a repository, keywords and a bin', async () => {
    const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'));
    assert.equal(manifest.private, undefined);
    assert.equal(manifest.license, 'MIT');
    assert.match(await readFile(join(ROOT, 'LICENSE'), 'utf8'), /^MIT License/);
    assert.ok(manifest.repository?.url && manifest.keywords?.length > 0);
    assert.deepEqual(manifest.bin, { 'ai-story-sse': 'dist/server/main.js' });
    assert.equal(manifest.dependencies.tsx, undefined, 'tsx is a devDependency only');
    assert.ok(manifest.devDependencies.tsx);
  });
});

describe('the installed package', () => {
  it('imports the client and the protocol in Node, and publishes and subscribes through a MemoryBroker with the server library', async () => {
    await writeFile(
      join(app, 'check.mjs'),
      `
import assert from 'node:assert/strict';
import * as kit from 'ai-story-sse';
import * as client from 'ai-story-sse/client';
import { MemoryBroker, StreamPublisher, StreamSubscriber, mountSse, SseMetrics, InvalidArgumentError } from 'ai-story-sse/server';
import { isValidId, streamPath } from 'ai-story-sse/protocol';

assert.equal(kit.createSSEClient, client.createSSEClient);
assert.equal(typeof kit.SseStreamViewer, 'function');
const sse = kit.createSSEClient('p1', 'rewrite', { baseUrl: 'http://127.0.0.1:1' });
assert.equal(sse.isConnected(), false);

const broker = new MemoryBroker();
const subscriber = new StreamSubscriber({ projectId: 'p1', stage: 'rewrite', broker });
await subscriber.ready;
const publisher = new StreamPublisher({ projectId: 'p1', stage: 'rewrite', broker });
const id = await publisher.publishToken('Hi', 'Hi');
await publisher.publishDone('Hi', { tokens_used: 1 });
const received = [];
for await (const message of subscriber.listen({ timeoutMs: 2000 })) {
  received.push(message);
  if (message.type === 'done') break;
}
assert.deepEqual(received.map((m) => [m.type, m.full_text]), [['token', 'Hi'], ['done', 'Hi']]);
assert.equal(received[0].id, id);
assert.throws(() => new StreamPublisher({ projectId: 'bad id', stage: 'x', broker }), InvalidArgumentError);
assert.equal(typeof mountSse, 'function');
assert.equal(typeof SseMetrics, 'function');
assert.equal(isValidId('p1'), true);
assert.equal(isValidId('bad id'), false);
assert.equal(streamPath('p1', 'rewrite', false), '/api/v1/sse/projects/p1/stages/rewrite/');
await subscriber.close();
await broker.close();

// The side-effect module and the single-file build resolve; the manifest is readable.
for (const entry of ['ai-story-sse/define', 'ai-story-sse/sse-kit.js', 'ai-story-sse/react', 'ai-story-sse/vue']) import.meta.resolve(entry);
const manifest = JSON.parse(await (await import('node:fs/promises')).readFile(new URL(import.meta.resolve('ai-story-sse/custom-elements.json')), 'utf8'));
assert.ok(manifest.modules.some((m) => m.declarations?.some((d) => d.tagName === 'sse-stream-viewer')));
console.log('ok');
`,
    );
    const result = await succeed('check.mjs', process.execPath, ['check.mjs'], { cwd: app });
    assert.equal(result.stdout.trim(), 'ok');
  });

  for (const [module, moduleResolution] of [['NodeNext', 'NodeNext'], ['Node16', 'Node16'], ['ESNext', 'Bundler']]) {
  it(`has types that a strict TypeScript project resolves through the exports (moduleResolution ${moduleResolution})`, async () => {
    await writeFile(
      join(app, `tsconfig.${moduleResolution}.json`),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module,
          moduleResolution,
          target: 'ES2022',
          lib: ['ES2023', 'DOM', 'DOM.Iterable', 'ESNext.Disposable'],
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules/@types')],
          noEmit: true,
          // The package's own declarations are checked too, except third-party ones it cannot see here (React, Vue).
          skipLibCheck: false,
        },
        files: ['typed.ts'],
      }),
    );
    await writeFile(
      join(app, 'typed.ts'),
      `
import { createSSEClient, type DoneMessage, type SseStreamViewer } from 'ai-story-sse';
import { StreamPublisher, MemoryBroker, mountSse, type SseOptions, type StageMessage } from 'ai-story-sse/server';
import { isValidId, type StageMessage as WireMessage } from 'ai-story-sse/protocol';
import { createServer } from 'node:http';

const client = createSSEClient('p1', 'rewrite', { baseUrl: 'http://127.0.0.1:8000' });
client.on('done', (message: DoneMessage) => message.full_text.length).on('token', (message) => message.content.toUpperCase());
const viewer: SseStreamViewer | null = null;
void viewer;
const broker = new MemoryBroker();
const options: SseOptions = { broker, heartbeatMs: 15_000 };
const mount = mountSse(createServer(), options);
const size: number = mount.hub.size;
const publisher = new StreamPublisher({ projectId: 'p1', stage: 'rewrite', broker });
const id: Promise<string> = publisher.publishStageUpdate('processing', 10, 'working');
const message: StageMessage | undefined = undefined;
const wire: WireMessage | undefined = message;
const valid: boolean = isValidId('p1');
void [size, id, message, wire, valid];
`,
    );
    await succeed(`tsc (${moduleResolution}) on the installed package`, process.execPath, [TSC, '-p', `tsconfig.${moduleResolution}.json`], { cwd: app });
  });
  }

  it('has the ai-story-sse command: --version, --help, exit code 2 on a bad setting, and a hub that runs on plain node', async () => {
    const version = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version;
    assert.equal((await succeed('npx ai-story-sse --version', 'npx', ['--no-install', 'ai-story-sse', '--version'], { cwd: app })).stdout, `${version}\n`);
    const help = (await succeed('npx ai-story-sse --help', 'npx', ['--no-install', 'ai-story-sse', '--help'], { cwd: app })).stdout;
    for (const name of ['REDIS_URL', 'SSE_AUTH_JWKS_URL', 'SSE_TRUSTED_PROXIES', 'SSE_MAX_STREAMS_PER_CLIENT']) assert.match(help, new RegExp(`^  ${name} `, 'm'));
    const bad = await run('npx', ['--no-install', 'ai-story-sse'], { cwd: app, env: { SSE_TRUSTED_PROXIES: 'nginx' } }).done;
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.match(bad.stderr, /^ai-story-sse: SSE_TRUSTED_PROXIES: "nginx" is not an address/);
    // tsx is a devDependency: an installed package has no TypeScript loader, and needs none.
    await assert.rejects(readFile(join(app, 'node_modules/tsx/package.json')), /ENOENT/);

    const port = await freePort();
    const hub = run(join(app, 'node_modules/.bin/ai-story-sse'), [], { cwd: app, env: { REDIS_URL: redis.url, PORT: String(port), LOG_LEVEL: 'info' } });
    await lineOf(hub.child, /listening on http:\/\/127\.0\.0\.1:\d+/);
    const base = `http://127.0.0.1:${port}`;
    assert.deepEqual(await (await fetch(`${base}/healthz`)).json(), { status: 'ok', broker: 'redis' });
    const demo = await fetch(`${base}/sse-demo/`);
    assert.equal(demo.status, 200, 'the packaged demo is served');
    assert.match(await demo.text(), /<sse-stream-viewer/);
    const cmdline = await readFile(`/proc/${hub.child.pid}/cmdline`, 'utf8');
    assert.doesNotMatch(cmdline, /tsx/);
    hub.child.kill('SIGTERM');
    assert.equal((await hub.done).code, 0);
  });

  it('runs the Node examples: a worker process publishes, a watcher follows it through a server built from the package', async () => {
    for (const file of ['worker.ts', 'watch.ts']) await copyFile(join(ROOT, 'examples/node', file), join(app, file));
    // A server of one's own with the hub embedded, and the plain HTML example on the same origin.
    await copyFile(join(ROOT, 'examples/html/index.html'), join(app, 'index.html'));
    await writeFile(
      join(app, 'server.mjs'),
      `
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { RedisBroker, mountSse } from 'ai-story-sse/server';

const bundle = new URL(import.meta.resolve('ai-story-sse/sse-kit.js'));
const server = createServer(async (req, res) => {
  if (req.url.startsWith('/sse-kit.js')) return res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(await readFile(bundle));
  if (req.url.startsWith('/sse-kit-worker.js')) return res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(await readFile(new URL('sse-kit-worker.js', bundle)));
  if (req.url.startsWith('/html/')) return res.writeHead(200, { 'Content-Type': 'text/html' }).end(await readFile('index.html'));
  res.writeHead(404).end();
});
const broker = new RedisBroker({ url: process.env.REDIS_URL });
const sse = mountSse(server, { broker });
server.listen(0, '127.0.0.1', () => console.log('listening on http://127.0.0.1:' + server.address().port));
process.once('SIGTERM', async () => {
  await sse.close();
  server.close();
  await broker.close();
});
`,
    );
    const server = run(process.execPath, ['server.mjs'], { cwd: app, env: { REDIS_URL: redis.url } });
    const [, url] = await lineOf(server.child, /listening on (http:\/\/\S+)/);

    const watcher = run(process.execPath, ['--import', TSX, 'watch.ts', url!, 'packed', 'rewrite'], { cwd: app });
    await new Promise<void>((resolve, reject) => {
      watcher.child.stderr!.on('data', (chunk: Buffer) => String(chunk).includes('watching packed/rewrite') && resolve());
      watcher.child.once('close', () => reject(new Error('the watcher exited before connecting')));
    });
    const env = { REDIS_URL: redis.url, WORKER_DELAY_MS: '5' };
    await succeed('the worker example', process.execPath, ['--import', TSX, 'worker.ts', 'packed', 'rewrite'], { cwd: app, env });
    const watched = await watcher.done;
    assert.equal(watched.code, 0, watched.stderr);
    assert.equal(watched.stdout, `${SENTENCE}\n`);

    // The packaged single-file build, in a plain page, shows the same kind of run live.
    const browser = await chromium.launch({
      executablePath: process.env.CHROME_PATH ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--no-first-run'],
    });
    try {
      const page = await browser.newPage();
      await page.goto(`${url}/html/?project=packed2`);
      await page.waitForFunction(() => document.querySelector('sse-stream-viewer')?.shadowRoot?.querySelector<HTMLElement>('[part="badge"]')?.dataset.state === 'open');
      await succeed('the worker example', process.execPath, ['--import', TSX, 'worker.ts', 'packed2', 'rewrite'], { cwd: app, env });
      await page.waitForFunction(() => document.querySelector('#result')?.textContent?.startsWith('Done: 66 characters'));
    } finally {
      await browser.close();
    }

    server.child.kill('SIGTERM');
    assert.equal((await server.done).code, 0);
    assert.match(await readFile(join(app, 'node_modules/ai-story-sse/package.json'), 'utf8'), /"name": "ai-story-sse"/);
  });
});
