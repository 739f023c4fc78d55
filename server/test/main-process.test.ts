/** The entry point as a process: broker choice from the environment, and a clean SIGTERM. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, startRedis, type TestRedis } from './redis-server.js';
import { openStream, requestJson } from './sse-reader.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
let redis: TestRedis;
const children: ChildProcess[] = [];

before(async () => {
  redis = await startRedis();
});
after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await redis.close();
});

async function startMain(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await requestJson(`${url}/healthz`).then((r) => r.status === 200, () => false);
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url, output: () => output };
}

describe('the server process', () => {
  it('uses REDIS_URL and says so in one log line', async () => {
    const { child, url, output } = await startMain({ REDIS_URL: redis.url });
    assert.equal((await requestJson(`${url}/healthz`)).body.broker, 'redis');
    assert.match(output(), new RegExp(`broker: redis at ${redis.url.replace(/[.]/g, '\\.')} \\(REDIS_URL\\)`));
    child.kill('SIGTERM');
    await once(child, 'exit');
  });

  it('on SIGTERM ends open streams so clients reconnect elsewhere, and exits 0', async () => {
    const { child, url } = await startMain({ REDIS_URL: redis.url });
    const reader = await openStream(`${url}/api/v1/sse/projects/sig/stages/rewrite/`);
    await reader.waitFor((e) => e.event === 'connected');
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await reader.ended;
    const [code] = await exited;
    assert.equal(code, 0);
  });

  it('refuses a REDIS_URL that does not answer without falling back to the embedded broker', async () => {
    const deadPort = await freePort();
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: { ...process.env, PORT: String(port), REDIS_URL: `redis://127.0.0.1:${deadPort}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const url = `http://127.0.0.1:${port}`;
    let health;
    const deadline = Date.now() + 20_000;
    do {
      await new Promise((r) => setTimeout(r, 100));
      health = await requestJson(`${url}/healthz`).catch(() => undefined);
    } while (!health && Date.now() < deadline);
    assert.equal(health?.status, 503);
    assert.equal(health?.body.broker, 'redis');
    child.kill('SIGTERM');
    await once(child, 'exit');
  });
});
