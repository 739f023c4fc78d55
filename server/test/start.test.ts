/**
 * `npm start` on a fresh clone, as a user runs it: the work tree copied without dist/ or demo/dist, with the
 * dependencies but no tsx at all. One command builds the demo and the compiled server, then runs
 * dist/server/main.js with plain node (no TypeScript loader in the process); a second start builds nothing.
 * Also the command itself: --help names every variable the server reads (and the README does too), --version,
 * and exit code 2 with one line on stderr for each kind of bad setting.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { SETTINGS } from '../src/cli/help.js';
import { freePort, startRedis, type TestRedis } from './redis-server.js';
import { waitUntil } from './wait-until.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let clone: string;
let redis: TestRedis;
const children: ChildProcess[] = [];

before(async () => {
  clone = await mkdtemp(join(tmpdir(), 'sse-clone-'));
  // What git would check out (tracked and new files), without anything built.
  const files = spawnSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' }).stdout.split('\0').filter(Boolean);
  for (const file of files) {
    if (/^(dist|demo\/dist|node_modules)\//.test(file)) continue;
    await mkdir(dirname(join(clone, file)), { recursive: true });
    await cp(join(ROOT, file), join(clone, file)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error; // a file deleted in the work tree
    });
  }
  // The installed dependencies, minus the TypeScript loader: nothing that `npm start` runs may need it.
  await mkdir(join(clone, 'node_modules'));
  for (const name of await readdir(join(ROOT, 'node_modules'))) {
    if (name === 'tsx' || name === '.bin' || name === '.package-lock.json') continue;
    await symlink(join(ROOT, 'node_modules', name), join(clone, 'node_modules', name));
  }
  redis = await startRedis();
});
after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await redis?.close();
  await rm(clone, { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function start(command: string, args: string[], env: Record<string, string> = {}): Started {
  const child = spawn(command, args, { cwd: clone, env: { ...process.env, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let printed = '';
  child.stdout!.on('data', (chunk) => (printed += chunk));
  child.stderr!.on('data', (chunk) => (printed += chunk));
  return { child, output: () => printed, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
}

/** The pid of the node process that runs dist/server/main.js in the clone (npm start's grandchild, under sh). */
async function serverPid(): Promise<number> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!/(^|\/)node$/.test(args[0]!) || args[1] !== 'dist/server/main.js') continue;
    if ((await readlink(`/proc/${pid}/cwd`).catch(() => '')) === clone) return Number(pid);
  }
  throw new Error('no node process runs dist/server/main.js in the clone');
}

/** `npm start` in the clone until /healthz answers; returns what it printed and the server's pid, then stops it. */
async function npmStart(): Promise<{ output: string; cmdline: string; environ: string }> {
  const port = await freePort();
  const run = start('npm', ['start'], { PORT: String(port), REDIS_URL: redis.url });
  await waitUntil(
    async () => {
      if (run.child.exitCode !== null) throw new Error(`npm start exited (${run.child.exitCode}):\n${run.output()}`);
      return fetch(`http://127.0.0.1:${port}/healthz`).then((response) => response.ok, () => false);
    },
    () => `npm start serves /healthz:\n${run.output().slice(-3000)}`,
    240_000,
  );
  assert.equal((await fetch(`http://127.0.0.1:${port}/sse-demo/`)).status, 200, 'the demo is built and served');
  const pid = await serverPid();
  const [cmdline, environ] = await Promise.all([readFile(`/proc/${pid}/cmdline`, 'utf8'), readFile(`/proc/${pid}/environ`, 'utf8')]);
  process.kill(pid, 'SIGTERM');
  await run.exited;
  return { output: run.output(), cmdline: cmdline.replaceAll('\0', ' '), environ };
}

describe('npm start on a fresh clone', () => {
  it('builds the demo and the server, and runs the compiled server with plain node; the next start builds nothing', { timeout: 480_000 }, async () => {
    const first = await npmStart();
    assert.match(first.output, /building the demo \(first start\)/);
    assert.match(first.output, /building the server \(first start\)/);
    assert.match(first.cmdline, /^\S*node dist\/server\/main\.js $/);
    assert.doesNotMatch(first.cmdline + first.environ, /tsx|--import|--loader|--experimental-strip-types/);
    const second = await npmStart();
    assert.doesNotMatch(second.output, /building|rebuilding/);
    assert.match(second.output, /listening on/);
  });
});

describe('the ai-story-sse command', () => {
  const main = () => join(clone, 'dist/server/main.js');
  const command = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [main(), ...args], { cwd: clone, encoding: 'utf8', env: { ...process.env, REDIS_URL: redis.url, PORT: '0', ...env }, timeout: 20_000 });

  before(async () => {
    // Built by the test above, or now when this one runs alone.
    const built = spawnSync(process.execPath, ['scripts/build-if-stale.mjs', 'server'], { cwd: clone, encoding: 'utf8' });
    assert.equal(built.status, 0, built.stdout + built.stderr);
  });

  it('--version prints the package version, --help every variable the server reads, with its default', async () => {
    const version = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version;
    assert.equal(command(['--version']).stdout, `${version}\n`);
    const help = command(['--help']);
    assert.equal(help.status, 0);
    const read = new Set([...(await readFile(join(ROOT, 'server/src/config.ts'), 'utf8')).matchAll(/env\.([A-Z][A-Z0-9_]+)|\(env, '([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1] ?? m[2]!));
    assert.ok(read.size > 25, `found ${read.size} variables in config.ts`);
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    for (const name of read) {
      assert.match(help.stdout, new RegExp(`^  ${name} +.*\\[default: .+\\]$`, 'm'), `--help lists ${name}`);
      assert.ok(readme.includes(`\`${name}\``), `the README's configuration table lists ${name}`);
    }
    assert.deepEqual(SETTINGS.map((s) => s.name).filter((name) => !read.has(name)), [], 'no variable in --help that the server does not read');
  });

  it('exits with code 2 and one line on stderr for a bad setting', () => {
    const cases: Array<[Record<string, string> | string[], RegExp]> = [
      [{ PORT: 'eighty' }, /^ai-story-sse: PORT must be an integer/],
      [{ SSE_AUTH_SECRET: 'short' }, /^ai-story-sse: SSE_AUTH_SECRET is 5 bytes/],
      [{ SSE_TRUSTED_PROXIES: '10.0.0.0/99' }, /^ai-story-sse: SSE_TRUSTED_PROXIES: "10\.0\.0\.0\/99"/],
      [{ SSE_AUTH_PUBLIC_KEY_FILE: '/nonexistent.pem' }, /^ai-story-sse: SSE_AUTH_PUBLIC_KEY_FILE needs SSE_AUTH_ISSUER and SSE_AUTH_AUDIENCE/],
      [{ SSE_AUTH_PUBLIC_KEY_FILE: '/nonexistent.pem', SSE_AUTH_ISSUER: 'i', SSE_AUTH_AUDIENCE: 'a' }, /^ai-story-sse: SSE_AUTH_PUBLIC_KEY_FILE: cannot read \/nonexistent\.pem \(ENOENT\)/],
      [{ SSE_AUTH_JWKS_URL: 'http://id.example.com/jwks', SSE_AUTH_ISSUER: 'i', SSE_AUTH_AUDIENCE: 'a' }, /^ai-story-sse: SSE_AUTH_JWKS_URL must be https/],
      [{ SSE_PUBLIC_STREAMS: 'maybe' }, /^ai-story-sse: SSE_PUBLIC_STREAMS must be true or false/],
      [['--port', '80'], /^ai-story-sse: Unknown option '--port'/],
    ];
    for (const [given, pattern] of cases) {
      const result = Array.isArray(given) ? command(given) : command([], given);
      assert.equal(result.status, 2, `${JSON.stringify(given)}: ${result.stdout}${result.stderr}`);
      assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
      assert.match(result.stderr, pattern);
    }
  });
});
