/**
 * The real server as a child process (`node --import tsx server/src/main.ts`, from the sources; the compiled
 * `dist/server/main.js` is tested in start.test.ts and examples/package.test.ts) on a free port, for tests that
 * must kill it, restart it, or read what it prints. Resolves once its /healthz answers 200.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from './redis-server.js';
import { waitUntil } from './wait-until.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ServerProcess {
  readonly url: string;
  readonly port: number;
  /** The running process (a new one after `restart()`). */
  readonly child: ChildProcess;
  /** What the server printed so far, for assertions and failure messages. */
  output(): string;
  /** Sends `signal` (default SIGTERM) and resolves once the process exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again, on the same port, with the same environment. */
  restart(): Promise<void>;
}

/** `env` adds to (and overrides) PORT, HOST=127.0.0.1, LOG_LEVEL=warn, NODE_ENV=test and the test's own environment. */
export async function startServerProcess(env: Record<string, string>, timeoutMs = 20_000): Promise<ServerProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const fullEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', NODE_ENV: 'test', ...env };
  let child!: ChildProcess;
  let printed = '';
  const output = () => printed;

  const kill = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const running = child;
    if (running.exitCode !== null || running.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill(signal);
    });
  };

  const start = async () => {
    child = spawn(process.execPath, ['--import', 'tsx', 'server/src/main.ts'], { cwd: ROOT, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (chunk) => (printed += chunk));
    child.stderr!.on('data', (chunk) => (printed += chunk));
    try {
      await waitUntil(
        async () => {
          if (child.exitCode !== null || child.signalCode !== null) {
            throw new Error(`the server exited (${child.exitCode ?? child.signalCode}) before it was healthy:\n${printed.slice(-4000)}`);
          }
          return fetch(`${url}/healthz`).then((response) => response.status === 200, () => false);
        },
        () => `the server is healthy:\n${printed.slice(-4000)}`,
        timeoutMs,
      );
    } catch (error) {
      await kill('SIGKILL');
      throw error;
    }
  };

  await start();
  return {
    url,
    port,
    get child() {
      return child;
    },
    output,
    kill,
    restart: start,
  };
}
