/**
 * The package as users get it: `npm pack` (its prepack builds dist/), installed into empty folders, then used
 * there with nothing from this repository. A front end's install (the tarball alone) has only the client's
 * packages, and `ai-story-sse/server` there says which peers to install; a server's install (the tarball and
 * the peers, as the README says) imports the client in Node, publishes and subscribes with the server library,
 * checks its types, runs the command and the Node examples, and drives the single-file build in Chromium; and
 * the Vue and React example apps are built by Vite against the installed package and watched in Chromium.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { freePort, startRedis, type TestRedis } from '../server/test/redis-server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** tsx from this repository, to run the TypeScript examples in the app folder, which does not have it. */
const TSX = import.meta.resolve('tsx');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const SENTENCE = 'Once upon a time, a small robot learned to paint the sea at night.';
const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
  devDependencies: Record<string, string>;
};
/** The server's packages, each at the range package.json asks for: what a server's install adds. */
const PEERS = Object.entries(manifest.peerDependencies).map(([name, range]) => `${name}@${range}`);
/** The install line of the README for a server (quoted: `^` is special to cmd.exe and zsh). */
const SERVER_INSTALL = `npm install ai-story-sse ${PEERS.map((peer) => `"${peer}"`).join(' ')}`;
/**
 * Every package a client-only install may hold: the package, lit and its own dependencies, @lit/context and
 * eventsource-parser. A server package here (ioredis, pino, ...) means a peer became a dependency again.
 */
const CLIENT_PACKAGES = ['ai-story-sse', 'lit', 'lit-html', 'lit-element', '@lit/reactive-element', '@lit-labs/ssr-dom-shim', '@types/trusted-types', '@lit/context', 'eventsource-parser'];
/** The bound on its files' bytes. Before the server's packages became peers it held 43 packages and 10.8 MB; now 9 and 4.5 MB. */
const CLIENT_MAX_BYTES = 6_000_000;
/** The Vite apps' build tools, linked from this repository's node_modules: the test downloads nothing. */
const BUILD_TOOLS = ['vite', '@vitejs/plugin-vue', '@vitejs/plugin-react', 'vue', 'react', 'react-dom', '@types/react', '@types/react-dom', 'typescript', 'vue-tsc'];

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
function lineOf(child: ChildProcess, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`no output matching ${pattern} within ${timeoutMs} ms: ${buffered}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      // Colours off: with CI set, Vite colours its output even into a pipe ("\x1b[1mLocal\x1b[22m:").
      buffered += String(chunk).replace(/\x1b\[[0-9;]*m/g, '');
      const match = pattern.exec(buffered);
      if (!match) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      resolve(match);
    };
    child.stdout!.on('data', onData);
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before printing ${pattern}: ${buffered}`));
    });
  });
}

/** The packages installed under `dir`/node_modules (nested ones too), as `name@version`, and their files' bytes. */
async function installed(dir: string): Promise<{ packages: string[]; bytes: number }> {
  const packages: string[] = [];
  let bytes = 0;
  async function size(path: string): Promise<void> {
    const stat = await lstat(path);
    if (!stat.isDirectory()) return void (bytes += stat.size);
    for (const name of await readdir(path)) await size(join(path, name));
  }
  async function walk(modules: string): Promise<void> {
    for (const entry of await readdir(modules, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      const path = join(modules, entry.name);
      if (entry.name.startsWith('@')) {
        await walk(path);
        continue;
      }
      const { name, version } = JSON.parse(await readFile(join(path, 'package.json'), 'utf8')) as { name: string; version: string };
      packages.push(`${name}@${version}`);
      await walk(join(path, 'node_modules')).catch(() => {});
    }
  }
  await walk(join(dir, 'node_modules'));
  await size(join(dir, 'node_modules'));
  return { packages: packages.sort(), bytes };
}

/** An empty project folder with the tarball and `packages` installed, as a user would (from npm's cache when it has them). */
async function project(name: string, packages: string[] = []): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir);
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  await succeed(`npm install in ${name}`, 'npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, ...packages], { cwd: dir });
  return dir;
}

let work: string;
/** A server's install: the tarball and the peers. */
let app: string;
/** A front end's install: the tarball alone. */
let client: string;
/** Another front end's, for the Vite apps: the tarball, and the build tools linked in. */
let web: string;
let redis: TestRedis;
let packed: Array<{ path: string }>;
let tarball: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sse-pack-'));
  const [pack] = await Promise.all([
    succeed('npm pack', 'npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT }),
    startRedis().then((started) => (redis = started)),
  ]);
  // prepack's build logs come first on stdout; the JSON report is last.
  const report = JSON.parse(pack.stdout.slice(pack.stdout.lastIndexOf('\n[') + 1)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  packed = report[0]!.files;
  tarball = join(work, report[0]!.filename);
  // Its dependencies come from npm's cache when they are there (CI has just installed them).
  [app, client, web] = await Promise.all([project('app', PEERS), project('client'), project('web')]);
  for (const tool of BUILD_TOOLS) {
    await mkdir(dirname(join(web, 'node_modules', tool)), { recursive: true });
    await symlink(join(ROOT, 'node_modules', tool), join(web, 'node_modules', tool), 'dir');
  }
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
      'dist/server/entry.js',
      'dist/server/entry.d.ts',
      'dist/server/bin.js',
      'dist/server/peers.js',
      'dist/client/shared/worker.js',
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
    assert.deepEqual(manifest.bin, { 'ai-story-sse': 'dist/server/bin.js' });
    assert.equal(manifest.dependencies.tsx, undefined, 'tsx is a devDependency only');
    assert.ok(manifest.devDependencies.tsx);
  });

  it("depends on the client's packages only; the server's are optional peers, which this repository installs as devDependencies", () => {
    assert.deepEqual(Object.keys(manifest.dependencies).sort(), ['@lit/context', 'eventsource-parser', 'lit']);
    assert.deepEqual(Object.keys(manifest.peerDependencies).sort(), ['ioredis', 'jose', 'pino', 'polka', 'prom-client', 'sirv', 'ws']);
    for (const [name, range] of Object.entries(manifest.peerDependencies)) {
      assert.equal(manifest.peerDependenciesMeta[name]?.optional, true, `${name} is an optional peer`);
      assert.equal(manifest.devDependencies[name], range, `${name} is a devDependency at the peer's range`);
    }
  });

  it("gives the server's install line, with the peers' ranges, in the README and in examples/README.md", async () => {
    for (const file of ['README.md', 'examples/README.md']) assert.ok((await readFile(join(ROOT, file), 'utf8')).includes(SERVER_INSTALL), `${file} has: ${SERVER_INSTALL}`);
  });
});

describe("a front end's install: the tarball alone", () => {
  it("holds the client's packages only: lit's family, @lit/context and eventsource-parser", async (t) => {
    const { packages, bytes } = await installed(client);
    const names = packages.map((entry) => entry.slice(0, entry.lastIndexOf('@')));
    t.diagnostic(`client-only install: ${packages.length} packages, ${(bytes / 1e6).toFixed(2)} MB in node_modules (${bytes} bytes): ${packages.join(' ')}`);
    assert.deepEqual(names.filter((name) => !CLIENT_PACKAGES.includes(name)), [], 'packages outside the allow-list');
    assert.ok(packages.length <= CLIENT_PACKAGES.length, `${packages.length} packages, at most ${CLIENT_PACKAGES.length} (one copy each)`);
    assert.ok(bytes < CLIENT_MAX_BYTES, `${bytes} bytes in node_modules, under ${CLIENT_MAX_BYTES}`);
  });

  it('imports the client and the protocol in Node', async () => {
    await writeFile(
      join(client, 'client.mjs'),
      `
import assert from 'node:assert/strict';
import { createSSEClient } from 'ai-story-sse';
import { isValidId } from 'ai-story-sse/protocol';
assert.equal(createSSEClient('p1', 'rewrite', { baseUrl: 'http://127.0.0.1:1' }).isConnected(), false);
assert.equal(isValidId('p1'), true);
for (const entry of ['ai-story-sse/define', 'ai-story-sse/sse-kit.js', 'ai-story-sse/sse-kit-worker.js']) import.meta.resolve(entry);
console.log('ok');
`,
    );
    assert.equal((await succeed('client.mjs', process.execPath, ['client.mjs'], { cwd: client })).stdout.trim(), 'ok');
  });

  it('refuses `ai-story-sse/server` with one error that names the missing peers and the npm install line', async () => {
    await writeFile(
      join(client, 'server.mjs'),
      `
try {
  await import('ai-story-sse/server');
  console.log('imported');
} catch (error) {
  console.log(JSON.stringify({ name: error.name, code: error.code, message: error.message }));
}
`,
    );
    const error = JSON.parse((await succeed('server.mjs', process.execPath, ['server.mjs'], { cwd: client })).stdout);
    // The library's modules import five of the peers; pino and sirv are the command's.
    const needed = ['ioredis', 'jose', 'polka', 'prom-client', 'ws'];
    const line = `npm install ${needed.map((name) => `"${name}@${manifest.peerDependencies[name]}"`).join(' ')}`;
    assert.deepEqual(error, {
      name: 'MissingPeerDependencyError',
      code: 'ERR_AI_STORY_SSE_MISSING_PEERS',
      message:
        `ai-story-sse/server needs packages that are not installed: ${needed.join(', ')} (the server's dependencies are optional ` +
        `peer dependencies of ai-story-sse, left out of a client-only install). Install them: ${line}`,
    });
  });

  it('refuses to run the ai-story-sse command: one line on stderr with the npm install line, exit code 2', async () => {
    const result = await run('npx', ['--no-install', 'ai-story-sse', '--version'], { cwd: client }).done;
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stdout, '');
    const line = `npm install ${PEERS.map((peer) => `"${peer}"`).join(' ')}`;
    assert.equal(result.stderr, `ai-story-sse: the server needs packages that are not installed: ${Object.keys(manifest.peerDependencies).join(', ')} (the server's dependencies are optional peer dependencies of ai-story-sse, left out of a client-only install). Install them: ${line}\n`);
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
    assert.equal((await succeed('npx ai-story-sse --version', 'npx', ['--no-install', 'ai-story-sse', '--version'], { cwd: app })).stdout, `${manifest.version}\n`);
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

describe('in your project: the Vue and React example apps, built by Vite against the installed package', () => {
  let hub: string;
  let browser: Browser;

  before(async () => {
    // The hub is the installed package's command, on the test's Redis; the worker example publishes to it.
    await copyFile(join(ROOT, 'examples/node/worker.ts'), join(app, 'worker.ts'));
    await writeFile(
      join(app, 'fail.mjs'),
      `
import { StreamPublisher } from 'ai-story-sse/server';
const publisher = new StreamPublisher({ projectId: process.argv[2], stage: 'rewrite', redisUrl: process.env.REDIS_URL });
await publisher.publishStageUpdate('processing', 10, 'Rewriting the script');
await publisher.publishError('the model is overloaded', 2);
await publisher.close();
`,
    );
    const port = await freePort();
    const started = run(join(app, 'node_modules/.bin/ai-story-sse'), [], { cwd: app, env: { REDIS_URL: redis.url, PORT: String(port), LOG_LEVEL: 'info' } });
    hub = (await lineOf(started.child, /listening on (http:\/\/127\.0\.0\.1:\d+)/))[1]!;
    browser = await chromium.launch({
      executablePath: process.env.CHROME_PATH ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--no-first-run'],
    });
  });

  after(async () => {
    await browser?.close();
  });

  /** Opens the app for `projectId` and waits until its viewer's stream is open. */
  async function open(url: string, projectId: string): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${url}/?project=${projectId}`);
    await page.waitForFunction(() => document.querySelector('sse-stream-viewer')?.shadowRoot?.querySelector<HTMLElement>('[part="badge"]')?.dataset.state === 'open');
    return { page, errors };
  }

  /** [framework, folder, files, the type checker a Vite template's `npm run build` runs first]. */
  const apps = [
    ['Vue 3', 'vue', ['index.html', 'main.ts', 'StageViewer.vue', 'vite.config.ts'], 'vue-tsc/bin/vue-tsc.js'],
    ['React 19', 'react', ['index.html', 'main.tsx', 'StageViewer.tsx', 'vite.config.ts'], 'typescript/bin/tsc'],
  ] as const;

  it('examples/README.md shows each file of the apps whole, as it is here', async () => {
    // The fenced blocks' bodies: every other piece between the fences.
    const blocks = (await readFile(join(ROOT, 'examples/README.md'), 'utf8')).split('```').filter((_, index) => index % 2 === 1);
    const bodies = new Set(blocks.map((block) => block.slice(block.indexOf('\n') + 1)));
    for (const [, folder, files] of apps) {
      for (const file of files) assert.ok(bodies.has(await readFile(join(ROOT, 'examples', folder, file), 'utf8')), `examples/README.md shows ${folder}/${file} as it is`);
    }
  });

  for (const [framework, folder, files, checker] of apps) {
    for (const mode of ['type-checked, vite build, then vite preview', 'the vite dev server'] as const) {
      it(`${framework}, ${mode}: streams a stage to its exact text through the config's proxy to the hub, and shows a task error`, async () => {
        const dir = join(web, `${folder}-${mode === 'the vite dev server' ? 'dev' : 'build'}`);
        await mkdir(dir);
        for (const file of files) await copyFile(join(ROOT, 'examples', folder, file), join(dir, file));
        const vite = join(web, 'node_modules/vite/bin/vite.js');
        if (mode !== 'the vite dev server') {
          // The strict core of the templates' tsconfig, over the app's sources, with the installed package's types.
          const compilerOptions = { strict: true, noUncheckedIndexedAccess: true, verbatimModuleSyntax: true, target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler' };
          const include = files.filter((file) => /^(main|StageViewer)\./.test(file));
          await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...compilerOptions, lib: ['ES2023', 'DOM', 'DOM.Iterable'], jsx: 'react-jsx', types: [], noEmit: true, skipLibCheck: true }, include }));
          await succeed(`${checker} (${framework})`, process.execPath, [join(web, 'node_modules', checker), '-p', 'tsconfig.json'], { cwd: dir });
          await succeed(`vite build (${framework})`, process.execPath, [vite, 'build', '--logLevel', 'warn'], { cwd: dir });
        }
        const port = await freePort();
        const served = run(process.execPath, [vite, ...(mode === 'the vite dev server' ? [] : ['preview']), '--host', '127.0.0.1', '--port', String(port), '--strictPort'], {
          cwd: dir,
          env: { SSE_HUB_URL: hub },
        });
        try {
          await lineOf(served.child, /Local:/);
          const url = `http://127.0.0.1:${port}`;
          const projectId = `${folder}-${port}`;

          const { page, errors } = await open(url, projectId);
          await succeed('the worker example', process.execPath, ['--import', TSX, 'worker.ts', projectId, 'rewrite'], { cwd: app, env: { REDIS_URL: redis.url, WORKER_DELAY_MS: '5' } });
          await page.waitForFunction(() => document.querySelector('#result')?.textContent?.startsWith('Done'));
          await page.waitForFunction(
            (sentence) => document.querySelector('sse-stream-viewer')?.shadowRoot?.querySelector('[data-stage="rewrite"] [part="text"]')?.textContent === sentence,
            SENTENCE,
          );
          assert.equal(await page.textContent('#result'), `Done: ${SENTENCE.length} characters, 14 tokens.`);
          assert.equal(await page.textContent('.status'), 'completed · 100%');

          // `@error` / `onerror`: the element's `error` event, the task's error.
          const failing = await open(url, `${projectId}-failed`);
          await succeed('fail.mjs', process.execPath, ['fail.mjs', `${projectId}-failed`], { cwd: app, env: { REDIS_URL: redis.url } });
          await failing.page.waitForFunction(() => document.querySelector('.status')?.textContent === 'failed: the model is overloaded');
          assert.deepEqual([...errors, ...failing.errors], []);
        } finally {
          served.child.kill('SIGTERM');
          await served.done;
        }
      });
    }
  }
});
