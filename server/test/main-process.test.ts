/** The entry point as a process: broker choice from the environment, and a clean SIGTERM. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, startRedis, type TestRedis } from './redis-server.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import { openStream, requestJson } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
let redis: TestRedis;
const children: ChildProcess[] = [];
const servers: ServerProcess[] = [];

before(async () => {
  redis = await startRedis();
});
after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await Promise.all(servers.map((server) => server.kill('SIGKILL')));
  await redis.close();
});

describe('the server process', () => {
  it('uses REDIS_URL and says so in one log line', async () => {
    const server = await startServerProcess({ REDIS_URL: redis.url, LOG_LEVEL: 'info' });
    servers.push(server);
    assert.equal((await requestJson(`${server.url}/healthz`)).body.broker, 'redis');
    assert.match(server.output(), new RegExp(`broker: redis at ${redis.url.replace(/[.]/g, '\\.')} \\(REDIS_URL\\)`));
    await server.kill('SIGTERM');
  });

  it('on SIGTERM ends open streams so clients reconnect elsewhere, and exits 0', async () => {
    const server = await startServerProcess({ REDIS_URL: redis.url });
    servers.push(server);
    const reader = await openStream(`${server.url}/api/v1/sse/projects/sig/stages/rewrite/`);
    await reader.waitFor((e) => e.event === 'connected');
    const exited = once(server.child, 'exit');
    server.child.kill('SIGTERM');
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
    let health: Awaited<ReturnType<typeof requestJson>> | undefined;
    await waitUntil(async () => (health = await requestJson(`${url}/healthz`).catch(() => undefined)) !== undefined, 'the server answers /healthz', 20_000);
    assert.equal(health?.status, 503);
    assert.equal(health?.body.broker, 'redis');
    child.kill('SIGTERM');
    await once(child, 'exit');
  });
});
