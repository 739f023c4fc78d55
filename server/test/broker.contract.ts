/**
 * The behaviour every Broker must have, as one suite run against each implementation
 * (redis-broker.test.ts, memory-broker.test.ts). Tests wait on events, never on sleeps.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { Broker, Snapshot } from '../src/broker/broker.js';
import { BrokerClosedError, InvalidArgumentError, TokenOffsetError } from '../src/broker/errors.js';
import { compareLogIds, isLogId } from '../src/broker/log-id.js';
import { projectPattern, stageChannel } from '../src/channels.js';

export interface BrokerHarness {
  /** A new broker; the suite closes it after the test. */
  create(options?: { logMaxLen?: number; logTtlSeconds?: number }): Promise<Broker>;
  /** Lets a project's log and state reach their TTL: advance a fake clock, or wait for Redis to expire the keys. */
  expire(broker: Broker, projectId: string): Promise<void>;
  /** A plain PUBLISH on `channel`, as another program does it: no log, no id. */
  publishForeign(broker: Broker, channel: string, payload: string): Promise<void>;
  /** How many subscriptions the server holds for `channel`, and patterns in all; absent for brokers without a server. */
  serverSubscriptions?(channel: string): Promise<{ channel: number; patterns: number }>;
  /** The `data` of every entry of the project's log as the server stores it (XRANGE); absent for brokers without a server. */
  storedLog?(broker: Broker, projectId: string): Promise<string[]>;
}

/** A listener that records what it hears and lets a test wait for the n-th message. */
export function recorder() {
  const heard: { payload: string; channel: string }[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const listener = (payload: string, channel: string) => {
    heard.push({ payload, channel });
    for (const waiter of [...waiters]) {
      if (heard.length >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  return {
    listener,
    heard,
    payloads: () => heard.map((h) => h.payload),
    /** Resolves once `count` messages were heard in all; fails the test after `ms`. */
    async waitFor(count: number, ms = 5000): Promise<void> {
      if (heard.length >= count) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => waiters.push({ count, resolve })),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`heard ${heard.length} of ${count} messages within ${ms} ms`)), ms);
        }),
      ]).finally(() => clearTimeout(timer));
    },
  };
}

let counter = 0;
/** A project id no other test uses. */
export function uniqueProject(): string {
  return `p${process.pid}-${Date.now().toString(36)}-${++counter}`;
}

/** A snapshot's `stages` as every broker builds them: prototype-less at both levels (strict deepEqual compares prototypes). */
export function stagesOf(stages: Record<string, Record<string, string>> = {}): Snapshot['stages'] {
  const result: Snapshot['stages'] = Object.create(null);
  for (const [stage, byType] of Object.entries(stages)) result[stage] = Object.assign(Object.create(null), byType);
  return result;
}

function message(type: string, stage: string, projectId: string, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({ type, stage, project_id: projectId, timestamp: 1700000000.5, ...fields });
}

/** A token in linear form, as every publisher of the kit writes it: `offset` its last field, no `full_text`. */
function linearToken(stage: string, projectId: string, content: string, offset: number): string {
  return message('token', stage, projectId, { content, offset });
}

/** Publishes `content` at `offset` of `stage`'s text, in linear form. */
function publishPiece(broker: Broker, projectId: string, stage: string, content: string, offset: number, wholeText?: string): Promise<string> {
  return broker.publish(projectId, stage, 'token', linearToken(stage, projectId, content, offset), { content, offset, wholeText });
}

const SAMPLES: [string, Record<string, unknown>][] = [
  ['token', { content: 'Once', full_text: 'Once' }],
  ['stage_update', { status: 'processing', progress: 10, message: 'working' }],
  ['progress', { current: 1, total: 4, progress: 25, item_name: 'image 1' }],
  ['done', { full_text: 'Once upon a time', metadata: { tokens_used: 4, latency_ms: 12 } }],
  ['error', { error: 'model timed out', retry_count: 2 }],
];

export function brokerContract(name: string, harness: () => BrokerHarness): void {
  describe(`${name}: the Broker contract`, () => {
    const open: Broker[] = [];
    const create = async (options?: { logMaxLen?: number; logTtlSeconds?: number }) => {
      const broker = await harness().create(options);
      open.push(broker);
      return broker;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((broker) => broker.close()));
    });

    it('delivers each message type on its stage channel, with the id publish resolved to as its first field', async () => {
      const broker = await create();
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(stageChannel(broker.prefix, project, 'rewrite'), rec.listener);
      const ids: string[] = [];
      for (const [type, fields] of SAMPLES) ids.push(await broker.publish(project, 'rewrite', type, message(type, 'rewrite', project, fields)));
      await rec.waitFor(SAMPLES.length);
      SAMPLES.forEach(([type, fields], i) => {
        const { payload, channel } = rec.heard[i]!;
        assert.equal(channel, stageChannel(broker.prefix, project, 'rewrite'));
        assert.ok(payload.startsWith(`{"id":"${ids[i]}","type":"${type}"`), payload);
        assert.deepEqual(JSON.parse(payload), { id: ids[i], type, stage: 'rewrite', project_id: project, timestamp: 1700000000.5, ...fields });
      });
    });

    it('delivers every stage of a project to a pattern subscriber, with the channel each was published on', async () => {
      const broker = await create();
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(projectPattern(broker.prefix, project), rec.listener, true);
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      await broker.publish(project, 'image_generation', 'progress', message('progress', 'image_generation', project));
      await rec.waitFor(2);
      assert.deepEqual(
        rec.heard.map((h) => h.channel),
        [stageChannel(broker.prefix, project, 'rewrite'), stageChannel(broker.prefix, project, 'image_generation')],
      );
    });

    it('keeps projects apart: a project pattern hears nothing of another project', async () => {
      const broker = await create();
      const mine = uniqueProject();
      const other = `${mine}x`;
      const rec = recorder();
      await broker.subscribe(projectPattern(broker.prefix, mine), rec.listener, true);
      await broker.publish(other, 'rewrite', 'token', message('token', 'rewrite', other));
      await broker.publish(mine, 'rewrite', 'token', message('token', 'rewrite', mine));
      await rec.waitFor(1);
      assert.equal(JSON.parse(rec.heard[0]!.payload).project_id, mine);
    });

    it('gives increasing ids across the stages of one project, in publish order', async () => {
      const broker = await create();
      const project = uniqueProject();
      const stages = ['rewrite', 'storyboard', 'image_generation', 'rewrite', 'video_generation', 'storyboard'];
      const ids: string[] = [];
      for (const stage of stages) ids.push(await broker.publish(project, stage, 'token', message('token', stage, project)));
      for (const id of ids) assert.ok(isLogId(id), id);
      for (let i = 1; i < ids.length; i++) assert.ok(compareLogIds(ids[i - 1]!, ids[i]!) < 0, `${ids[i - 1]} < ${ids[i]}`);
    });

    it('tells its ids from others with isId, and orders them with compareIds as it logged them', async () => {
      const broker = await create();
      const project = uniqueProject();
      const first = await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      const second = await broker.publish(project, 'other', 'token', message('token', 'other', project));
      assert.ok(broker.isId(first) && broker.isId(second));
      for (const foreign of ['job-7', '', '1', '1-0 ', 42, undefined]) assert.equal(broker.isId(foreign), false, String(foreign));
      assert.ok(broker.compareIds(first, second) < 0 && broker.compareIds(second, first) > 0);
      assert.equal(broker.compareIds(second, second), 0);
      assert.throws(() => broker.compareIds('job-7', first), TypeError);
    });

    it('delivers concurrent publishes in the order of their ids', async () => {
      const broker = await create();
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(projectPattern(broker.prefix, project), rec.listener, true);
      const ids = await Promise.all(
        Array.from({ length: 50 }, (_, i) => broker.publish(project, i % 2 ? 'a' : 'b', 'token', message('token', i % 2 ? 'a' : 'b', project, { n: i }))),
      );
      await rec.waitFor(50);
      const heardIds = rec.heard.map((h) => JSON.parse(h.payload).id as string);
      assert.deepEqual(heardIds, [...ids].sort(compareLogIds));
      assert.deepEqual(heardIds, ids);
    });

    it('replays exactly the entries after an id, byte for byte as the live channel carried them', async () => {
      const broker = await create();
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(projectPattern(broker.prefix, project), rec.listener, true);
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) {
        const stage = i % 2 ? 'storyboard' : 'rewrite';
        ids.push(await broker.publish(project, stage, 'token', message('token', stage, project, { content: `t${i}\n"quoted" ünïcödé`, full_text: '' })));
      }
      await rec.waitFor(6);
      const result = await broker.replay(project, ids[1]!);
      assert.equal(result.covered, true);
      assert.deepEqual(
        result.entries,
        ids.slice(2).map((id, i) => ({ id, stage: (i + 2) % 2 ? 'storyboard' : 'rewrite', data: rec.payloads()[i + 2] })),
      );
    });

    it('replays an empty object message as {"id":...} alone', async () => {
      const broker = await create();
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(stageChannel(broker.prefix, project, 's'), rec.listener);
      const first = await broker.publish(project, 's', 'message', '{}');
      const second = await broker.publish(project, 's', 'message', '{ }');
      await rec.waitFor(2);
      assert.deepEqual(rec.payloads(), [`{"id":"${first}"}`, `{"id":"${second}"}`]);
      assert.deepEqual((await broker.replay(project, first)).entries, [{ id: second, stage: 's', data: `{"id":"${second}"}` }]);
    });

    it('replay after the newest id is covered and empty', async () => {
      const broker = await create();
      const project = uniqueProject();
      const id = await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      assert.deepEqual(await broker.replay(project, id), { covered: true, entries: [], more: false });
    });

    it('replays a long log in pages, each after the last id of the one before, with more while a page is full', async () => {
      const broker = await create();
      const project = uniqueProject();
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) ids.push(await broker.publish(project, i % 2 ? 'a' : 'b', 'token', message('token', i % 2 ? 'a' : 'b', project, { n: i })));
      const whole = await broker.replay(project, ids[0]!);
      assert.deepEqual([whole.covered, whole.more, whole.entries.map((e) => e.id)], [true, false, ids.slice(1)]);
      const pages: { ids: string[]; more: boolean }[] = [];
      for (let after = ids[0]!, more = true; more; ) {
        const page = await broker.replay(project, after, { limit: 3 });
        assert.equal(page.covered, true);
        pages.push({ ids: page.entries.map((e) => e.id), more: page.more });
        ({ more } = page);
        after = page.entries.at(-1)?.id ?? after;
      }
      assert.deepEqual(pages, [
        { ids: ids.slice(1, 4), more: true },
        { ids: ids.slice(4, 7), more: true },
        { ids: ids.slice(7), more: false },
      ]);
      assert.deepEqual(pages.flatMap((page) => page.ids), whole.entries.map((e) => e.id));
      // A page that ends exactly at the newest entry is full: the next one is empty and ends the replay.
      assert.equal((await broker.replay(project, ids[4]!, { limit: 3 })).more, true);
      assert.deepEqual(await broker.replay(project, ids[7]!, { limit: 3 }), { covered: true, entries: [], more: false });
    });

    it('does not cover a page after an id trimmed since the page before: the gap is seen, not skipped', async () => {
      const broker = await create({ logMaxLen: 5 });
      const project = uniqueProject();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project, { n: i })));
      const first = await broker.replay(project, ids[0]!, { limit: 2 });
      assert.deepEqual([first.covered, first.more, first.entries.map((e) => e.id)], [true, true, ids.slice(1, 3)]);
      // Three more trim ids[0..2]: the next page's afterId, ids[2], is gone, although what follows it is still there.
      for (let i = 5; i < 8; i++) ids.push(await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project, { n: i })));
      assert.deepEqual(await broker.replay(project, ids[2]!, { limit: 2 }), { covered: false, entries: [], more: false });
      assert.equal((await broker.replay(project, ids[3]!, { limit: 2 })).covered, true);
    });

    it('refuses a replay limit that is not a positive integer', async () => {
      const broker = await create();
      const project = uniqueProject();
      const id = await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      for (const limit of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        await assert.rejects(broker.replay(project, id, { limit }), InvalidArgumentError, String(limit));
      }
    });

    it('replay after a malformed id is not covered', async () => {
      const broker = await create();
      const project = uniqueProject();
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      for (const bad of ['', 'abc', '1-', '-1', '1', '1-2-3', ' 1-0', '1-0 ', '18446744073709551616-0', '0-1; FLUSHALL', '+', '-', '(1-0']) {
        assert.deepEqual(await broker.replay(project, bad), { covered: false, entries: [], more: false }, JSON.stringify(bad));
      }
    });

    it('replay after an id that was never in the log, or of a project without a log, is not covered', async () => {
      const broker = await create();
      const project = uniqueProject();
      const id = await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      const [ms, seq] = id.split('-').map(BigInt) as [bigint, bigint];
      assert.equal((await broker.replay(project, '1-0')).covered, false);
      assert.equal((await broker.replay(project, `${ms}-${seq + 7n}`)).covered, false);
      assert.equal((await broker.replay(project, `${ms + 1000n}-0`)).covered, false);
      assert.equal((await broker.replay(uniqueProject(), id)).covered, false);
      assert.equal((await broker.replay('not a project*', id)).covered, false);
      assert.deepEqual(await broker.snapshot('not a project*'), { lastId: null, stages: stagesOf() });
    });

    it('caps the log at logMaxLen entries: a trimmed id is not covered, the oldest kept one is', async () => {
      const broker = await create({ logMaxLen: 3 });
      const project = uniqueProject();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project, { n: i })));
      assert.equal((await broker.replay(project, ids[0]!)).covered, false);
      assert.equal((await broker.replay(project, ids[1]!)).covered, false);
      const kept = await broker.replay(project, ids[2]!);
      assert.equal(kept.covered, true);
      assert.deepEqual(kept.entries.map((e) => e.id), ids.slice(3));
    });

    it('forgets a project’s log and state once logTtlSeconds pass without a message', async () => {
      const broker = await create({ logTtlSeconds: 1 });
      const project = uniqueProject();
      const id = await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      assert.equal((await broker.replay(project, id)).covered, true);
      await publishPiece(broker, project, 'rewrite', 'text', 0);
      assert.equal((await broker.texts(project, null)).size, 1);
      await harness().expire(broker, project);
      assert.equal((await broker.replay(project, id)).covered, false);
      assert.deepEqual(await broker.snapshot(project), { lastId: null, stages: stagesOf() });
      assert.deepEqual(await broker.texts(project, null), new Map());
    });

    it('snapshots the latest message of each stage and type, with the newest id', async () => {
      const broker = await create();
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(projectPattern(broker.prefix, project), rec.listener, true);
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project, { content: 'a' }));
      await broker.publish(project, 'rewrite', 'stage_update', message('stage_update', 'rewrite', project, { status: 'processing' }));
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project, { content: 'b' }));
      const last = await broker.publish(project, 'image_generation', 'progress', message('progress', 'image_generation', project));
      await rec.waitFor(4);
      const [, update, token, progress] = rec.payloads();
      assert.deepEqual(await broker.snapshot(project), {
        lastId: last,
        stages: stagesOf({ rewrite: { token: token!, stage_update: update! }, image_generation: { progress: progress! } }),
      });
    });

    it('snapshots a project without a log as empty, with a null id', async () => {
      const broker = await create();
      assert.deepEqual(await broker.snapshot(uniqueProject()), { lastId: null, stages: stagesOf() });
    });

    it('delivers a foreign PUBLISH as it is, to channel and pattern subscribers, and logs nothing', async () => {
      const broker = await create();
      const project = uniqueProject();
      const channel = stageChannel(broker.prefix, project, 'rewrite');
      const byChannel = recorder();
      const byPattern = recorder();
      await broker.subscribe(channel, byChannel.listener);
      await broker.subscribe(projectPattern(broker.prefix, project), byPattern.listener, true);
      const foreign = '{"type":"token","content":"x","stage":"rewrite","project_id":"' + project + '"}';
      await harness().publishForeign(broker, channel, 'not json\ndata: injected');
      await harness().publishForeign(broker, channel, foreign);
      await byChannel.waitFor(2);
      await byPattern.waitFor(2);
      assert.deepEqual(byChannel.payloads(), ['not json\ndata: injected', foreign]);
      assert.deepEqual(byPattern.payloads(), ['not json\ndata: injected', foreign]);
      assert.deepEqual(await broker.snapshot(project), { lastId: null, stages: stagesOf() });
    });

    it('keeps delivering to the remaining listener when one of two leaves', async () => {
      const broker = await create();
      const project = uniqueProject();
      const channel = stageChannel(broker.prefix, project, 'rewrite');
      const leaving = recorder();
      const staying = recorder();
      const leave = await broker.subscribe(channel, leaving.listener);
      await broker.subscribe(channel, staying.listener);
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project, { n: 1 }));
      await leaving.waitFor(1);
      await staying.waitFor(1);
      await leave();
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project, { n: 2 }));
      await staying.waitFor(2);
      assert.equal(leaving.heard.length, 1);
      const counts = await harness().serverSubscriptions?.(channel);
      if (counts) assert.equal(counts.channel, 1);
    });

    it('calls one function subscribed twice twice, and once after one of its subscriptions left', async () => {
      const broker = await create();
      const project = uniqueProject();
      const channel = stageChannel(broker.prefix, project, 'rewrite');
      const rec = recorder();
      const first = await broker.subscribe(channel, rec.listener);
      await broker.subscribe(channel, rec.listener);
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      await rec.waitFor(2);
      await first();
      await first(); // idempotent: must not remove the second subscription
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      await rec.waitFor(3);
      const sentinel = recorder();
      await broker.subscribe(channel, sentinel.listener);
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      await sentinel.waitFor(1);
      await rec.waitFor(4);
      assert.equal(rec.heard.length, 4);
    });

    it('unsubscribes channel and pattern when their last listener leaves, and delivers nothing more to it', async () => {
      const broker = await create();
      const project = uniqueProject();
      const channel = stageChannel(broker.prefix, project, 'rewrite');
      const gone = recorder();
      const leaveChannel = await broker.subscribe(channel, gone.listener);
      const leavePattern = await broker.subscribe(projectPattern(broker.prefix, project), gone.listener, true);
      const before = await harness().serverSubscriptions?.(channel);
      if (before) assert.deepEqual(before, { channel: 1, patterns: 1 });
      await Promise.all([leaveChannel(), leavePattern()]);
      const after = await harness().serverSubscriptions?.(channel);
      if (after) assert.deepEqual(after, { channel: 0, patterns: 0 });
      // A sentinel on another channel, published after: once it arrives, the first message had its chance.
      const sentinel = recorder();
      await broker.subscribe(stageChannel(broker.prefix, project, 'other'), sentinel.listener);
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      await broker.publish(project, 'other', 'token', message('token', 'other', project));
      await sentinel.waitFor(1);
      assert.equal(gone.heard.length, 0);
    });

    it('keeps other listeners hearing when one listener throws', async () => {
      const broker = await create();
      const project = uniqueProject();
      const channel = stageChannel(broker.prefix, project, 'rewrite');
      const rec = recorder();
      const thrown: unknown[] = [];
      const original = console.error;
      console.error = (...args: unknown[]) => void thrown.push(args);
      try {
        await broker.subscribe(channel, () => {
          throw new Error('listener bug');
        });
        await broker.subscribe(channel, rec.listener);
        await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
        await rec.waitFor(1);
      } finally {
        console.error = original;
      }
      assert.equal(thrown.length, 1);
    });

    it('refuses invalid project ids, stage names and messages before they reach the broker', async () => {
      const broker = await create();
      const project = uniqueProject();
      const ok = message('token', 'rewrite', project);
      for (const [projectId, stage, type, text] of [
        ['bad id', 'rewrite', 'token', ok],
        ['p*', 'rewrite', 'token', ok],
        [project, 'a:b', 'token', ok],
        [project, 'x'.repeat(65), 'token', ok],
        [project, 'rewrite', 'bad type', ok],
        [project, 'rewrite', 'a|b', ok],
        [project, 'rewrite', 'token', ' {"type":"token"}'],
        [project, 'rewrite', 'token', '["token"]'],
        [project, 'rewrite', 'token', '{"type":'],
        [project, 'rewrite', 'token', '{"id":"1-0","type":"token"}'],
        [project, 'rewrite', 'token', '{"type":"token","\\u0069d":"1-0"}'],
        // Names of an object's internals: as keys of a snapshot they would rewrite every object of the process.
        ['__proto__', 'rewrite', 'token', ok],
        ['constructor', 'rewrite', 'token', ok],
        [project, '__proto__', 'token', ok],
        [project, 'prototype', 'token', ok],
        [project, 'rewrite', '__proto__', message('__proto__', 'rewrite', project)],
        [project, 'rewrite', 'constructor', message('constructor', 'rewrite', project)],
        [project, 'rewrite', 'prototype', message('prototype', 'rewrite', project)],
      ] as const) {
        await assert.rejects(broker.publish(projectId, stage, type, text), InvalidArgumentError, `${projectId} ${stage} ${type} ${text}`);
      }
      assert.deepEqual(await broker.snapshot(project), { lastId: null, stages: stagesOf() });
    });

    it('accepts an "id" below the top level of a message, and "id" as a value or in a text', async () => {
      const broker = await create();
      const project = uniqueProject();
      for (const fields of [{ metadata: { id: 'x' } }, { full_text: 'the "id" \u0069s a word' }, { item_name: 'id' }, { list: [{ id: 1 }] }]) {
        const id = await broker.publish(project, 'rewrite', 'done', message('done', 'rewrite', project, fields));
        assert.ok(broker.isId(id), JSON.stringify(fields));
      }
    });

    it('keeps a 5,000-token answer linear: no log entry or channel message holds full_text, and texts() holds the whole text', async () => {
      const broker = await create({ logMaxLen: 10_000 });
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(stageChannel(broker.prefix, project, 'rewrite'), rec.listener);
      let text = '';
      const ids: string[] = [];
      for (let i = 0; i < 5000; i++) {
        const piece = i % 7 === 0 ? ` 词${i}` : ` w${i}`;
        ids.push(await publishPiece(broker, project, 'rewrite', piece, text.length));
        text += piece;
      }
      await rec.waitFor(5000, 30_000);
      const live = rec.payloads().map((payload) => JSON.parse(payload) as Record<string, unknown>);
      assert.equal(live.filter((m) => 'full_text' in m).length, 0);
      assert.deepEqual(live.slice(0, 2).map((m) => [m.id, m.content, m.offset]), [[ids[0], ' 词0', 0], [ids[1], ' w1', 3]]);
      assert.ok(rec.payloads()[4999]!.endsWith(`,"content":" w4999","offset":${text.length - 6}}`), rec.payloads()[4999]);
      const stored = (await harness().storedLog?.(broker, project)) ?? (await broker.replay(project, ids[0]!, { limit: 5000 })).entries.map((e) => e.data);
      assert.ok(stored.length >= 4999, `${stored.length} log entries`);
      assert.equal(stored.filter((data) => data.includes('"full_text"')).length, 0);
      assert.deepEqual(await broker.texts(project, 'rewrite'), new Map([['rewrite', { text, id: ids.at(-1) }]]));
      assert.deepEqual(await broker.texts(project, null), new Map([['rewrite', { text, id: ids.at(-1) }]]));
    });

    it('counts mixed-width text in UTF-16 code units, as JavaScript does: Chinese, emoji and ASCII pieces all continue', async () => {
      const broker = await create();
      const project = uniqueProject();
      const pieces = ['从前', '😀', ' once', '有一座山😀😀', '', 'é\u0301 ok', '🇫🇷', '\n"quoted"'];
      let text = '';
      let id = '';
      for (const piece of pieces) {
        id = await publishPiece(broker, project, 'rewrite', piece, text.length);
        text += piece;
      }
      assert.deepEqual(await broker.texts(project, 'rewrite'), new Map([['rewrite', { text, id }]]));
      // An offset in UTF-8 bytes or in code points does not continue it.
      const bytes = Buffer.byteLength(text);
      const codePoints = [...text].length;
      for (const wrong of [bytes, codePoints]) {
        await assert.rejects(publishPiece(broker, project, 'rewrite', 'x', wrong), (error: unknown) => {
          assert.ok(error instanceof TokenOffsetError, String(error));
          assert.deepEqual([error.stage, error.expected, error.got], ['rewrite', text.length, wrong]);
          return true;
        });
      }
      await publishPiece(broker, project, 'rewrite', '!', text.length);
    });

    it('starts a stage over at offset 0, and keeps the texts of stages apart', async () => {
      const broker = await create();
      const project = uniqueProject();
      await publishPiece(broker, project, 'rewrite', 'abc', 0);
      await publishPiece(broker, project, 'rewrite', 'def', 3);
      const other = await publishPiece(broker, project, 'storyboard', 'scene 1', 0);
      const restart = await publishPiece(broker, project, 'rewrite', 'X', 0);
      assert.deepEqual(
        await broker.texts(project, null),
        new Map([
          ['rewrite', { text: 'X', id: restart }],
          ['storyboard', { text: 'scene 1', id: other }],
        ]),
      );
      assert.deepEqual(await broker.texts(project, 'storyboard'), new Map([['storyboard', { text: 'scene 1', id: other }]]));
      assert.deepEqual(await broker.texts(project, 'image_generation'), new Map());
    });

    it('refuses a token whose offset does not continue the text with TokenOffsetError, and logs and publishes nothing', async () => {
      const broker = await create();
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(projectPattern(broker.prefix, project), rec.listener, true);
      await assert.rejects(publishPiece(broker, project, 'rewrite', 'lost', 4), { name: 'TokenOffsetError', expected: 0, got: 4 });
      const first = await publishPiece(broker, project, 'rewrite', 'Once', 0);
      const second = await publishPiece(broker, project, 'rewrite', ' upon', 4);
      const before = await broker.snapshot(project);
      for (const [piece, offset, expected] of [[' a', 4, 9], [' a', 10, 9], [' upon', 4, 9]] as const) {
        await assert.rejects(publishPiece(broker, project, 'rewrite', piece, offset), (error: unknown) => {
          assert.ok(error instanceof TokenOffsetError, String(error));
          assert.deepEqual([error.expected, error.got], [expected, offset]);
          assert.match(error.message, /token offset \d+ does not continue the text of stage "rewrite", which has 9 UTF-16 code units/);
          return true;
        });
      }
      assert.deepEqual(await broker.snapshot(project), before);
      assert.deepEqual(await broker.replay(project, second), { covered: true, entries: [], more: false });
      assert.deepEqual(await broker.texts(project, 'rewrite'), new Map([['rewrite', { text: 'Once upon', id: second }]]));
      // A sentinel published after: once it arrives, a refused token had its chance to be heard.
      const sentinel = await publishPiece(broker, project, 'rewrite', ' a', 9);
      await rec.waitFor(3);
      assert.deepEqual(rec.heard.map((h) => JSON.parse(h.payload).id), [first, second, sentinel]);
    });

    it('refuses a piece that is no piece with InvalidArgumentError before it reaches the broker', async () => {
      const broker = await create();
      const project = uniqueProject();
      for (const [content, offset, wholeText] of [
        ['a', -1, undefined],
        ['a', 1.5, undefined],
        ['a', Number.NaN, undefined],
        [42 as unknown as string, 0, undefined],
        ['a', 1, 'xya'], // the whole text must hold the piece at its offset
        ['a', 0, 'xyb'],
      ] as const) {
        await assert.rejects(publishPiece(broker, project, 'rewrite', content, offset, wholeText), InvalidArgumentError, `${content} ${offset} ${wholeText}`);
      }
      assert.deepEqual(await broker.snapshot(project), { lastId: null, stages: stagesOf() });
      assert.deepEqual(await broker.texts(project, null), new Map());
    });

    it('sets the text to wholeText when a publisher joins a stage mid-run, whatever it held before', async () => {
      const broker = await create();
      const project = uniqueProject();
      await publishPiece(broker, project, 'rewrite', 'written by a worker that died', 0);
      // A retried task: its text so far differs, and it continues at its own offset.
      const joined = await publishPiece(broker, project, 'rewrite', ' 😀', 'Once upon a time'.length, 'Once upon a time 😀');
      assert.deepEqual(await broker.texts(project, 'rewrite'), new Map([['rewrite', { text: 'Once upon a time 😀', id: joined }]]));
      // A stage nobody wrote yet, too.
      await publishPiece(broker, project, 'storyboard', 'b', 1, 'ab');
      const next = await publishPiece(broker, project, 'rewrite', '!', 'Once upon a time 😀'.length);
      assert.equal((await broker.texts(project, 'rewrite')).get('rewrite')?.text, 'Once upon a time 😀!');
      assert.deepEqual((await broker.texts(project, 'storyboard')).get('storyboard')?.text, 'ab');
      assert.equal((await broker.texts(project, 'rewrite')).get('rewrite')?.id, next);
    });

    it('replays and snapshots linear tokens like any message, byte for byte as the live channel carried them', async () => {
      const broker = await create();
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(projectPattern(broker.prefix, project), rec.listener, true);
      const ids = [
        await broker.publish(project, 'rewrite', 'stage_update', message('stage_update', 'rewrite', project, { status: 'processing' })),
        await publishPiece(broker, project, 'rewrite', 'Once', 0),
        // A token in the original format, as an older worker writes it, between linear ones.
        await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project, { content: ' upon', full_text: 'Once upon' })),
        await publishPiece(broker, project, 'rewrite', ' 从前', 4),
      ];
      await rec.waitFor(4);
      const live = rec.payloads();
      assert.deepEqual((await broker.replay(project, ids[0]!)).entries, ids.slice(1).map((id, i) => ({ id, stage: 'rewrite', data: live[i + 1] })));
      assert.deepEqual(await broker.snapshot(project), {
        lastId: ids[3],
        stages: stagesOf({ rewrite: { stage_update: live[0]!, token: live[3]! } }),
      });
      // The original-format token is logged as it is and leaves the linear text alone.
      assert.equal((await broker.texts(project, 'rewrite')).get('rewrite')?.text, 'Once 从前');
    });

    it('reads no texts for ids that break the id rule, and none for a project without linear tokens', async () => {
      const broker = await create();
      const project = uniqueProject();
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project, { content: 'a', full_text: 'a' }));
      assert.deepEqual(await broker.texts(project, null), new Map());
      assert.deepEqual(await broker.texts(project, 'rewrite'), new Map());
      await publishPiece(broker, project, 'rewrite', 'a', 0);
      for (const [projectId, stage] of [['not a project*', null], ['__proto__', null], [project, 'a:b'], [project, '__proto__'], [project, '*']] as const) {
        assert.deepEqual(await broker.texts(projectId, stage), new Map(), `${projectId} ${stage}`);
      }
    });

    it('answers ping and is healthy while open; after close it rejects every call with BrokerClosedError', async () => {
      const broker = await create();
      await broker.ping();
      assert.equal(broker.healthy, true);
      await broker.close();
      await broker.close(); // idempotent
      assert.equal(broker.healthy, false);
      const project = uniqueProject();
      await assert.rejects(broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project)), BrokerClosedError);
      await assert.rejects(broker.subscribe(stageChannel(broker.prefix, project, 'rewrite'), () => {}), BrokerClosedError);
      await assert.rejects(broker.ping(), BrokerClosedError);
      await assert.rejects(publishPiece(broker, project, 'rewrite', 'a', 0), BrokerClosedError);
      await assert.rejects(broker.texts(project, null), BrokerClosedError);
    });

    it('leaves no socket or timer behind after close', async () => {
      const before = handles();
      const broker = await create();
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(projectPattern(broker.prefix, project), rec.listener, true);
      await broker.publish(project, 'rewrite', 'token', message('token', 'rewrite', project));
      await rec.waitFor(1);
      await broker.replay(project, '1-0');
      await broker.snapshot(project);
      await publishPiece(broker, project, 'rewrite', 'a', 0);
      await broker.texts(project, null);
      await broker.close();
      assert.deepEqual(handles(), before);
    });
  });
}

/** Open sockets and pending timers of this process, by kind. */
function handles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) if (/TCP|Timeout/.test(kind)) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

