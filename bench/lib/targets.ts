/**
 * Starts and stops what the bench measures, each as a child process pinned to a core with a raised
 * open-files limit: a private redis-server, our server, the naive peer, nginx + nchan.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childrenOf } from './proc.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Open files per process: 65,536, or the hard limit when this sandbox allows less (it cannot be raised without privileges). */
export const NOFILE = Math.min(65_536, hardNofile());

function hardNofile(): number {
  const out = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim();
  return out === 'unlimited' ? 1_048_576 : Number(out) || 1024;
}
export const NCHAN_MODULE = '/usr/lib/nginx/modules/ngx_nchan_module.so';

export interface Running {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

/** A port the OS says is free on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** `prlimit --nofile=N taskset -c CPU cmd...`: both exec, so the child's pid is the command's own. */
export function pinned(cpu: string, command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ChildProcess {
  return spawn('prlimit', [`--nofile=${NOFILE}:${NOFILE}`, 'taskset', '-c', cpu, command, ...args], {
    cwd: options.cwd ?? ROOT,
    env: options.env ?? process.env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

function stopper(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill(signal);
    });
  };
}

async function waitFor(what: string, probe: () => Promise<boolean>, child: ChildProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}`);
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends `request` on a fresh socket and resolves to whether the answer starts with `expect`. */
function probe(port: number, request: string, expect: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on('connect', () => socket.write(request));
    socket.on('data', (data) => {
      answer += data.toString('latin1');
      if (answer.length >= expect.length) done(answer.startsWith(expect));
    });
    socket.on('error', () => done(false));
    socket.on('close', () => resolve(answer.startsWith(expect)));
  });
}

export async function startRedis(cpu: string): Promise<Running & { url: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-redis-'));
  const port = await freePort();
  const child = pinned(cpu, 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
    '--maxclients', String(NOFILE - 64), '--loglevel', 'warning',
  ]);
  await waitFor('redis-server', () => probe(port, 'PING\r\n', '+PONG'), child);
  const stop = stopper(child);
  return {
    pid: child.pid!,
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const HEALTHZ = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n';

/** Our server on `port` (default: a free one; the storm scenario starts it again on the port it had). */
export async function startOurs(cpu: string, redisUrl: string, fixedPort?: number): Promise<Running> {
  const port = fixedPort ?? (await freePort());
  // BENCH_OURS_DIR: another checkout of the project (e.g. with a proposed patch) to measure instead of this one.
  const dir = process.env.BENCH_OURS_DIR ?? ROOT;
  // BENCH_SERVER_NODE_FLAGS: extra node flags for our server only (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
  const flags = process.env.BENCH_SERVER_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  // What `npm start` and the package's bin run: the compiled server (built first when stale), with plain node.
  // BENCH_OURS_TSX=1: the TypeScript sources through tsx instead (as `npm start` ran before issue 19).
  const entry = process.env.BENCH_OURS_TSX === '1' ? ['--import', 'tsx', join(dir, 'server/src/main.ts')] : [compiledServer(dir)];
  const child = pinned(cpu, process.execPath, [...flags, ...entry], {
    cwd: dir,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: redisUrl,
      LOG_LEVEL: 'warn',
      SSE_MAX_STREAMS: '200000',
      SSE_MAX_STREAMS_PER_CLIENT: '200000',
      SSE_ENABLE_DEMO: 'false',
    },
  });
  await waitFor('our server', () => probe(port, HEALTHZ, 'HTTP/1.1 200'), child);
  return { pid: child.pid!, port, stop: stopper(child) };
}

const built = new Set<string>();

/** `dir`'s dist/server/main.js, built by scripts/build-if-stale.mjs once per bench run. */
function compiledServer(dir: string): string {
  if (!built.has(dir)) {
    const build = spawnSync(process.execPath, [join(dir, 'scripts/build-if-stale.mjs'), 'server'], { cwd: dir, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`building the server failed (${build.status}): ${build.stderr || build.stdout}`);
    built.add(dir);
  }
  return join(dir, 'dist/server/main.js');
}

export async function startNaive(cpu: string, redisUrl: string): Promise<Running> {
  const port = await freePort();
  const child = pinned(cpu, process.execPath, ['--import', 'tsx', 'bench/peers/naive-server.ts'], {
    env: { ...process.env, PORT: String(port), REDIS_URL: redisUrl },
  });
  await waitFor('the naive peer', () => probe(port, HEALTHZ, 'HTTP/1.1 200'), child);
  return { pid: child.pid!, port, stop: stopper(child) };
}

/** Why nginx + nchan cannot run here, after trying to install them (as root) when missing; undefined when they can. */
export function nchanMissing(): string | undefined {
  const have = () => spawnSync('nginx', ['-v']).status === 0 && existsSync(NCHAN_MODULE);
  if (have()) return undefined;
  if (process.env.BENCH_NO_INSTALL === '1') return 'nginx or libnginx-mod-nchan is not installed (BENCH_NO_INSTALL=1)';
  if (process.getuid?.() !== 0) return 'nginx or libnginx-mod-nchan is not installed, and installing needs root (apt-get install nginx libnginx-mod-nchan)';
  console.error('  installing nginx and libnginx-mod-nchan with apt-get ...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env, timeout: 300_000 });
  const install = spawnSync('apt-get', ['install', '-y', '-qq', 'nginx', 'libnginx-mod-nchan'], { stdio: 'ignore', env, timeout: 600_000 });
  if (have()) return undefined;
  return `apt-get install nginx libnginx-mod-nchan failed (exit ${install.status})`;
}

export function nginxVersion(): string {
  const out = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  const nchan = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'libnginx-mod-nchan'], { encoding: 'utf8' });
  return `${(out.stderr || out.stdout).trim().replace('nginx version: ', '')}, nchan ${nchan.stdout.trim() || '?'}`;
}

/** nginx + nchan from bench/nchan/nginx.conf, one worker, in its own prefix dir; `pid` is the worker's. */
export async function startNchan(cpu: string): Promise<Running & { master: number }> {
  const prefix = await mkdtemp(join(tmpdir(), 'bench-nchan-'));
  for (const dir of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(prefix, dir));
  const port = await freePort();
  const conf = readFileSync(join(ROOT, 'bench/nchan/nginx.conf'), 'utf8')
    .replaceAll('{{PREFIX}}', prefix)
    .replaceAll('{{PORT}}', String(port))
    .replaceAll('{{MODULE}}', NCHAN_MODULE);
  writeFileSync(join(prefix, 'nginx.conf'), conf);
  const child = pinned(cpu, 'nginx', ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', join(prefix, 'nginx.conf')]);
  await waitFor('nginx', () => probe(port, 'GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'HTTP/1.1'), child);
  let worker: number | undefined;
  for (let i = 0; i < 100 && worker === undefined; i++) {
    worker = childrenOf(child.pid!)[0];
    if (worker === undefined) await new Promise((r) => setTimeout(r, 20));
  }
  if (worker === undefined) throw new Error('nginx started no worker');
  const stop = stopper(child);
  return {
    pid: worker,
    master: child.pid!,
    port,
    async stop() {
      await stop();
      await rm(prefix, { recursive: true, force: true });
    },
  };
}
