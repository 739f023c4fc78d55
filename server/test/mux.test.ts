/**
 * The multiplexed stream end to end (protocol/mux.ts): one connection, many subscriptions added and removed on it
 * while publishers run, each exact like a stream of its own; real HTTP, a real redis-server, the real publisher.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { MUX_CONNECTION_HEADER, MUX_ROUTES, newConnectionId } from '../../protocol/mux.js';
import { signToken } from '../src/http/auth.js';
import { StreamPublisher } from '../src/publisher.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { TRANSPORTS, control, openMux, type MuxReader, type Transport } from './mux-reader.js';
import { openStream, requestJson, type ReceivedEvent, type StreamReader } from './sse-reader.js';
import { waitUntil } from './wait-until.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long';
const MAX_SUBSCRIPTIONS = 16;
const HEARTBEAT_MS = 150;

let h: Harness;
/** Public streams off, two streams per client: the authorization and limit rules. */
let closed: Harness;
let inspector: Redis;
const open: StreamReader[] = [];

before(async () => {
  [h, closed] = await Promise.all([
    startHarness({ settings: { authSecret: SECRET, maxSubscriptions: MAX_SUBSCRIPTIONS, heartbeatMs: HEARTBEAT_MS } }),
    startHarness({ settings: { authSecret: SECRET, publicStreams: false, maxStreamsPerClient: 2 } }),
  ]);
  inspector = new Redis(h.redis!.url);
});
after(async () => {
  for (const reader of open) reader.close();
  await inspector.quit();
  await Promise.all([h.close(), closed.close()]);
});

/** The transport the suites over both transports run on now (see the end of the file); the others use HTTP. */
let transport: Transport = 'sse';

async function connect(base = h.url, options: Parameters<typeof openMux>[1] = {}): Promise<MuxReader> {
  // The closed server allows two streams per client: the connections of the tests before must be gone.
  if (base === closed.url) await waitUntil(() => closed.server.hub.size === 0, 'no stream left on the closed server');
  const reader = await openMux(base, 'connection' in options ? options : { ...options, transport });
  open.push(reader);
  return reader;
}

function publisher(projectId: string, stage: string, harness = h): StreamPublisher {
  return new StreamPublisher({ projectId, stage, broker: harness.broker });
}

const token = (projects: string[], ttlSeconds = 3600) => signToken(SECRET, projects, ttlSeconds);

async function metric(name: string, harness = h): Promise<number> {
  const text = await (await fetch(`${harness.url}/metrics`)).text();
  const value = new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1];
  if (value === undefined) throw new Error(`no ${name} in /metrics`);
  return Number(value);
}

/** The events of one subscription after its `connected`, without the markers. */
const payloadOf = (events: ReceivedEvent[]) => events.filter((e) => !['connected', 'snapshot', 'unsubscribed', 'token_expired'].includes(e.event));

/** Numbered progress messages: `current` counts per stage from 0. */
const numbered = (events: ReceivedEvent[], stage: string) => payloadOf(events).filter((e) => e.json?.stage === stage).map((e) => e.json?.current as number);

/** Log ids strictly increase (ms-seq ids compared as numbers). */
function assertIncreasing(ids: (string | undefined)[], what: string): void {
  const key = (id: string) => id.split('-').map(Number) as [number, number];
  for (let i = 1; i < ids.length; i++) {
    const [a, b] = [key(ids[i - 1]!), key(ids[i]!)];
    assert.ok(a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]), `${what}: ${ids[i - 1]} then ${ids[i]}`);
  }
}

function assertContiguous(values: number[], what: string, from?: number): void {
  const start = from ?? values[0] ?? 0;
  assert.deepEqual(values, Array.from({ length: values.length }, (_, i) => start + i), what);
}

describe('a multiplexed connection', () => {
  it('opens with the SSE headers, retry and a connection event; the server picks an id when none is given', async () => {
    const reader = await connect(h.url, { connection: null });
    assert.equal(reader.status, 200);
    assert.equal(reader.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal(reader.headers.get('x-accel-buffering'), 'no');
    assert.match(reader.raw, /^retry: \d+\n\nevent: connection\n/);
    const first = reader.events[0]!;
    assert.deepEqual({ ...first.json, connection: 'x', timestamp: 0 }, { type: 'connection', connection: 'x', max_subscriptions: MAX_SUBSCRIPTIONS, timestamp: 0 });
    assert.match(reader.connection, /^[A-Za-z0-9_-]{22}$/);
    // The id it chose names the connection in control requests.
    const answer = await reader.subscribe({ subscription: 'a', project_id: 'm0' });
    assert.equal(answer.status, 200);
    reader.close();
  });

  it('takes its id from ?connection= too, and refuses a malformed one (400) and one already open (409)', async () => {
    const id = newConnectionId();
    const byQuery = await openStream(`${h.url}${MUX_ROUTES.stream}?connection=${id}`);
    open.push(byQuery);
    assert.equal((await byQuery.waitFor((e) => e.event === 'connection')).json?.connection, id);
    const again = await requestJson(h.url + MUX_ROUTES.stream, { headers: { [MUX_CONNECTION_HEADER]: id } });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'connection_exists');
    const malformed = await requestJson(h.url + MUX_ROUTES.stream, { headers: { [MUX_CONNECTION_HEADER]: 'short' } });
    assert.equal(malformed.status, 400);
    assert.match(malformed.body.error.message, /SSE-Connection/);
    byQuery.close();
    // Once it is gone, the id is free again.
    await waitUntil(() => h.server.hub.connection(id) === undefined, 'the connection is gone');
    const reused = await connect(h.url, { connection: id });
    assert.equal(reused.connection, id);
    reused.close();
  });

  it('carries many subscriptions in a mix of projects and stages, each tagged last, with the log id as id:', async () => {
    const reader = await connect();
    const answer = await reader.subscribe({
      subscriptions: [
        { subscription: 'p:m1', project_id: 'm1' },
        { subscription: 's:m1.rewrite', project_id: 'm1', stage: 'rewrite' },
        { subscription: 's:m1.image', project_id: 'm1', stage: 'image' },
        { subscription: 'p:m2', project_id: 'm2', stage: null },
        { subscription: 's:m3.rewrite', project_id: 'm3', stage: 'rewrite', compact: true },
      ],
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(
      answer.body.results.map((r: any) => [r.subscription, r.ok, r.status, r.renewed, r.expires_at]),
      [
        ['p:m1', true, 200, false, null],
        ['s:m1.rewrite', true, 200, false, null],
        ['s:m1.image', true, 200, false, null],
        ['p:m2', true, 200, false, null],
        ['s:m3.rewrite', true, 200, false, null],
      ],
    );
    // Answered once joined: whatever is published now reaches each of them.
    await using rewrite = publisher('m1', 'rewrite');
    await using image = publisher('m1', 'image');
    await using other = publisher('m2', 'x');
    await using third = publisher('m3', 'rewrite');
    const ids = {
      r1: await rewrite.publishToken('a', 'a'),
      i1: await image.publishProgress(1, 2, 'one.png'),
      o1: await other.publishStageUpdate('processing', 10),
      t1: await third.publishToken('x', 'x'),
      t2: await third.publishToken('y', 'xy'),
    };
    await inspector.publish('ai_story:project:m1:stage:rewrite', 'not json\nid: 9');
    const last = await rewrite.publishDone('a', {});
    await reader.waitFor((e) => e.id === last && e.json?.subscription === 's:m1.rewrite');
    await reader.waitFor((e) => e.id === last && e.json?.subscription === 'p:m1');

    const seen = (subscription: string) => payloadOf(reader.of(subscription)).map((e) => `${e.event}:${e.id ?? ''}`);
    assert.deepEqual(seen('p:m1'), [`token:${ids.r1}`, `progress:${ids.i1}`, 'message:', `done:${last}`]);
    assert.deepEqual(seen('s:m1.rewrite'), [`token:${ids.r1}`, 'message:', `done:${last}`]);
    assert.deepEqual(seen('s:m1.image'), [`progress:${ids.i1}`]);
    assert.deepEqual(seen('p:m2'), [`stage_update:${ids.o1}`]);
    assert.deepEqual(seen('s:m3.rewrite'), [`token:${ids.t1}`, `token:${ids.t2}`]);
    // Each begins with its own connected, tagged.
    for (const id of ['p:m1', 's:m1.rewrite', 's:m1.image', 'p:m2', 's:m3.rewrite']) assert.equal(reader.of(id)[0]!.event, 'connected');

    // The tag is the last member of the data, appended to the single stream's bytes.
    const token = reader.events.find((e) => e.id === ids.r1 && e.json?.subscription === 's:m1.rewrite')!;
    assert.match(token.data, /^\{"id":"[^"]+","type":"token",.*"full_text":"a","subscription":"s:m1\.rewrite"\}$/);
    // A compact subscription gets compact tokens (its first whole), tagged.
    const compact = payloadOf(reader.of('s:m3.rewrite')).map((e) => e.json!);
    assert.deepEqual([compact[0]!.full_text, compact[1]!.offset, compact[1]!.full_text], ['x', 1, undefined]);
    // A payload that is not a JSON object goes as event message, its text under "raw".
    const raw = reader.of('p:m1').find((e) => e.event === 'message')!;
    assert.equal(raw.data, '{"raw":"not json\\nid: 9","subscription":"p:m1"}');
    reader.close();
  });

  it('sends heartbeats once per connection, not once per subscription', async () => {
    const reader = await connect();
    await reader.subscribe({ subscriptions: ['a', 'b', 'c', 'd'].map((subscription) => ({ subscription, project_id: `hb${subscription}` })) });
    const start = reader.comments.length;
    const began = performance.now();
    await reader.waitForComments(start + 3, 5000);
    await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS * 2));
    const pings = reader.comments.slice(start).filter((c) => c.text === 'ping').length;
    const intervals = (performance.now() - began) / HEARTBEAT_MS;
    assert.ok(pings <= intervals + 1, `${pings} pings in ${intervals.toFixed(1)} intervals`);
    reader.close();
  });

  it('counts as one stream in sse_streams_open, whatever its subscriptions', async () => {
    await waitUntil(() => h.server.hub.size === 0, 'no stream left from the tests before');
    const [a, b] = [await connect(), await connect()];
    for (const reader of [a, b]) {
      await reader.subscribe({ subscriptions: ['x', 'y', 'z'].map((subscription) => ({ subscription, project_id: `count${subscription}` })) });
    }
    assert.equal(await metric('sse_streams_open'), 2);
    assert.equal(await metric('sse_mux_subscriptions_open'), 6);
    await a.unsubscribe({ subscription: 'x' });
    assert.equal(await metric('sse_mux_subscriptions_open'), 5);
    a.close();
    b.close();
    await waitUntil(async () => (await metric('sse_streams_open')) === 0, 'both connections closed');
    assert.equal(await metric('sse_mux_subscriptions_open'), 0);
  });
});

// Every scenario of a connection's subscriptions, over both transports: the same tests, the same helpers.
for (const each of TRANSPORTS) {
describe(`over ${each}`, () => {
  // The second transport on servers of its own (fresh Redis logs): the projects of the tests are the same.
  let saved: [Harness, Harness] | undefined;
  before(async () => {
    transport = each;
    if (each === TRANSPORTS[0]) return;
    saved = [h, closed];
    [h, closed] = await Promise.all([
      startHarness({ settings: { authSecret: SECRET, maxSubscriptions: MAX_SUBSCRIPTIONS, heartbeatMs: HEARTBEAT_MS } }),
      startHarness({ settings: { authSecret: SECRET, publicStreams: false, maxStreamsPerClient: 2 } }),
    ]);
  });
  after(async () => {
    transport = 'sse';
    if (!saved) return;
    await Promise.all([h.close(), closed.close()]);
    [h, closed] = saved;
  });

describe('adding and removing subscriptions while publishers run', () => {
  it('never loses, repeats or reorders an event of any subscription, and resumes each churned one exactly', async () => {
    const projects = ['busy1', 'busy2', 'busy3'];
    const stages = ['rewrite', 'image'];
    const total = 300;
    const reader = await connect();
    // The untouched ones: subscribed before anything is published, never removed.
    const steady = [
      ...projects.map((project) => ({ subscription: `p:${project}`, project_id: project })),
      { subscription: `s:busy1.rewrite`, project_id: 'busy1', stage: 'rewrite' },
      { subscription: `s:busy2.image`, project_id: 'busy2', stage: 'image' },
    ];
    const answer = await reader.subscribe({ subscriptions: steady });
    assert.ok(answer.body.results.every((r: any) => r.ok), JSON.stringify(answer.body));

    // The counter each stage's publisher starts next: a subscription answered 200 must get every message from it.
    const next = new Map<string, number>();
    const publishers = projects.flatMap((project) => stages.map((stage) => ({ key: `${project}/${stage}`, pub: publisher(project, stage) })));
    let lastIds = new Map<string, string>();
    const publishing = Promise.all(
      publishers.map(async ({ key, pub }) => {
        for (let i = 0; i < total; i++) {
          next.set(key, i + 1);
          lastIds.set(key, await pub.publishProgress(i, total, key));
          if (i % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }),
    );

    // The churned ones: each scope subscribed, unsubscribed, and subscribed again with its cursor, over and over.
    const scopes = [
      { project: 'busy1', stage: null },
      { project: 'busy2', stage: 'rewrite' },
      { project: 'busy3', stage: 'image' },
      { project: 'busy3', stage: null },
    ];
    const churned = scopes.map((scope, n) => ({ ...scope, id: `churn${n}`, cursor: undefined as string | undefined, firstAllowed: [] as { stages: Map<string, number> }[] }));
    let rounds = 0;
    let done = false;
    void publishing.then(() => (done = true));
    while (!done) {
      rounds++;
      await Promise.all(
        churned.map(async (churn) => {
          const result = await reader.subscribe({
            subscription: churn.id,
            project_id: churn.project,
            stage: churn.stage,
            snapshot: false,
            ...(churn.cursor === undefined ? {} : { last_event_id: churn.cursor }),
          });
          assert.equal(result.status, 200, JSON.stringify(result.body));
          churn.firstAllowed.push({ stages: new Map(stages.map((stage) => [stage, next.get(`${churn.project}/${stage}`) ?? 0])) });
          await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
          const removed = await reader.unsubscribe({ subscription: churn.id });
          assert.deepEqual(removed.body, { unsubscribed: [churn.id], unknown: [] });
          // The cursor: the last event of the incarnation that just ended, once its `unsubscribed` came.
          const ended = churn.firstAllowed.length;
          await waitUntil(() => reader.of(churn.id).filter((e) => e.event === 'unsubscribed').length === ended, `${churn.id} unsubscribed`);
          const events = reader.of(churn.id);
          assert.equal(events.at(-1)!.event, 'unsubscribed');
          const withId = events.filter((e) => e.id !== undefined);
          churn.cursor = withId.at(-1)?.id ?? churn.cursor;
        }),
      );
    }
    await publishing;
    // A last incarnation of each churned scope catches up to the end.
    for (const churn of churned) {
      const result = await reader.subscribe({ subscription: churn.id, project_id: churn.project, stage: churn.stage, snapshot: false, last_event_id: churn.cursor });
      assert.equal(result.status, 200);
    }
    for (const churn of churned) {
      // Its last `connected` first: an incarnation before may have had the last ids already.
      await waitUntil(() => reader.of(churn.id).filter((e) => e.event === 'connected').length === rounds + 1, `${churn.id} connected again`);
      for (const stage of churn.stage ? [churn.stage] : stages) {
        await reader.waitFor((e) => e.json?.subscription === churn.id && e.id === lastIds.get(`${churn.project}/${stage}`), 20_000);
      }
    }
    for (const { subscription, project_id: project, stage } of steady as { subscription: string; project_id: string; stage?: string }[]) {
      for (const each of stage ? [stage] : stages) {
        await reader.waitFor((e) => e.json?.subscription === subscription && e.id === lastIds.get(`${project}/${each}`), 20_000);
      }
    }
    assert.ok(rounds >= 3, `only ${rounds} rounds of churn`);

    // The untouched ones: every message of their scope, once, in order.
    for (const { subscription, stage } of steady as { subscription: string; stage?: string }[]) {
      const events = reader.of(subscription);
      assert.equal(events.filter((e) => e.event === 'connected').length, 1, subscription);
      assertIncreasing(payloadOf(events).map((e) => e.id), subscription);
      for (const each of stage ? [stage] : stages) assertContiguous(numbered(events, each), `${subscription} ${each}`, 0);
      assert.equal(payloadOf(events).length, (stage ? 1 : stages.length) * total, subscription);
    }
    // The churned ones: each incarnation in order with no gap, and from the first incarnation on, the concatenation
    // of all of them is every message once (each resumed after the last id the one before got).
    for (const churn of churned) {
      const events = reader.of(churn.id);
      const incarnations: ReceivedEvent[][] = [];
      for (const event of events) {
        if (event.event === 'connected') incarnations.push([]);
        else if (event.event !== 'unsubscribed') incarnations.at(-1)!.push(event);
      }
      assert.equal(incarnations.length, rounds + 1, churn.id);
      // Nothing of an incarnation after its unsubscribed: each unsubscribed is followed by a connected or nothing.
      events.forEach((event, i) => {
        if (event.event === 'unsubscribed') assert.ok(i === events.length - 1 || events[i + 1]!.event === 'connected', `${churn.id}: an event after unsubscribed`);
      });
      const all = incarnations.flat();
      assertIncreasing(all.map((e) => e.id), churn.id);
      // From the first incarnation that got anything, each later one resumed after the last id the one before got.
      const first = incarnations.findIndex((events) => events.length > 0);
      for (const stage of churn.stage ? [churn.stage] : stages) {
        const values = all.filter((e) => e.json?.stage === stage).map((e) => e.json?.current as number);
        assert.ok(values.length > 0, `${churn.id} ${stage}: nothing`);
        assertContiguous(values, `${churn.id} ${stage}`);
        assert.equal(values.at(-1), total - 1, `${churn.id} ${stage} reaches the end`);
        // The first incarnation started no later than the first message published after its 200.
        assert.ok(values[0]! <= churn.firstAllowed[first]!.stages.get(stage)!, `${churn.id} ${stage}: starts at ${values[0]}`);
      }
    }
    for (const { pub } of publishers) await pub.close();
    reader.close();
  });

  it('resumes every subscription exactly after the connection ends (cut, then the client closes), each from its own cursor', async () => {
    const total = 200;
    const scopes = [
      { subscription: 'p:cut1', project_id: 'cut1' },
      { subscription: 's:cut1.rewrite', project_id: 'cut1', stage: 'rewrite' },
      { subscription: 'p:cut2', project_id: 'cut2' },
      { subscription: 's:cut3.image', project_id: 'cut3', stage: 'image', compact: true },
    ];
    const streams = [
      { project: 'cut1', stage: 'rewrite' },
      { project: 'cut1', stage: 'image' },
      { project: 'cut2', stage: 'rewrite' },
      { project: 'cut3', stage: 'image' },
    ].map((s) => ({ ...s, pub: publisher(s.project, s.stage), ids: [] as string[] }));
    const received = new Map<string, ReceivedEvent[]>(scopes.map((s) => [s.subscription, []]));
    const cursors = new Map<string, string | undefined>();

    let reader = await connect();
    await reader.subscribe({ subscriptions: scopes.map((s) => ({ ...s, snapshot: false })) });
    const publishing = Promise.all(
      streams.map(async (s) => {
        let text = '';
        for (let i = 0; i < total; i++) {
          s.ids.push(await s.pub.publishToken(` ${i}`, (text += ` ${i}`)));
          if (i % 5 === 0) await new Promise((resolve) => setTimeout(resolve, 2));
        }
      }),
    );
    const collect = (from: MuxReader) => {
      for (const { subscription } of scopes) {
        const events = payloadOf(from.of(subscription));
        received.get(subscription)!.push(...events);
        cursors.set(subscription, events.filter((e) => e.id).at(-1)?.id ?? cursors.get(subscription));
      }
    };

    // First end: the demo's cut of one project ends the whole connection.
    for (const { subscription } of scopes) await reader.waitFor((e) => e.json?.subscription === subscription && e.event === 'token');
    await waitUntil(() => streams.every((s) => s.ids.length > 30), 'some of each published');
    const cut = await requestJson(`${h.url}/api/v1/demo/projects/cut1/cut/`, { method: 'POST', headers: { 'Content-Type': 'application/json' } });
    assert.equal(cut.body.cut, 1, 'one HTTP stream cut');
    await reader.ended;
    collect(reader);

    // Second end: the client goes away itself.
    reader = await connect();
    await reader.subscribe({ subscriptions: scopes.map((s) => ({ ...s, last_event_id: cursors.get(s.subscription) })) });
    await waitUntil(() => streams.every((s) => s.ids.length > 120), 'more of each published');
    reader.close();
    await reader.ended;
    collect(reader);

    await publishing;
    reader = await connect();
    await reader.subscribe({ subscriptions: scopes.map((s) => ({ ...s, last_event_id: cursors.get(s.subscription) })) });
    for (const { subscription, project_id, stage } of scopes) {
      for (const s of streams.filter((s) => s.project === project_id && (stage === undefined || s.stage === stage))) {
        await reader.waitFor((e) => e.json?.subscription === subscription && e.id === s.ids.at(-1));
      }
    }
    collect(reader);
    for (const { subscription, project_id, stage } of scopes) {
      const mine = streams.filter((s) => s.project === project_id && (stage === undefined || s.stage === stage));
      const expected = mine.flatMap((s) => s.ids).sort((a, b) => (a.split('-').map(Number) as number[]).reduce((d, x, i) => d || x - Number(b.split('-')[i]), 0));
      assert.deepEqual(received.get(subscription)!.map((e) => e.id), expected, subscription);
      // And the texts are whole (a compact one's first token after each resume whole, then pieces that continue it).
      for (const s of mine) {
        const tokens = received.get(subscription)!.filter((e) => e.json?.stage === s.stage);
        let text = '';
        for (const [i, t] of tokens.entries()) {
          text = typeof t.json!.full_text === 'string' ? t.json!.full_text : text.slice(0, t.json!.offset as number) + t.json!.content;
          assert.ok(text.endsWith(` ${i}`), `${subscription}: token ${i}`);
        }
      }
    }
    for (const s of streams) await s.pub.close();
    reader.close();
  });

  it('answers a cursor the log does not hold with a reset carrying the current state, then goes live', async () => {
    await using pub = publisher('reset1', 'rewrite');
    await pub.publishStageUpdate('processing', 40);
    const reader = await connect();
    await reader.subscribe({ subscription: 'r', project_id: 'reset1', last_event_id: '1-0' });
    const reset = await reader.waitFor((e) => e.event === 'reset' && e.json?.subscription === 'r');
    assert.equal(reset.json?.reason, 'expired', 'the log does not hold that id (it has history)');
    assert.equal((reset.json?.stages as any).rewrite.stage_update.progress, 40);
    const next = await pub.publishProgress(1, 2, 'frame');
    await reader.waitFor((e) => e.id === next && e.json?.subscription === 'r');
    reader.close();
  });

  it('starts a new subscription without a cursor with a snapshot of its scope (unless snapshot: false)', async () => {
    await using pub = publisher('snap1', 'rewrite');
    await pub.publishStageUpdate('processing', 10);
    await pub.publishToken('Once', 'Once');
    const lastId = await pub.publishToken(' upon', 'Once upon');
    const reader = await connect();
    await reader.subscribe({ subscriptions: [{ subscription: 'with', project_id: 'snap1' }, { subscription: 'without', project_id: 'snap1', snapshot: false }] });
    const next = await pub.publishToken(' a time', 'Once upon a time');
    await reader.waitFor((e) => e.id === next && e.json?.subscription === 'without');
    await reader.waitFor((e) => e.id === next && e.json?.subscription === 'with');
    const withSnapshot = reader.of('with');
    assert.deepEqual(withSnapshot.map((e) => e.event), ['connected', 'snapshot', 'token']);
    assert.equal(withSnapshot[1]!.id, lastId);
    assert.equal((withSnapshot[1]!.json?.stages as any).rewrite.text, 'Once upon');
    assert.equal(withSnapshot[1]!.json?.subscription, 'with');
    assert.deepEqual(reader.of('without').map((e) => e.event), ['connected', 'token']);
    reader.close();
  });
});

describe('authorization, per subscription', () => {
  it('takes each item’s token, else the request’s bearer token; a token for A cannot add B; a bad one is 401, never public', async () => {
    const reader = await connect(closed.url);
    const forA = await token(['authA']);
    const refused = await reader.subscribe({ subscription: 'b', project_id: 'authB', token: forA });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, 'forbidden');
    const bad = await reader.subscribe({ subscription: 'a', project_id: 'authA', token: 'not.a.jwt' });
    assert.equal(bad.status, 401);
    assert.equal(bad.body.error.code, 'unauthorized');
    // A bad Authorization header is a bad token, not "no token".
    // Over HTTP a header that is not a bearer token is a bad token; a WebSocket has no such header.
    const notBearer = transport === 'sse' ? await reader.subscribe({ subscription: 'a', project_id: 'authA' }, { Authorization: 'Basic eDp5' }) : bad;
    assert.equal(notBearer.status, 401);
    const byHeader = await reader.subscribe({ subscription: 'a', project_id: 'authA' }, { Authorization: `Bearer ${forA}` });
    assert.equal(byHeader.status, 200);
    assert.equal(byHeader.body.expires_at, JSON.parse(Buffer.from(forA.split('.')[1]!, 'base64url').toString()).exp);
    // The item's token wins over the header's.
    const own = await reader.subscribe({ subscription: 'b', project_id: 'authB', token: await token(['authB']) }, { Authorization: `Bearer ${forA}` });
    assert.equal(own.status, 200);
    reader.close();
  });

  it('answers a batch item by item: one bad token does not fail the others', async () => {
    const reader = await connect(closed.url);
    const answer = await reader.subscribe({
      subscriptions: [
        { subscription: 'bad', project_id: 'batch1', token: 'nope' },
        { subscription: 'good', project_id: 'batch1', token: await token(['batch1']) },
        { subscription: 'public', project_id: 'batch1' },
        { subscription: 'x y', project_id: 'batch1' },
      ],
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(
      answer.body.results.map((r: any) => [r.subscription, r.status, r.error?.code]),
      [
        ['bad', 401, 'unauthorized'],
        ['good', 200, undefined],
        ['public', 403, 'disabled'],
        ['x y', 400, 'invalid_id'],
      ],
    );
    await using pub = publisher('batch1', 'rewrite', closed);
    const id = await pub.publishToken('hi', 'hi');
    await reader.waitFor((e) => e.id === id && e.json?.subscription === 'good');
    assert.deepEqual(reader.events.slice(1).map((e) => e.json?.subscription), ['good', 'good']);
    reader.close();
  });

  it('opens the connection with public streams off, and refuses tokenless subscriptions there (403)', async () => {
    const reader = await connect(closed.url);
    const answer = await reader.subscribe({ subscription: 'a', project_id: 'pub1' });
    assert.equal(answer.status, 403);
    assert.equal(answer.body.error.code, 'disabled');
    reader.close();
  });

  it('ends one subscription at its token’s expiry (token_expired), renews another, and leaves the rest streaming', async () => {
    const reader = await connect();
    const short = await token(['exp1'], 2);
    await reader.subscribe({
      subscriptions: [
        { subscription: 'expiring', project_id: 'exp1', token: short },
        { subscription: 'renewed', project_id: 'exp1', token: short },
        { subscription: 'public', project_id: 'exp1' },
      ],
    });
    const renew = await reader.subscribe({ subscription: 'renewed', project_id: 'exp1', token: await token(['exp1'], 3600) });
    assert.equal(renew.status, 200);
    assert.equal(renew.body.renewed, true);
    assert.ok(renew.body.expires_at > Date.now() / 1000 + 3000);
    const expired = await reader.waitFor((e) => e.event === 'token_expired', 5000);
    assert.deepEqual({ ...expired.json, timestamp: 0 }, { type: 'token_expired', project_id: 'exp1', stage: null, timestamp: 0, subscription: 'expiring' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await using pub = publisher('exp1', 'rewrite');
    const id = await pub.publishToken('after', 'after');
    await reader.waitFor((e) => e.id === id && e.json?.subscription === 'public');
    await reader.waitFor((e) => e.id === id && e.json?.subscription === 'renewed');
    assert.equal(reader.events.filter((e) => e.event === 'token_expired').length, 1);
    assert.equal(reader.of('expiring').at(-1)!.event, 'token_expired');
    // The renew sent nothing: one connected each.
    assert.equal(reader.of('renewed').filter((e) => e.event === 'connected').length, 1);
    // Gone from the connection: the id is free.
    assert.deepEqual((await reader.unsubscribe({ subscriptions: ['expiring'] })).body, { unsubscribed: [], unknown: ['expiring'] });
    reader.close();
  });
});

describe('unsubscribe', () => {
  it('ends a subscription with unsubscribed, after which nothing of it comes, and leaves the others untouched', async () => {
    const reader = await connect();
    await reader.subscribe({ subscriptions: [{ subscription: 'gone', project_id: 'un1' }, { subscription: 'stays', project_id: 'un1', stage: 'rewrite' }] });
    await using pub = publisher('un1', 'rewrite');
    const before = await pub.publishToken('a', 'a');
    await reader.waitFor((e) => e.id === before && e.json?.subscription === 'gone');
    const answer = await reader.unsubscribe({ subscriptions: ['gone', 'never'] });
    assert.deepEqual(answer.body, { unsubscribed: ['gone'], unknown: ['never'] });
    const afterId = await pub.publishToken('b', 'ab');
    await reader.waitFor((e) => e.id === afterId && e.json?.subscription === 'stays');
    const gone = reader.of('gone');
    assert.deepEqual(gone.map((e) => e.event), ['connected', 'token', 'unsubscribed']);
    assert.deepEqual({ ...gone.at(-1)!.json, timestamp: 0 }, { type: 'unsubscribed', project_id: 'un1', stage: null, reason: 'client', timestamp: 0, subscription: 'gone' });
    assert.deepEqual(reader.of('stays').map((e) => e.id), [undefined, before, afterId]);
    reader.close();
  });
});
});
}

describe('the limits of a connection', () => {
  it('refuses more subscriptions than it may hold (429), a batch larger than that (400), and one id for another scope (409)', async () => {
    const reader = await connect();
    const all = Array.from({ length: MAX_SUBSCRIPTIONS }, (_, i) => ({ subscription: `s${i}`, project_id: `lim${i}` }));
    const filled = await reader.subscribe({ subscriptions: all });
    assert.ok(filled.body.results.every((r: any) => r.ok));
    const more = await reader.subscribe({ subscription: 'one-more', project_id: 'lim' });
    assert.equal(more.status, 429);
    assert.equal(more.body.error.code, 'too_many_subscriptions');
    assert.ok(more.headers.get('retry-after'));
    // A renew is no new subscription.
    assert.equal((await reader.subscribe({ subscription: 's0', project_id: 'lim0' })).body.renewed, true);
    const clash = await reader.subscribe({ subscription: 's0', project_id: 'lim0', stage: 'rewrite' });
    assert.equal(clash.status, 409);
    assert.equal(clash.body.error.code, 'subscription_exists');
    const batch = await reader.subscribe({ subscriptions: [...all, { subscription: 'x', project_id: 'x' }] });
    assert.equal(batch.status, 400);
    reader.close();
  });

  it('refuses a body over the limit (413), bad fields naming them (400), JSON without its content type (415)', async () => {
    const reader = await connect();
    const big = await reader.subscribe({ subscription: 'a', project_id: 'a', padding: 'x'.repeat(70 * 1024) });
    assert.equal(big.status, 413);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ subscription: 'a b', project_id: 'p' }, /"subscription"/],
      [{ subscription: 'a'.repeat(65), project_id: 'p' }, /"subscription"/],
      [{ project_id: 'p' }, /"subscription"/],
      [{ subscription: 'a', project_id: 'p*' }, /"project_id"/],
      [{ subscription: 'a', project_id: 'p', stage: '__proto__' }, /"stage"/],
      [{ subscription: 'a', project_id: 'p', last_event_id: '1-0\nid: 2' }, /"last_event_id"/],
      [{ subscription: 'a', project_id: 'p', last_event_id: 'x'.repeat(65) }, /"last_event_id"/],
      [{ subscription: 'a', project_id: 'p', last_event_id: 5 }, /"last_event_id"/],
      [{ subscription: 'a', project_id: 'p', snapshot: 'yes' }, /"snapshot"/],
      [{ subscription: 'a', project_id: 'p', compact: 1 }, /"compact"/],
      [{ subscription: 'a', project_id: 'p', token: 5 }, /"token"/],
    ];
    for (const [body, field] of cases) {
      const answer = await reader.subscribe(body);
      assert.equal(answer.status, 400, JSON.stringify(body));
      assert.match(answer.body.error.message, field);
    }
    assert.equal((await reader.subscribe('{"subscription":')).body.error.code, 'invalid_json');
    assert.equal((await reader.unsubscribe({ subscription: 'a b' })).status, 400);
    const text = await control(h.url, MUX_ROUTES.subscribe, reader.connection, { subscription: 'a', project_id: 'p' }, { 'Content-Type': 'text/plain' });
    assert.equal(text.status, 415);
    assert.equal((await requestJson(h.url + MUX_ROUTES.subscribe)).status, 405);
    reader.close();
  });

  it('answers 404 for an unknown connection, also to another client of a live one, and 400 without a connection', async () => {
    const reader = await connect();
    const unknown = await control(h.url, MUX_ROUTES.subscribe, newConnectionId(), { subscription: 'a', project_id: 'p' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'unknown_connection');
    assert.equal((await control(h.url, MUX_ROUTES.unsubscribe, newConnectionId(), { subscription: 'a' })).status, 404);
    assert.equal((await control(h.url, MUX_ROUTES.subscribe, undefined, { subscription: 'a', project_id: 'p' })).status, 400);
    // The same connection id from another address (127.0.0.2 is loopback too): the same 404, nothing revealed.
    const other = await new Promise<{ status: number; body: any }>((resolve, reject) => {
      const body = JSON.stringify({ subscription: 'a', project_id: 'p' });
      const req = httpRequest(
        `${h.url}${MUX_ROUTES.subscribe}`,
        { method: 'POST', localAddress: '127.0.0.2', headers: { 'Content-Type': 'application/json', [MUX_CONNECTION_HEADER]: reader.connection, 'Content-Length': Buffer.byteLength(body) } },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    assert.deepEqual(other, { status: 404, body: unknown.body });
    assert.equal(reader.of('a').length, 0);
    reader.close();
  });

  it('counts a connection as one stream of its client (429 beyond maxStreamsPerClient)', async () => {
    await waitUntil(() => closed.server.hub.size === 0, 'no stream left from the tests before');
    const forP = await token(['lim']);
    const mux = await connect(closed.url);
    await mux.subscribe({ subscriptions: ['a', 'b', 'c'].map((subscription) => ({ subscription, project_id: 'lim', token: forP })) });
    const single = await openStream(streamUrl(closed.url, 'lim', undefined, true), { Authorization: `Bearer ${forP}` });
    open.push(single);
    assert.equal(single.status, 200);
    const third = await requestJson(closed.url + MUX_ROUTES.stream, { headers: { [MUX_CONNECTION_HEADER]: newConnectionId() } });
    assert.equal(third.status, 429);
    assert.equal(third.body.error.code, 'too_many_streams');
    mux.close();
    single.close();
  });
});
