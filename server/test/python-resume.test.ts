/** A Python worker (the original API) streamed through the server to a client that drops and resumes mid-stage. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createSSEClient } from 'ai-story-sse/client';
import type { DoneMessage, TokenMessage } from '../../protocol/messages.js';
import { startHarness, type Harness } from './harness.js';
import { PYTHON, PYTHON_WORKERS, pythonSkip } from './python.js';
import { waitUntil } from './wait-until.js';

let h: Harness;
let worker: ChildProcess | undefined;
before(async () => {
  h = await startHarness({ settings: { retryMs: 50 } });
});
after(async () => {
  if (worker && worker.exitCode === null) worker.kill('SIGKILL');
  await h.close();
});

describe('a Python worker behind the server', { skip: pythonSkip }, () => {
  it('reaches a client that is cut off mid-stage and resumes with Last-Event-ID: exactly the published text, no id twice', async () => {
    const tokens: TokenMessage[] = [];
    let done: DoneMessage | undefined;
    let resumes = 0;
    const client = createSSEClient('py1', 'rewrite', { baseUrl: h.url, heartbeatMs: 0, retryMs: 50 })
      .on('token', (m: TokenMessage) => tokens.push({ ...m }))
      .on('done', (m: DoneMessage) => (done = m))
      .on('connected', (m: { resumed: boolean }) => (resumes += m.resumed ? 1 : 0));
    client.connect();
    try {
      await waitUntil(() => client.isConnected(), 'the client is connected');
      worker = spawn(PYTHON, [join(PYTHON_WORKERS, 'example.py'), '--project', 'py1', '--stage', 'rewrite', '--delay', '0.03'], {
        // No __pycache__ in workers/python: a test run leaves the tree as it was.
        env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', REDIS_URL: h.redis!.url },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      await waitUntil(() => tokens.length >= 5, 'a few tokens arrived');
      assert.equal(h.server.hub.cutProject('py1'), 1);
      const [code] = await once(worker, 'exit');
      assert.equal(code, 0, 'the Python worker exits cleanly');
      await waitUntil(() => done !== undefined, 'done arrived');
      assert.ok(resumes >= 1, 'the client resumed');
      assert.equal(tokens.map((t) => t.content).join(''), done!.full_text);
      assert.equal(tokens.at(-1)!.full_text, done!.full_text);
      const ids = tokens.map((t) => t.id);
      assert.equal(new Set(ids).size, ids.length, 'no id twice');
      assert.ok(ids.every((id) => typeof id === 'string'), 'every Python message carries a log id');
    } finally {
      client.disconnect();
    }
  });
});
