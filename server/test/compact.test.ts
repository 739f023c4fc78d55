/** Compact token events: the wire carries each piece once, the kit's client rebuilds full_text exactly. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createSSEClient } from 'ai-story-sse/client';
import type { TokenMessage } from '../../protocol/messages.js';
import { StreamPublisher } from '../src/publisher.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.close();
});

const pieces = (n: number) => Array.from({ length: n }, (_, i) => (i % 3 === 0 ? '故事' : `word${i} `));

describe('compact token events', () => {
  it('send a stage\'s first token whole, then only content and offset; other clients still get the original format', async () => {
    const compact = await openStream(`${streamUrl(h.url, 'k1', 'rewrite')}?compact=1`);
    const full = await openStream(streamUrl(h.url, 'k1', 'rewrite'));
    await compact.waitFor((e) => e.event === 'connected');
    await full.waitFor((e) => e.event === 'connected');
    await using pub = new StreamPublisher({ projectId: 'k1', stage: 'rewrite', broker: h.broker });
    let text = '';
    let last = '';
    for (const piece of pieces(300)) last = await pub.publishToken(piece, (text += piece));
    await compact.waitFor((e) => e.id === last);
    await full.waitFor((e) => e.id === last);
    const [first, ...rest] = compact.events.filter((e) => e.event === 'token').map((e) => e.json!);
    assert.equal(first!.full_text, pieces(1)[0]);
    let rebuilt = first!.full_text as string;
    for (const token of rest) {
      assert.equal(token.full_text, undefined);
      assert.equal(token.offset, rebuilt.length);
      rebuilt += token.content as string;
    }
    assert.equal(rebuilt, text);
    assert.ok(full.events.filter((e) => e.event === 'token').every((e) => typeof e.json?.full_text === 'string'));
    assert.ok(compact.raw.length * 3 < full.raw.length, `compact ${compact.raw.length} B vs full ${full.raw.length} B`);
    compact.close();
    full.close();
  });

  it('give SSEClient handlers the exact full_text through a drop and resume mid-stage', async () => {
    await using pub = new StreamPublisher({ projectId: 'k2', stage: 'storyboard', broker: h.broker });
    const seen: TokenMessage[] = [];
    const client = createSSEClient('k2', 'storyboard', { baseUrl: h.url, heartbeatMs: 0, retryMs: 50 }).on('token', (m: TokenMessage) => {
      seen.push(m);
    });
    client.connect();
    try {
      await waitUntil(() => client.isConnected(), 'the client is connected');
      let text = '';
      const all = pieces(200);
      for (const [i, piece] of all.entries()) {
        await pub.publishToken(piece, (text += piece));
        if (i === 80) h.server.hub.cutProject('k2');
      }
      await waitUntil(() => seen.length >= all.length, () => `every token arrived (${seen.length} of ${all.length})`);
      assert.equal(seen.length, all.length);
      assert.deepEqual(seen.map((m) => m.content), all);
      let expected = '';
      for (const [i, message] of seen.entries()) {
        expected += all[i];
        assert.equal(message.full_text, expected, `token ${i}`);
        assert.equal('offset' in message, false);
      }
    } finally {
      client.disconnect();
    }
  });
});
