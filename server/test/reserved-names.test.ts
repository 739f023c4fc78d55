/**
 * Names of an object's internals (`__proto__`, `constructor`, `prototype`) from a hostile worker, against the real
 * server on a private redis-server: a foreign PUBLISH and HSET of them, then a resume that builds the snapshot,
 * leave the process as it was. The server runs in this process, so a polluted Object.prototype shows here directly.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { uniqueProject } from './broker.contract.js';
import { InvalidArgumentError } from '../src/broker/errors.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { RESERVED_IDS, logKey, stageChannel, stateKey } from '../src/channels.js';
import { signToken } from '../src/http/auth.js';
import { StreamPublisher } from '../src/publisher.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream, type ReceivedEvent, type StreamReader } from './sse-reader.js';

const SECRET = 'a-test-secret-of-more-than-32-bytes-for-hs256';
const PREFIX = 'ai_story';
const PUBLISH_LUA = readFileSync(new URL('../src/broker/publish.lua', import.meta.url), 'utf8');

/** The objects a `stages[name] ??= {}` on a plain object reaches with `__proto__` and `constructor`. */
const SHARED: ReadonlyArray<[string, object]> = [
  ['Object.prototype', Object.prototype],
  ['Object', Object],
];
const pristine = new Map(SHARED.map(([, target]) => [target, new Set(Reflect.ownKeys(target))]));

/** Properties added to the shared objects since the file started, as `Object.prototype.id`. */
function pollution(): string[] {
  return SHARED.flatMap(([name, target]) =>
    Reflect.ownKeys(target)
      .filter((key) => !pristine.get(target)!.has(key))
      .map((key) => `${name}.${String(key)}`),
  );
}

let harness: Harness;
/** A worker that talks to Redis itself, past every check of the kit. */
let foreign: Redis;
const streams: StreamReader[] = [];

before(async () => {
  harness = await startHarness({ settings: { authSecret: SECRET } });
  foreign = new Redis(harness.redis!.url);
});

afterEach(() => {
  for (const stream of streams.splice(0)) stream.close();
  // Undo any pollution, so that one failing test does not fail every later one.
  for (const [, target] of SHARED) {
    for (const key of Reflect.ownKeys(target)) if (!pristine.get(target)!.has(key)) Reflect.deleteProperty(target, key);
  }
});

after(async () => {
  await foreign.quit();
  await harness.close();
});

async function open(url: string, headers: Record<string, string> = {}): Promise<StreamReader> {
  const stream = await openStream(url, headers);
  streams.push(stream);
  return stream;
}

/** A message on stage `__proto__`, as a foreign worker would send it. */
function hostile(projectId: string, type: string): string {
  return JSON.stringify({ type, stage: '__proto__', project_id: projectId, timestamp: Date.now() / 1000, value: 1 });
}

/**
 * The attack: `__proto__` stage messages published live and written to the project's state hash (with
 * `constructor` and `prototype` too), then an unauthenticated resume with an id the log never held, so the
 * hub reads the snapshot and sends `reset`. Resolves with that reset.
 */
async function attemptPollution(projectId: string): Promise<ReceivedEvent> {
  const live = await open(streamUrl(harness.url, projectId));
  await live.waitFor((event) => event.event === 'connected');
  await foreign.publish(stageChannel(PREFIX, projectId, 'rewrite'), hostile(projectId, 'maxTokenAge'));
  await foreign.publish(stageChannel(PREFIX, projectId, 'rewrite'), hostile(projectId, 'id'));
  // The hub passes foreign messages on as they are: browsers get them too (the client keeps them as data).
  await live.waitFor((event) => event.event === 'id');

  const token = JSON.stringify({ id: '1-1', type: 'token', stage: 'rewrite', project_id: projectId, timestamp: 1, content: 'a', full_text: 'a' });
  await foreign.hset(
    stateKey(PREFIX, projectId),
    '__proto__|maxTokenAge', hostile(projectId, 'maxTokenAge'),
    '__proto__|id', hostile(projectId, 'id'),
    'constructor|maxTokenAge', hostile(projectId, 'maxTokenAge'),
    'prototype|id', hostile(projectId, 'id'),
    'rewrite|token', token,
  );
  const resumed = await open(streamUrl(harness.url, projectId), { 'Last-Event-ID': '1-0' });
  assert.equal(resumed.status, 200);
  return resumed.waitFor((event) => event.event === 'reset');
}

describe('names of an object’s internals from a hostile worker', () => {
  it('leave Object.prototype and Object untouched when the snapshot of a resume reads them', async () => {
    const project = uniqueProject();
    const reset = await attemptPollution(project);
    assert.equal(({} as Record<string, unknown>).maxTokenAge, undefined);
    assert.equal(({} as Record<string, unknown>).id, undefined);
    assert.equal((Object as unknown as Record<string, unknown>).maxTokenAge, undefined);
    assert.deepEqual(pollution(), []);
    // The snapshot still read the hash: the ordinary stage is in the reset.
    assert.equal(reset.json?.reason, 'unknown_id');
    const stages = reset.json?.stages as Record<string, Record<string, { type: string }>>;
    assert.equal(stages.rewrite?.token?.type, 'token');
  });

  it('leave publishing working: a normal publish afterwards is delivered', async () => {
    const project = uniqueProject();
    await attemptPollution(project);
    const live = await open(streamUrl(harness.url, project, 'rewrite'));
    await live.waitFor((event) => event.event === 'connected');
    await using publisher = new StreamPublisher({ projectId: project, stage: 'rewrite', broker: harness.broker });
    const id = await publisher.publishToken('Once', 'Once');
    const token = await live.waitFor((event) => event.event === 'token' && event.id === id);
    assert.equal(token.json?.content, 'Once');
  });

  it('leave authentication working: a valid token still gets its stream, and /metrics still answers', async () => {
    const project = uniqueProject();
    await attemptPollution(project);
    const token = await signToken(SECRET, [project]);
    const stream = await open(streamUrl(harness.url, project, undefined, true), { Authorization: `Bearer ${token}` });
    assert.equal(stream.status, 200);
    await stream.waitFor((event) => event.event === 'connected');
    const metrics = await fetch(`${harness.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /sse_resets_sent_total\{reason="unknown_id"\} [1-9]/);
  });
});

describe('reserved names at the edges', () => {
  it('the HTTP routes answer 400 invalid_id JSON for __proto__, constructor and prototype as project or stage id', async () => {
    const token = await signToken(SECRET, ['*']);
    for (const name of RESERVED_IDS) {
      const requests: Array<[string, RequestInit]> = [
        [streamUrl(harness.url, name), {}],
        [streamUrl(harness.url, name, undefined, true), { headers: { Authorization: `Bearer ${token}` } }],
        [streamUrl(harness.url, 'p1', name), {}],
        [streamUrl(harness.url, 'p1', name, true), { headers: { Authorization: `Bearer ${token}` } }],
        [
          `${harness.url}/api/v1/projects/${name}/execute_stage`,
          { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body: '{"stage_name":"rewrite"}' },
        ],
      ];
      for (const [url, init] of requests) {
        const response = await fetch(url, init);
        // An accepted id would open a stream that never ends: do not read it.
        if (response.status !== 400) await response.body?.cancel();
        assert.equal(response.status, 400, url);
        assert.match(response.headers.get('content-type') ?? '', /application\/json/, url);
        const body = (await response.json()) as { error?: { code?: string } };
        assert.equal(body.error?.code, 'invalid_id', url);
      }
    }
  });

  it('publish.lua refuses a reserved stage or type sent by EVALSHA directly, and writes nothing', async () => {
    const project = uniqueProject();
    const sha = (await foreign.script('LOAD', PUBLISH_LUA)) as string;
    const keys = [logKey(PREFIX, project), stateKey(PREFIX, project)];
    const attempts = [
      ...RESERVED_IDS.map((name) => [name, 'token']),
      ...RESERVED_IDS.map((name) => ['rewrite', name]),
    ];
    for (const [stage, type] of attempts) {
      const args = [stageChannel(PREFIX, project, stage!), stage!, type!, `{"type":"${type}"}`, 10, 60];
      await assert.rejects(foreign.evalsha(sha, keys.length, ...keys, ...args), /publish\.lua: .*object's internals/, `${stage} ${type}`);
    }
    assert.equal(await foreign.exists(...keys), 0);
  });

  it('RedisBroker refuses a prefix that breaks the id rule before it connects', () => {
    for (const prefix of ['ai_story:project:victim:stage:x#', 'a*', '', ...RESERVED_IDS]) {
      assert.throws(
        () => void new RedisBroker({ url: harness.redis!.url, prefix }).close(),
        InvalidArgumentError,
        prefix,
      );
    }
  });
});
