/**
 * The Celery app (workers/python/celery_app) run for real: Debian's python3-celery worker on the test's own
 * redis-server, the hub as a process of its own, a client streaming. The pipeline runs through it; a stage is
 * cancelled mid-way; a task fails and is retried from the start (no doubled text); the worker is SIGKILLed mid-stage
 * and the viewer gets the worker-lost error within the lease.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { uniqueProject } from './broker.contract.js';
import { PYTHON, PYTHON_WORKERS } from './python.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import { openStream, requestJson, type ReceivedEvent, type StreamReader } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

const missing = spawnSync(PYTHON, ['-c', 'import celery, redis'], { encoding: 'utf8' }).status !== 0;
/** Outside CI a machine without python3-celery skips; in CI (.ci/run installs it) the tests must run. */
const skip = missing && !process.env.CI ? `${PYTHON} cannot import celery (apt-get install python3-celery python3-redis)` : false;
const LEASE_MS = 1500;

let redis: TestRedis;
let hub: ServerProcess;
let worker: ChildProcess | undefined;
let workerLog = '';
const readers: StreamReader[] = [];
const env = () => ({ ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: PYTHON_WORKERS, REDIS_URL: redis.url, SSE_LEASE_MS: String(LEASE_MS) });

function python(code: string): string {
  const run = spawnSync(PYTHON, ['-c', code], { cwd: PYTHON_WORKERS, env: env(), encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

async function startWorker(): Promise<ChildProcess> {
  workerLog = '';
  const child = spawn(
    PYTHON,
    ['-m', 'celery', '-A', 'celery_app', 'worker', '-Q', 'llm,image,video', '-P', 'threads', '-c', '4', '--without-heartbeat', '--without-gossip', '--without-mingle', '-l', 'info', '-n', `test-${process.pid}@%h`],
    { cwd: PYTHON_WORKERS, env: env(), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.on('data', (chunk) => (workerLog += chunk));
  child.stderr!.on('data', (chunk) => (workerLog += chunk));
  await waitUntil(() => /ready\./.test(workerLog) || child.exitCode !== null, () => `the Celery worker is ready:\n${workerLog}`, 30_000);
  assert.equal(child.exitCode, null, workerLog);
  return child;
}

async function watch(project: string): Promise<StreamReader> {
  const reader = await openStream(`${hub.url}/api/v1/sse/projects/${project}/?snapshot=0`);
  readers.push(reader);
  await reader.waitFor((event) => event.event === 'connected');
  return reader;
}

const of = (reader: StreamReader, stage: string, type?: string): ReceivedEvent[] =>
  reader.events.filter((event) => event.json?.stage === stage && (type === undefined || event.event === type));

describe('the Celery app on a real worker', { skip }, () => {
  let rewriteText = '';
  before(async () => {
    redis = await startRedis();
    hub = await startServerProcess({ REDIS_URL: redis.url, SSE_LEASE_REAP_MS: '100' });
    worker = await startWorker();
    rewriteText = JSON.parse(python('import json; from celery_app.tasks import REWRITE_TEXT; print(json.dumps(REWRITE_TEXT))'));
  });
  after(async () => {
    for (const reader of readers) reader.close();
    if (worker && worker.exitCode === null) worker.kill('SIGKILL');
    await hub?.kill();
    await redis?.close();
  });

  it('runs the whole pipeline through the queues llm, image and video while a client streams it', async () => {
    const project = uniqueProject();
    const viewer = await watch(project);
    python(`from celery_app.tasks import pipeline; pipeline(${JSON.stringify(project)}, {"speed": 20}).delay()`);
    const done = await viewer.waitFor((event) => event.event === 'done' && event.json?.stage === 'video_generation', 60_000);
    assert.ok(done.id);
    for (const stage of ['rewrite', 'storyboard', 'image_generation', 'video_generation']) assert.equal(of(viewer, stage, 'done').length, 1, stage);
    assert.equal(of(viewer, 'rewrite', 'done')[0]!.json?.full_text, rewriteText);
    const tokens = of(viewer, 'rewrite', 'token');
    assert.equal(tokens.at(-1)!.json?.full_text, rewriteText);
    assert.equal(new Set(tokens.map((event) => event.id)).size, tokens.length, 'no token twice');
    assert.equal(of(viewer, 'image_generation', 'progress').length, 4);
  });

  it('cancels a stage mid-way: one cancelled message, the task stops and says where, nothing after', async () => {
    const project = uniqueProject();
    const viewer = await watch(project);
    python(`from celery_app.tasks import rewrite; rewrite.delay(${JSON.stringify(project)}, {"speed": 1})`);
    await viewer.waitFor(() => of(viewer, 'rewrite', 'token').length >= 5, 20_000);
    const answer = await requestJson(`${hub.url}/api/v1/projects/${project}/stages/rewrite/cancel/`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const closing = await viewer.waitFor((event) => event.event === 'stage_update' && event.json?.status === 'failed', 10_000);
    assert.match(String(closing.json?.message), /cancelled after \d+ steps/);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const events = of(viewer, 'rewrite');
    const at = events.findIndex((event) => event.event === 'cancelled');
    assert.equal(events.filter((event) => event.event === 'cancelled').length, 1);
    assert.deepEqual(events.slice(at + 1).map((event) => event.event), ['stage_update'], 'only the closing message after the cancel');
    assert.ok(of(viewer, 'rewrite', 'token').length < rewriteText.length / 2, 'the task stopped');
    assert.equal(of(viewer, 'rewrite', 'done').length, 0);
    const again = await requestJson(`${hub.url}/api/v1/projects/${project}/stages/rewrite/cancel/`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    assert.equal(again.body.already_cancelled, true);
  });

  it('retries a failed task from the start: the stage restarts, the text is replaced, never doubled', async () => {
    const project = uniqueProject();
    const viewer = await watch(project);
    python(`from celery_app.tasks import rewrite; rewrite.delay(${JSON.stringify(project)}, {"speed": 20, "fail_at": 10})`);
    const done = await viewer.waitFor((event) => event.event === 'done' && event.json?.stage === 'rewrite', 30_000);
    assert.equal(done.json?.full_text, rewriteText);
    assert.equal((done.json?.metadata as { attempt: number }).attempt, 2);
    const events = of(viewer, 'rewrite');
    const restart = events.findIndex((event) => event.event === 'stage_update' && /restarted \(attempt 2\)/.test(String(event.json?.message)));
    assert.ok(restart > 0, 'the viewers are told the stage restarted');
    const before = events.slice(0, restart).filter((event) => event.event === 'token');
    const afterRestart = events.slice(restart).filter((event) => event.event === 'token');
    assert.equal(before.length, 10);
    assert.equal(afterRestart[0]!.json?.full_text, afterRestart[0]!.json?.content, 'the second run starts the text over');
    assert.equal(afterRestart.map((event) => event.json?.content).join(''), rewriteText);
    assert.equal(afterRestart.at(-1)!.json?.full_text, rewriteText, 'one copy of the text, not two');
    assert.equal(new Set(events.map((event) => event.id)).size, events.length, 'no message twice');
  });

  it('marks a stage lost within the lease when the worker is SIGKILLed mid-stage', async () => {
    const project = uniqueProject();
    const viewer = await watch(project);
    python(`from celery_app.tasks import image_generation; image_generation.delay(${JSON.stringify(project)}, {"speed": 0.3})`);
    await viewer.waitFor((event) => event.event === 'stage_update' && event.json?.stage === 'image_generation', 20_000);
    // Mid-stage: the heartbeat thread keeps the lease through a step longer than it.
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS * 1.5));
    assert.equal(of(viewer, 'image_generation', 'error').length, 0, 'no worker-lost while the worker lives');
    const killedAt = Date.now();
    worker!.kill('SIGKILL');
    const lost = await viewer.waitFor((event) => event.event === 'error' && event.json?.code === 'worker_lost', LEASE_MS * 4);
    const after = Date.now() - killedAt;
    assert.ok(lost.id);
    assert.ok(after <= LEASE_MS + 1000, `worker-lost came ${after} ms after the SIGKILL (lease ${LEASE_MS} ms)`);
    assert.equal(of(viewer, 'image_generation', 'done').length, 0);
    console.log(`# worker-lost ${after} ms after SIGKILL, lease ${LEASE_MS} ms`);
  });
});
