/**
 * The Django example run as a user would: Django's dev server (Debian's python3-django and
 * python3-djangorestframework) issues the tokens, the hub runs as a process of its own, both behind one origin (a
 * small proxy, as nginx would be), and Chromium drives the page: signed in with the permission the viewer streams
 * (and can cancel); signed out it shows the hub's 401; signed in without the permission, the hub's 403.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { RedisBroker } from '../../server/src/broker/redis-broker.js';
import { StreamPublisher } from '../../server/src/publisher.js';
import { PYTHON } from '../../server/test/python.js';
import { freePort, startRedis, type TestRedis } from '../../server/test/redis-server.js';
import { startServerProcess, type ServerProcess } from '../../server/test/server-process.js';
import { waitUntil } from '../../server/test/wait-until.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DJANGO = fileURLToPath(new URL('./', import.meta.url));
const SECRET = 'django-example-secret-at-least-32-bytes!!';
const missing = spawnSync(PYTHON, ['-c', 'import django, rest_framework, jwt'], { encoding: 'utf8' }).status !== 0;
/** Outside CI a machine without the Debian packages skips; in CI (.ci/run installs them) the test must run. */
const skip = missing && !process.env.CI ? `${PYTHON} cannot import django, rest_framework and jwt (apt-get install python3-django python3-djangorestframework python3-jwt)` : false;

let work: string;
let redis: TestRedis;
let broker: RedisBroker;
let hub: ServerProcess;
let django: ChildProcess | undefined;
let djangoLog = '';
let proxy: Server;
let origin: string;
let browser: Browser;

function djangoEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PYTHONDONTWRITEBYTECODE: '1', SSE_AUTH_SECRET: SECRET, DJANGO_DB_PATH: join(work, 'db.sqlite3'), SSE_KIT_JS: join(work, 'client/sse-kit.js') };
}

function manage(...args: string[]): string {
  const run = spawnSync(PYTHON, ['manage.py', ...args], { cwd: DJANGO, env: djangoEnv(), encoding: 'utf8' });
  assert.equal(run.status, 0, `manage.py ${args.join(' ')}:\n${run.stdout}\n${run.stderr}`);
  return run.stdout;
}

/** One origin for the page and the hub: /api/v1/ goes to the hub, the rest to Django. */
function startProxy(djangoPort: number, hubPort: number): Promise<Server> {
  const server = createServer((req, res) => {
    const port = req.url?.startsWith('/api/v1/') ? hubPort : djangoPort;
    const upstream = request({ host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function signIn(page: Page, username: string): Promise<void> {
  await page.goto(`${origin}/accounts/login/`);
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', 'pw-for-tests-only');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

const shadow = (page: Page, selector: string) => page.locator(`#viewer >> ${selector}`);

describe('the Django example issues the tokens of the viewer', { skip }, () => {
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sse-django-'));
    const build = spawnSync(process.execPath, ['scripts/build-client.mjs', '--out-dir', join(work, 'client')], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(build.status, 0, build.stderr);
    redis = await startRedis();
    broker = new RedisBroker({ url: redis.url });
    hub = await startServerProcess({ REDIS_URL: redis.url, SSE_AUTH_SECRET: SECRET, SSE_PUBLIC_STREAMS: 'false' });
    manage('migrate', '--noinput', '-v', '0');
    manage('shell', '-c', [
      'from django.contrib.auth.models import Group, User',
      'alice = User.objects.create_user("alice", password="pw-for-tests-only")',
      'User.objects.create_user("bob", password="pw-for-tests-only")',
      'alice.groups.add(Group.objects.create(name="project-p7"))',
    ].join('\n'));
    const port = await freePort();
    django = spawn(PYTHON, ['manage.py', 'runserver', `127.0.0.1:${port}`, '--noreload'], { cwd: DJANGO, env: djangoEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    django.stdout!.on('data', (chunk) => (djangoLog += chunk));
    django.stderr!.on('data', (chunk) => (djangoLog += chunk));
    await waitUntil(() => fetch(`http://127.0.0.1:${port}/accounts/login/`).then((r) => r.status === 200, () => false), () => `Django answers:\n${djangoLog}`, 30_000);
    proxy = await startProxy(port, hub.port);
    origin = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
    browser = await chromium.launch({ executablePath: process.env.CHROME_PATH ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  });
  after(async () => {
    await browser?.close();
    proxy?.closeAllConnections();
    await new Promise((resolve) => (proxy ? proxy.close(resolve) : resolve(undefined)));
    if (django && django.exitCode === null) django.kill();
    await hub?.kill();
    await broker?.close();
    await redis?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('signed in with the permission: the viewer streams, and its cancel button stops the stage', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, 'alice');
    await page.goto(`${origin}/projects/p7/`);
    await shadow(page, '[part="badge"][data-state="open"]').waitFor({ timeout: 15_000 });
    const publisher = new StreamPublisher({ projectId: 'p7', stage: 'rewrite', broker });
    const signal = publisher.signal; // listen for the cancel as it happens
    await publisher.publishStageUpdate('processing', 10, 'rewriting');
    let text = '';
    for (const piece of ['Once', ' upon', ' a time']) await publisher.publishToken(piece, (text += piece));
    await waitUntil(async () => (await shadow(page, '[part="text"]').textContent()) === 'Once upon a time', 'the text is streamed', 10_000);

    const answered = page.evaluate(() => new Promise<number>((resolve) => document.getElementById('viewer')!.addEventListener('cancel', (event) => resolve((event as CustomEvent).detail.status), { once: true })));
    await shadow(page, '[part="cancel-button"]').click();
    assert.equal(await answered, 200);
    await waitUntil(() => signal.aborted && publisher.cancelled, 'the worker heard the cancel', 10_000);
    await waitUntil(async () => (await shadow(page, '[part="status"]').textContent())?.trim() === 'Cancelled', 'the viewer shows Cancelled', 10_000);
    await publisher.close();
    await context.close();
  });

  it('signed out: the viewer shows the hub’s 401', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${origin}/projects/p7/`);
    await shadow(page, '[part="badge"][data-state="closed"]').waitFor({ timeout: 15_000 });
    assert.match((await shadow(page, '[part="notice"]').textContent()) ?? '', /401/);
    await context.close();
  });

  it('signed in without the permission: the viewer shows the hub’s 403', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, 'bob');
    await page.goto(`${origin}/projects/p7/`);
    await shadow(page, '[part="badge"][data-state="closed"]').waitFor({ timeout: 15_000 });
    assert.match((await shadow(page, '[part="notice"]').textContent()) ?? '', /403/);
    await context.close();
  });
});
