/**
 * Filters and routing (`types=`, `stages=`): on the stream endpoints and on subscriptions of the multiplexed
 * connection over both transports, applied on the server; the state on connect honours them, a resume with
 * one stays exact, and a bad one is a JSON 400 that says why. Real HTTP, a real redis-server, the real publisher.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { StreamPublisher } from '../src/publisher.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { TRANSPORTS, openMux, type MuxReader } from './mux-reader.js';
import { openStream, requestJson, type ReceivedEvent, type StreamReader } from './sse-reader.js';

let h: Harness;
let projects = 0;
const open: StreamReader[] = [];
const project = (name: string) => `${name}-${++projects}`;

before(async () => {
  h = await startHarness();
});
after(async () => {
  for (const reader of open) reader.close();
  await h.close();
});

async function watch(url: string, headers: Record<string, string> = {}): Promise<StreamReader> {
  const reader = await openStream(url, headers);
  open.push(reader);
  return reader;
}

/** A project with two stages that each publish a stage_update, three tokens, a progress and done. */
async function publishRun(projectId: string): Promise<string[]> {
  const ids: string[] = [];
  for (const stage of ['rewrite', 'storyboard']) {
    await using pub = new StreamPublisher({ projectId, stage, broker: h.broker });
    ids.push(await pub.publishStageUpdate('processing', 0));
    let text = '';
    for (const word of ['a', 'b', 'c']) ids.push(await pub.publishToken(word, (text += word)));
    ids.push(await pub.publishProgress(1, 1, 'frame'));
    ids.push(await pub.publishDone(text));
  }
  return ids;
}

const messages = (events: ReceivedEvent[]) => events.filter((e) => !['connected', 'snapshot', 'reset', 'connection', 'result'].includes(e.event));
const kinds = (events: ReceivedEvent[]) => messages(events).map((e) => `${e.json?.stage}:${e.event}`);

describe('filters on the stream endpoints', () => {
  it('types= keeps only those types, live, on a stage stream and a project stream', async () => {
    const id = project('types');
    const stage = await watch(`${streamUrl(h.url, id, 'rewrite')}?types=progress,done`);
    const all = await watch(`${streamUrl(h.url, id)}?types=done`);
    await Promise.all([stage.waitFor((e) => e.event === 'connected'), all.waitFor((e) => e.event === 'connected')]);
    await publishRun(id);
    await all.waitFor((e) => e.event === 'done' && e.json?.stage === 'storyboard');
    await stage.waitFor((e) => e.event === 'done');
    assert.deepEqual(kinds(stage.events), ['rewrite:progress', 'rewrite:done']);
    assert.deepEqual(kinds(all.events), ['rewrite:done', 'storyboard:done']);
  });

  it('stages= routes a project stream to some of its stages, and the snapshot holds only them and the types asked for', async () => {
    const id = project('stages');
    await publishRun(id);
    await using pub = new StreamPublisher({ projectId: id, stage: 'video', broker: h.broker });
    await pub.publishStageUpdate('processing', 5);
    const reader = await watch(`${streamUrl(h.url, id)}?stages=rewrite,video&types=stage_update,done`);
    const snapshot = await reader.waitFor((e) => e.event === 'snapshot');
    const stages = snapshot.json!.stages as Record<string, Record<string, unknown>>;
    assert.deepEqual(Object.keys(stages).sort(), ['rewrite', 'video']);
    assert.deepEqual(Object.keys(stages.rewrite!).sort(), ['done', 'stage_update']);
    assert.equal(stages.rewrite!.text, undefined, 'no text without tokens');
    await pub.publishToken('x', 'x');
    const last = await pub.publishDone('x');
    await reader.waitFor((e) => e.id === last);
    assert.deepEqual(kinds(reader.events), ['video:done']);
  });

  it('resumes a filtered stream exactly: what passes the filter after the cursor, once', async () => {
    const id = project('resume');
    const reader = await watch(`${streamUrl(h.url, id)}?types=token`);
    await reader.waitFor((e) => e.event === 'connected');
    const ids = await publishRun(id);
    await reader.waitFor((e) => e.event === 'token' && e.json?.stage === 'storyboard' && e.json?.content === 'c');
    const first = messages(reader.events).slice(0, 2);
    reader.close();
    const resumed = await watch(`${streamUrl(h.url, id)}?types=token`, { 'Last-Event-ID': first.at(-1)!.id! });
    await resumed.waitFor((e) => e.event === 'token' && e.json?.stage === 'storyboard' && e.json?.content === 'c');
    const all = [...first, ...messages(resumed.events)];
    assert.deepEqual(all.map((e) => e.json?.content), ['a', 'b', 'c', 'a', 'b', 'c']);
    assert.equal(new Set(all.map((e) => e.id)).size, 6);
    assert.ok(all.every((e) => ids.includes(e.id!)));
    // The text of a resumed token is whole: its full_text is the stage's text so far.
    assert.deepEqual(messages(resumed.events).map((e) => e.json?.full_text), ['abc', 'a', 'ab', 'abc']);
  });

  it('refuses a bad filter with a JSON 400 that says why', async () => {
    const id = project('bad');
    for (const [query, why] of [
      ['types=', /types/],
      ['types=token,,done', /types/],
      ['types=token,token', /each once/],
      [`types=${Array.from({ length: 17 }, (_, i) => `t${i}`).join(',')}`, /1 to 16/],
      ['types=__proto__', /__proto__/],
      ['types=a%20b', /not/],
      ['types=token&types=done', /once/],
    ] as const) {
      const answer = await requestJson(`${streamUrl(h.url, id)}?${query}`);
      assert.equal(answer.status, 400, query);
      assert.match(answer.body.error.message, why, query);
    }
    const onStage = await requestJson(`${streamUrl(h.url, id, 'rewrite')}?stages=rewrite`);
    assert.equal(onStage.status, 400);
    assert.match(onStage.body.error.message, /one stage already/);
  });
});

for (const transport of TRANSPORTS) {
  describe(`filters on subscriptions of the multiplexed connection over ${transport}`, () => {
    let reader: MuxReader;
    before(async () => {
      reader = await openMux(h.url, { transport });
      open.push(reader);
    });

    it('filters each subscription on its own: types, stages, and both', async () => {
      const id = project(`mux-${transport}`);
      const answer = await reader.subscribe({
        subscriptions: [
          { subscription: 'done-only', project_id: id, types: ['done'] },
          { subscription: 'two-stages', project_id: id, stages: ['storyboard'], types: ['token', 'done'] },
          { subscription: 'everything', project_id: id },
        ],
      });
      assert.ok(answer.body.results.every((r: { ok: boolean }) => r.ok), JSON.stringify(answer.body));
      const ids = await publishRun(id);
      await reader.waitFor((e) => e.json?.subscription === 'everything' && e.id === ids.at(-1));
      await reader.waitFor((e) => e.json?.subscription === 'two-stages' && e.id === ids.at(-1));
      assert.deepEqual(kinds(reader.of('done-only')), ['rewrite:done', 'storyboard:done']);
      assert.deepEqual(kinds(reader.of('two-stages')), ['storyboard:token', 'storyboard:token', 'storyboard:token', 'storyboard:done']);
      assert.equal(messages(reader.of('everything')).length, ids.length);
    });

    it('refuses a bad filter for that subscription alone (400), naming it', async () => {
      const id = project(`muxbad-${transport}`);
      const answer = await reader.subscribe({
        subscriptions: [
          { subscription: 'bad', project_id: id, types: ['no good'] },
          { subscription: 'stage-and-stages', project_id: id, stage: 'rewrite', stages: ['rewrite'] },
          { subscription: 'fine', project_id: id, types: 'done' },
        ],
      });
      assert.deepEqual(
        answer.body.results.map((r: { status: number }) => r.status),
        [400, 400, 200],
      );
      assert.match(answer.body.results[0].error.message, /types/);
    });
  });
}
