/**
 * Starts a private redis-server on a free loopback port for a test file, and stops it by its pid.
 * Never touches the machine's shared Redis on 6379.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitForPort } from './wait-for-port.js';

export interface TestRedis {
  port: number;
  url: string;
  /** Stops the server (SIGTERM), keeping the port for `restart()`. */
  stop(): Promise<void>;
  /** Starts it again on the same port (an empty server: nothing is persisted). */
  restart(): Promise<void>;
  /** Stops it for good and removes its folder. */
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export interface StartRedisOptions {
  port?: number;
  /** Keep data across restart() with an append-only file synced on every write (as a production Redis would). */
  persist?: boolean;
}

export async function startRedis(options: StartRedisOptions = {}): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'sse-redis-'));
  const port = options.port ?? (await freePort());
  let child: ChildProcess | undefined;

  const start = async () => {
    child = spawn(
      'redis-server',
      [
        ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--loglevel', 'warning'],
        ...(options.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const exited = new Promise<never>((_, reject) =>
      child!.once('exit', (code) => reject(new Error(`redis-server exited early with code ${code}`))),
    );
    exited.catch(() => {});
    await Promise.race([waitForPort(port), exited]);
  };

  const stop = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill('SIGTERM');
    });
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    restart: start,
    async close() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
