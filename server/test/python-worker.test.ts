/**
 * The Python worker module (workers/python/ai_story_stream.py) against a private redis-server:
 * its messages reach Node subscribers, and Python and Node publishers share one id space and one order.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { recorder, uniqueProject } from './broker.contract.js';
import { compareLogIds } from '../src/broker/log-id.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { StreamPublisher } from '../src/publisher.js';
import { StreamSubscriber, type SubscriberMessage } from '../src/subscriber.js';
import { projectPattern } from '../src/channels.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { PYTHON, PYTHON_WORKERS, pythonSkip } from './python.js';

const WORKERS = PYTHON_WORKERS;
const skip = pythonSkip;

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

/** Runs Python code with the worker module importable; resolves with its stdout, rejects with its stderr. */
function python(code: string, env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-c', code], { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: WORKERS, REDIS_URL: redis.url, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`python exited with ${code}:\n${err}`))));
  });
}

/** A Python process that publishes one token per line of JSON it reads, and answers each with the id. */
function pythonPublisher(projectId: string) {
  const code = `
import json, os, sys
from ai_story_stream import RedisStreamPublisher
publishers = {}
for line in sys.stdin:
    command = json.loads(line)
    stage = command["stage"]
    if stage not in publishers:
        publishers[stage] = RedisStreamPublisher(${JSON.stringify(projectId)}, stage, redis_url=os.environ["REDIS_URL"])
    print(publishers[stage].publish_token(command["content"], command["full_text"]), flush=True)
for publisher in publishers.values():
    publisher.close()
`;
  const child: ChildProcessWithoutNullStreams = spawn(PYTHON, ['-c', code], { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: WORKERS, REDIS_URL: redis.url } });
  let err = '';
  child.stderr.on('data', (chunk) => (err += chunk));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return {
    async publishToken(stage: string, content: string, fullText: string): Promise<string> {
      child.stdin.write(`${JSON.stringify({ stage, content, full_text: fullText })}\n`);
      const { value, done } = await lines.next();
      if (done) throw new Error(`the Python publisher ended:\n${err}`);
      return value;
    },
    async close(): Promise<void> {
      child.stdin.end();
      assert.equal(await exited, 0, err);
    },
  };
}

describe('Python workers (ai_story_stream.py)', { skip }, () => {
  it('passes its own unit tests against the private redis-server', async () => {
    const code = `
import sys, unittest
result = unittest.main(module="test_ai_story_stream", argv=["test"], exit=False, verbosity=0).result
print(result.testsRun, len(result.skipped))
sys.exit(0 if result.wasSuccessful() else 1)
`;
    const out = await python(code, { AI_STORY_TEST_REDIS_URL: redis.url });
    const [run, skipped] = out.trim().split(' ').map(Number);
    assert.ok(run! >= 7, `ran ${run} Python tests`);
    assert.equal(skipped, 0);
  });

  it('streams a stage token by token to a Node subscriber, and replay after a mid-stage id yields exactly the rest', async () => {
    const project = uniqueProject();
    await using subscriber = new StreamSubscriber({ projectId: project, stage: 'rewrite', broker });
    await subscriber.ready;
    const raw = recorder();
    await broker.subscribe(projectPattern(broker.prefix, project), raw.listener, true);
    const tokens = ['Once', ' upon', ' a', ' time,', ' ünïcödé', ' "quoted"', '\nnew line'];
    const done = python(`
import os
from ai_story_stream import RedisStreamPublisher
tokens = ${JSON.stringify(tokens)}
with RedisStreamPublisher(${JSON.stringify(project)}, "rewrite", redis_url=os.environ["REDIS_URL"]) as publisher:
    publisher.publish_stage_update("processing", 0, "rewriting")
    full_text = ""
    for token in tokens:
        full_text += token
        publisher.publish_token(token, full_text)
    publisher.publish_stage_update("completed", 100, "rewritten")
    publisher.publish_done(full_text, {"tokens_used": len(tokens)})
`);
    const received: SubscriberMessage[] = [];
    for await (const message of subscriber.listen({ timeoutMs: 10_000 })) {
      received.push(message);
      if (message.type === 'done') break;
    }
    await done;
    assert.deepEqual(
      received.map((m) => m.type),
      ['stage_update', ...tokens.map(() => 'token'), 'stage_update', 'done'],
    );
    let fullText = '';
    received.forEach((message, i) => {
      assert.ok(message.type !== 'message', 'every message is JSON with a type');
      assert.equal(message.project_id, project);
      assert.equal(message.stage, 'rewrite');
      assert.equal(typeof message.timestamp, 'number');
      if (message.type === 'token') {
        fullText += tokens[i - 1];
        assert.deepEqual([message.content, message.full_text], [tokens[i - 1], fullText]);
      }
    });
    const ids = received.map((m) => (m as { id?: string }).id!);
    for (let i = 1; i < ids.length; i++) assert.ok(compareLogIds(ids[i - 1]!, ids[i]!) < 0);

    // The live payloads: compact JSON, non-ASCII as is, the id first.
    await raw.waitFor(received.length);
    const live = raw.payloads();
    assert.ok(live.every((payload, i) => payload.startsWith(`{"id":"${ids[i]}","type":`)));
    assert.ok(live[5]!.includes('"content":" ünïcödé"'), live[5]);
    assert.ok(!live[0]!.includes('": '), live[0]);

    const middle = 4;
    const replay = await broker.replay(project, ids[middle]!);
    assert.equal(replay.covered, true);
    assert.deepEqual(
      replay.entries,
      ids.slice(middle + 1).map((id, i) => ({ id, stage: 'rewrite', data: live[middle + 1 + i] })),
    );
  });

  it('shares one id space, one order and the texts with Node publishers on the same project', async () => {
    const project = uniqueProject();
    const rec = recorder();
    await broker.subscribe(projectPattern(broker.prefix, project), rec.listener, true);
    const py = pythonPublisher(project);
    await using node = new StreamPublisher({ projectId: project, stage: 'storyboard', broker });
    const ids: string[] = [];
    const origins: string[] = [];
    // Each stage its own text, pieces of every width: Python counts UTF-16 code units as JavaScript does.
    let pyText = '';
    let nodeText = '';
    try {
      for (let round = 0; round < 8; round++) {
        const pyPiece = `p${round} 从前😀 `;
        ids.push(await py.publishToken('rewrite', pyPiece, (pyText += pyPiece)));
        origins.push('python');
        const nodePiece = `n${round} 🇫🇷é `;
        ids.push(await node.publishToken(nodePiece, (nodeText += nodePiece)));
        origins.push('node');
      }
    } finally {
      await py.close();
    }
    for (let i = 1; i < ids.length; i++) assert.ok(compareLogIds(ids[i - 1]!, ids[i]!) < 0, `${ids[i - 1]} < ${ids[i]}`);
    assert.deepEqual(
      await broker.texts(project, null),
      new Map([
        ['rewrite', { text: pyText, id: ids.at(-2) }],
        ['storyboard', { text: nodeText, id: ids.at(-1) }],
      ]),
    );

    // Subscribers hear them in that one order, in one format: the piece and its offset, no full_text.
    await rec.waitFor(ids.length);
    const heard = rec.payloads().map((payload) => JSON.parse(payload) as { id: string; content: string; offset: number; full_text?: string });
    assert.deepEqual(heard.map((m) => m.id), ids);
    assert.deepEqual(
      heard.map((m) => m.content[0]),
      origins.map((origin) => (origin === 'python' ? 'p' : 'n')),
    );
    assert.ok(heard.every((m) => m.full_text === undefined && Number.isInteger(m.offset)));
    assert.deepEqual(heard.slice(0, 4).map((m) => m.offset), [0, 0, 'p0 从前😀 '.length, 'n0 🇫🇷é '.length]);

    // Replay after any id, whoever published it, yields exactly the rest, as the live channel carried it.
    for (const after of [3, 8]) {
      const replay = await broker.replay(project, ids[after]!);
      assert.equal(replay.covered, true);
      assert.deepEqual(replay.entries.map((e) => e.id), ids.slice(after + 1));
      assert.deepEqual(replay.entries.map((e) => e.data), rec.payloads().slice(after + 1));
    }
  });

  it('hands a stage over between Python and Node publishers: each joins with the whole text, then continues it', async () => {
    const project = uniqueProject();
    const py = pythonPublisher(project);
    let text = '';
    try {
      await py.publishToken('rewrite', '从前', (text += '从前'));
      await py.publishToken('rewrite', '😀', (text += '😀'));
      // The Python worker dies; a Node one takes the stage over from its own text so far.
      await using node = new StreamPublisher({ projectId: project, stage: 'rewrite', broker });
      text = 'Once 😀';
      await node.publishToken(' upon', (text += ' upon'));
      const last = await node.publishToken(' a time', (text += ' a time'));
      assert.deepEqual(await broker.texts(project, 'rewrite'), new Map([['rewrite', { text, id: last }]]));
      await node.close();
    } finally {
      await py.close();
    }
    // And back: a new Python process joins what Node wrote.
    const again = pythonPublisher(project);
    try {
      const last = await again.publishToken('rewrite', '!', (text += '!'));
      assert.deepEqual(await broker.texts(project, 'rewrite'), new Map([['rewrite', { text, id: last }]]));
    } finally {
      await again.close();
    }
  });
});
