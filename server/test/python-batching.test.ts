/**
 * Batched publishing from Python (workers/python/ai_story_stream.py, `batch=`): its unit tests
 * (test_ai_story_batching.py) against a private redis-server, and the exact text as a browser sees it through a hub.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { uniqueProject } from './broker.contract.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream } from './sse-reader.js';
import { PYTHON, PYTHON_WORKERS, pythonSkip } from './python.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.close();
});

function python(code: string, env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-c', code], {
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: PYTHON_WORKERS, REDIS_URL: h.redis!.url, ...env },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`python exited with ${code}:\n${err}`))));
  });
}

describe('Python batched publishing', { skip: pythonSkip }, () => {
  it('passes test_ai_story_batching.py against the private redis-server', async () => {
    const out = await python(
      `
import sys, unittest
result = unittest.main(module="test_ai_story_batching", argv=["test"], exit=False, verbosity=0).result
print(result.testsRun, len(result.skipped))
sys.exit(0 if result.wasSuccessful() else 1)
`,
      { AI_STORY_TEST_REDIS_URL: h.redis!.url },
    );
    const [run, skipped] = out.trim().split(' ').map(Number);
    assert.ok(run! >= 13, `ran ${run} Python tests`);
    assert.equal(skipped, 0);
  });

  for (const linear of [true, false]) {
    it(`gives a hub stream the exact text, in order, flushed at the end of the with block (${linear ? 'linear tokens' : 'original format'})`, async () => {
      const project = uniqueProject();
      const plain = await openStream(streamUrl(h.url, project, 'rewrite'));
      const compact = await openStream(`${streamUrl(h.url, project, 'rewrite')}?compact=1`);
      await plain.waitFor((e) => e.event === 'connected');
      await compact.waitFor((e) => e.event === 'connected');
      const text = await python(`
import os, sys, time
from ai_story_stream import RedisStreamPublisher
pieces = [["从前", " 😀", ' "q"\\n', " é"][i % 4] + str(i) for i in range(41)]
text = ""
with RedisStreamPublisher(${JSON.stringify(project)}, "rewrite", redis_url=os.environ["REDIS_URL"], linear_tokens=${linear ? 'True' : 'False'},
                          batch={"max_tokens": 5, "max_delay_ms": 30}) as publisher:
    publisher.publish_stage_update("processing", 0, "rewriting")
    for i, piece in enumerate(pieces):
        text += piece
        publisher.publish_token(piece, text)
        if i == 20:
            publisher.publish_progress(1, 2, "half")
        if i % 10 == 9:
            time.sleep(0.05)
    publisher.publish_stage_update("completed", 100, "rewritten")
    publisher.publish_token("!", text + "!")  # left in the buffer: the end of the with block sends it
sys.stdout.write(text + "!")
`);
      await plain.waitFor((e) => e.event === 'token' && (e.json!.full_text as string) === text, 5000);
      const events = plain.events.filter((e) => e.event !== 'connected');
      const tokens = events.filter((e) => e.event === 'token').map((e) => e.json!);
      assert.ok(tokens.length < 42 && tokens.length >= 9, `${tokens.length} token events`);
      let shown = '';
      for (const token of tokens) {
        shown += token.content as string;
        assert.equal(token.full_text, shown);
      }
      assert.equal(shown, text);
      // Order: the progress between the tokens before and after its call, the completed update before the last token.
      const kinds = events.map((e) => e.event);
      assert.equal(kinds[0], 'stage_update');
      assert.deepEqual(kinds.slice(-2), ['stage_update', 'token']);
      const progressAt = kinds.indexOf('progress');
      assert.ok((events[progressAt - 1]!.json!.full_text as string).endsWith('20'));
      await compact.waitFor((e) => e.event === 'token' && (e.json!.content as string) === '!');
      assert.equal(compact.events.filter((e) => e.event === 'token').map((e) => e.json!.content).join(''), text);
      plain.close();
      compact.close();
    });
  }
});
