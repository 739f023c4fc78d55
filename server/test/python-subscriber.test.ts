/**
 * The Python subscriber (workers/python/ai_story_subscriber.py) against a private redis-server: its own unit tests,
 * and interop with the TypeScript StreamPublisher (it receives exactly what Node published, full_text rebuilt).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { uniqueProject } from './broker.contract.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { StreamPublisher } from '../src/publisher.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { PYTHON, PYTHON_WORKERS, pythonSkip } from './python.js';

let redis: TestRedis;
let broker: RedisBroker;
before(async () => {
  redis = await startRedis();
  broker = new RedisBroker({ url: redis.url });
});
after(async () => {
  await broker.close();
  await redis.close();
});

function pythonEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: PYTHON_WORKERS, REDIS_URL: redis.url, AI_STORY_TEST_REDIS_URL: redis.url };
}

/** Runs Python code; it prints "ready" once subscribed, then one JSON message per line. Resolves with the parsed lines. */
function pythonListener(code: string) {
  const child = spawn(PYTHON, ['-c', code], { env: pythonEnv() });
  let err = '';
  child.stderr.on('data', (chunk) => (err += chunk));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return {
    async ready(): Promise<void> {
      const { value, done } = await lines.next();
      if (done || value !== 'ready') throw new Error(`the Python subscriber did not start:\n${err}`);
    },
    async messages(): Promise<Record<string, unknown>[]> {
      const out: Record<string, unknown>[] = [];
      for (;;) {
        const { value, done } = await lines.next();
        if (done) break;
        out.push(JSON.parse(value) as Record<string, unknown>);
      }
      assert.equal(await exited, 0, err);
      return out;
    },
  };
}

describe('Python subscriber (ai_story_subscriber.py)', { skip: pythonSkip }, () => {
  it('passes its own unit tests against the private redis-server', async () => {
    const code = `
import sys, unittest
result = unittest.main(module="test_ai_story_subscriber", argv=["test"], exit=False, verbosity=0).result
print(result.testsRun, len(result.skipped))
sys.exit(0 if result.wasSuccessful() else 1)
`;
    const child = spawn(PYTHON, ['-c', code], { env: pythonEnv() });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(status, 0, err);
    const [run, skipped] = out.trim().split(' ').map(Number);
    assert.ok(run! >= 9, `ran ${run} Python tests`);
    assert.equal(skipped, 0);
  });

  it('receives exactly what the TypeScript StreamPublisher publishes, linear tokens with full_text, on all stages and resumed', async () => {
    const project = uniqueProject();
    await using early = new StreamPublisher({ projectId: project, stage: 'rewrite', broker });
    // History before the subscriber: it primes the text from Redis and still rebuilds every full_text.
    let text = '';
    await early.publishStageUpdate('processing', 0, 'rewriting');
    const beforeIds = [await early.publishToken('从前', (text += '从前')), await early.publishToken('😀', (text += '😀'))];
    const listener = pythonListener(`
import json, os, sys
from ai_story_subscriber import RedisStreamSubscriber
with RedisStreamSubscriber(${JSON.stringify(project)}, redis_url=os.environ["REDIS_URL"]) as live, \\
        RedisStreamSubscriber(${JSON.stringify(project)}, "rewrite", redis_url=os.environ["REDIS_URL"]) as resumed:
    live.subscribe()
    print("ready", flush=True)
    for message in live.listen(timeout=10):
        print(json.dumps({"via": "live", **message}, ensure_ascii=False), flush=True)
        if message["type"] == "done" and message["stage"] == "storyboard":
            break
    for message in resumed.listen(timeout=0.3, last_id=${JSON.stringify(beforeIds[0])}):
        print(json.dumps({"via": "resumed", **message}, ensure_ascii=False), flush=True)
    print(json.dumps({"via": "state", **live.state()}, ensure_ascii=False), flush=True)
`);
    await listener.ready();
    const board = new StreamPublisher({ projectId: project, stage: 'storyboard', broker });
    const expected: { id: string; stage: string; type: string; content?: string; full_text?: string }[] = [];
    for (const piece of [' 有一座山', '🇫🇷é', ' "q"\n']) {
      expected.push({ id: await early.publishToken(piece, (text += piece)), stage: 'rewrite', type: 'token', content: piece, full_text: text });
    }
    expected.push({ id: await board.publishProgress(1, 2, 'frame 1'), stage: 'storyboard', type: 'progress' });
    expected.push({ id: await early.publishDone(text, { tokens_used: 5 }), stage: 'rewrite', type: 'done', full_text: text });
    expected.push({ id: await board.publishDone('frames', {}), stage: 'storyboard', type: 'done', full_text: 'frames' });
    await board.close();
    const got = await listener.messages();
    const live = got.filter((m) => m.via === 'live');
    assert.deepEqual(
      live.map((m) => ({ id: m.id, stage: m.stage, type: m.type, ...(m.content === undefined ? {} : { content: m.content }), ...(m.full_text === undefined ? {} : { full_text: m.full_text }) })),
      expected,
    );
    assert.ok(live.every((m) => m.offset === undefined && m.project_id === project && typeof m.timestamp === 'number'));
    // Resumed after the first token: the rest of the rewrite stage exactly, from the log.
    const resumed = got.filter((m) => m.via === 'resumed');
    const rewrite = expected.filter((m) => m.stage === 'rewrite');
    assert.deepEqual(resumed.map((m) => m.id), [beforeIds[1], ...rewrite.map((m) => m.id)]);
    assert.deepEqual(resumed.filter((m) => m.type === 'token').map((m) => m.full_text), ['从前😀', ...rewrite.filter((m) => m.type === 'token').map((m) => m.full_text)]);
    const [state] = got.filter((m) => m.via === 'state') as unknown as { id: string; stages: Record<string, Record<string, { full_text?: string }>> }[];
    assert.equal(state!.id, expected.at(-1)!.id);
    assert.deepEqual(Object.keys(state!.stages).sort(), ['rewrite', 'storyboard']);
    assert.equal(state!.stages.rewrite!.done!.full_text, text);
  });
});
