/**
 * Issue 18 against real processes: retry-safe publishing (a producer sequence logged once, a lost reply retried),
 * cancel (authorization, twice, after done, never ran, over two hub processes) and worker leases (two hub
 * processes reap an expired lease: exactly one worker-lost error; the late worker is refused).
 */
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { recorder, uniqueProject } from './broker.contract.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import { openStream, requestJson, type StreamReader } from './sse-reader.js';
import { waitUntil } from './wait-until.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { BrokerUnavailableError, LeaseLostError, StageCancelledError } from '../src/broker/errors.js';
import { controlKey, logKey, stageChannel } from '../src/channels.js';
import { signToken } from '../src/http/auth.js';
import { StreamPublisher } from '../src/publisher.js';

const SECRET = 'a-test-secret-that-is-long-enough-for-hs256!';
let redis: TestRedis;
let broker: RedisBroker;
let raw: Redis;
let hubs: ServerProcess[] = [];
const readers: StreamReader[] = [];

before(async () => {
  redis = await startRedis();
  broker = new RedisBroker({ url: redis.url });
  raw = new Redis(redis.url);
  hubs = await Promise.all(
    [0, 1].map(() => startServerProcess({ REDIS_URL: redis.url, SSE_AUTH_SECRET: SECRET, SSE_LEASE_REAP_MS: '100', SSE_PUBLIC_STREAMS: 'true' })),
  );
});
after(async () => {
  for (const reader of readers) reader.close();
  await Promise.all(hubs.map((hub) => hub.kill()));
  await raw.quit();
  await broker.close();
  await redis.close();
});

async function watch(hub: ServerProcess, project: string, stage = 'rewrite'): Promise<StreamReader> {
  const reader = await openStream(`${hub.url}/api/v1/sse/projects/${project}/stages/${stage}/?snapshot=0`);
  readers.push(reader);
  await reader.waitFor((event) => event.event === 'connected');
  return reader;
}

function cancel(hub: ServerProcess, project: string, token?: string, stage = 'rewrite') {
  return requestJson(`${hub.url}/api/v1/projects/${project}/stages/${stage}/cancel/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token && { Authorization: `Bearer ${token}` }) },
    body: '{}',
  });
}

/** A TCP proxy to Redis that, when armed, forwards the next command but closes the connection instead of its reply. */
async function lossyProxy(port: number): Promise<{ url: string; arm(): void; close(): Promise<void> }> {
  let armed = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => {
      if (armed) {
        armed = false;
        client.destroy();
        upstream.destroy();
      } else client.write(chunk);
    });
    for (const socket of [client, upstream]) socket.on('error', () => {}).on('close', () => (client.destroy(), upstream.destroy()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${address.port}`,
    arm: () => (armed = true),
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

describe('retry-safe publishing', () => {
  it('logs a producer sequence once: the second publish returns the first id and publishes nothing', async () => {
    const project = uniqueProject();
    const heard = recorder();
    await broker.subscribe(stageChannel(broker.prefix, project, 'rewrite'), heard.listener);
    const message = JSON.stringify({ type: 'stage_update', stage: 'rewrite', project_id: project, timestamp: 1, status: 'processing', progress: 0, message: '' });
    const first = await broker.publish(project, 'rewrite', 'stage_update', message, undefined, { producer: 'p1', seq: 1 });
    const second = await broker.publish(project, 'rewrite', 'stage_update', message, undefined, { producer: 'p1', seq: 1 });
    const token = JSON.stringify({ type: 'token', stage: 'rewrite', project_id: project, timestamp: 1, content: 'a', offset: 0 });
    const t1 = await broker.publish(project, 'rewrite', 'token', token, { content: 'a', offset: 0 }, { producer: 'p1', seq: 2 });
    // A retried linear token would fail the offset check if it were applied again: it is not.
    const t2 = await broker.publish(project, 'rewrite', 'token', token, { content: 'a', offset: 0 }, { producer: 'p1', seq: 2 });
    assert.equal(second, first);
    assert.equal(t2, t1);
    assert.equal(await raw.xlen(logKey(broker.prefix, project)), 2);
    await heard.waitFor(2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(heard.heard.length, 2, 'each message published once');
    assert.match(String(await raw.ttl(controlKey(broker.prefix, project))), /^\d+$/);
    assert.ok((await raw.ttl(controlKey(broker.prefix, project))) > 0, 'the sequence state expires with the log');
  });

  it('retries a publish whose reply was lost (the connection closed after the script ran): one log entry, the original id', async () => {
    const project = uniqueProject();
    const proxy = await lossyProxy(redis.port);
    const lossy = new RedisBroker({ url: proxy.url, commandTimeoutMs: 1000 });
    try {
      const heard = recorder();
      await broker.subscribe(stageChannel(broker.prefix, project, 'rewrite'), heard.listener);
      const publisher = new StreamPublisher({ projectId: project, stage: 'rewrite', broker: lossy, leaseMs: false });
      await publisher.publishToken('Once', 'Once');
      // Without the sequence a lost reply could only be re-sent as a new message: check that the loss is real.
      proxy.arm();
      const id = await publisher.publishToken(' upon', 'Once upon');
      await publisher.publishToken(' a time', 'Once upon a time');
      const entries = await raw.xrange(logKey(broker.prefix, project), '-', '+');
      assert.equal(entries.length, 3, 'three tokens, three entries');
      assert.equal(entries[1]![0], id, 'the retry answered with the id of the entry the lost reply was for');
      await heard.waitFor(3);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(heard.payloads().map((p) => JSON.parse(p).content), ['Once', ' upon', ' a time']);
      assert.equal((await broker.texts(project, 'rewrite')).get('rewrite')?.text, 'Once upon a time');

      // The control: the same loss without retries is a BrokerUnavailableError that says the command was sent.
      const once = new StreamPublisher({ projectId: project, stage: 'other', broker: lossy, leaseMs: false, retries: 0 });
      await once.publishStageUpdate('processing', 0);
      proxy.arm();
      await assert.rejects(once.publishStageUpdate('processing', 1), (error: unknown) => error instanceof BrokerUnavailableError && error.sent);
      await publisher.close();
      await once.close();
    } finally {
      await lossy.close();
      await proxy.close();
    }
  });
});

describe('cancel', () => {
  it('needs a token for the project, is announced once over two hubs, stops the worker, and answers repeats, finished and unknown stages in JSON', async () => {
    const project = uniqueProject();
    const [a, b] = hubs as [ServerProcess, ServerProcess];
    const viewers = [await watch(a, project), await watch(b, project)];
    const publisher = new StreamPublisher({ projectId: project, stage: 'rewrite', broker });
    const signal = publisher.signal;
    await publisher.publishStageUpdate('processing', 0, 'started');
    await publisher.publishToken('Once', 'Once');

    assert.equal((await cancel(a, project)).status, 401);
    assert.equal((await cancel(a, project, await signToken(SECRET, ['someone-else']))).status, 403);
    const token = await signToken(SECRET, [project]);
    const first = await cancel(a, project, token);
    assert.equal(first.status, 200);
    assert.equal(first.body.cancelled, true);
    assert.equal(first.body.already_cancelled, false);
    const again = await cancel(b, project, token);
    assert.equal(again.status, 200);
    assert.deepEqual([again.body.already_cancelled, again.body.id], [true, first.body.id]);

    await waitUntil(() => signal.aborted, 'the worker heard the cancel');
    assert.ok(signal.reason instanceof StageCancelledError);
    assert.equal(publisher.cancelled, true);
    await assert.rejects(publisher.publishToken(' upon', 'Once upon'), StageCancelledError);
    await publisher.publishCancelled('stopped after 1 token');

    for (const viewer of viewers) {
      await viewer.waitFor((event) => event.event === 'stage_update' && event.json?.status === 'failed');
      const cancelled = viewer.events.filter((event) => event.event === 'cancelled');
      assert.equal(cancelled.length, 1, 'one cancelled message per viewer');
      assert.equal(cancelled[0]!.id, first.body.id);
      assert.ok(!viewer.events.some((event) => event.json?.content === ' upon'), 'nothing after the cancel but the closing message');
    }
    const log = await raw.xrange(logKey(broker.prefix, project), '-', '+');
    assert.equal(log.filter(([, fields]) => fields[3]!.includes('"type":"cancelled"')).length, 1);
    // A snapshot holds it.
    const late = await openStream(`${b.url}/api/v1/sse/projects/${project}/stages/rewrite/`);
    readers.push(late);
    const snapshot = await late.waitFor((event) => event.event === 'snapshot');
    assert.equal((snapshot.json?.stages as any).rewrite.cancelled.id, first.body.id);
    await publisher.close();

    // After done, and a stage that never ran.
    const done = new StreamPublisher({ projectId: project, stage: 'storyboard', broker });
    await done.publishToken('Scene', 'Scene');
    await done.publishDone('Scene');
    const finished = await cancel(b, project, token, 'storyboard');
    assert.deepEqual([finished.status, finished.body.error.code, finished.body.status], [409, 'stage_finished', 'done']);
    const never = await cancel(a, project, token, 'video_generation');
    assert.deepEqual([never.status, never.body.error.code], [409, 'stage_not_running']);
    await done.close();
  });
});

describe('worker leases', () => {
  it('two hubs reap an expired lease exactly once: one worker-lost error within the lease, and the late worker is refused', async () => {
    const project = uniqueProject();
    const [a, b] = hubs as [ServerProcess, ServerProcess];
    const viewers = [await watch(a, project), await watch(b, project)];
    const leaseMs = 800;
    const worker = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, leaseMs });
    await worker.publishStageUpdate('processing', 0, 'started');
    await worker.publishToken('Once', 'Once');
    // Alive: heartbeats keep the lease for longer than the lease.
    await new Promise((resolve) => setTimeout(resolve, leaseMs * 2));
    assert.ok(!viewers[0]!.events.some((event) => event.event === 'error'), 'no worker-lost while the heartbeat runs');

    // The worker stalls without done or error (a frozen process, a partition): no heartbeat any more.
    const stoppedAt = Date.now();
    worker.heartbeat = async () => true;
    for (const viewer of viewers) {
      const lost = await viewer.waitFor((event) => event.event === 'error' && event.json?.code === 'worker_lost', leaseMs * 4);
      assert.ok(lost.id, 'from the log, with an id');
    }
    const within = Date.now() - stoppedAt;
    assert.ok(within < leaseMs + 1500, `the worker-lost error came ${within} ms after the last heartbeat`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const viewer of viewers) assert.equal(viewer.events.filter((event) => event.json?.code === 'worker_lost').length, 1);
    const log = await raw.xrange(logKey(broker.prefix, project), '-', '+');
    assert.equal(log.filter(([, fields]) => fields[3]!.includes('"worker_lost"')).length, 1, 'one worker-lost entry for two hubs');

    // The worker comes back late: refused, nothing written.
    await assert.rejects(worker.publishToken(' upon', 'Once upon'), LeaseLostError);
    assert.ok(worker.signal.reason instanceof LeaseLostError);
    assert.equal(await raw.xlen(logKey(broker.prefix, project)), log.length);
    await worker.close();
    // A new run (a retried task) may run the stage again.
    const retry = new StreamPublisher({ projectId: project, stage: 'rewrite', broker, leaseMs });
    await retry.publishStageUpdate('processing', 0, 'restarted');
    await retry.publishDone('Once');
    await retry.close();
  });
});
