import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { brokerContract, recorder, uniqueProject } from './broker.contract.js';
import { BrokerClosedError, BrokerUnavailableError, InvalidArgumentError } from '../src/broker/errors.js';
import { parseClusterNodes } from '../src/broker/cluster-nodes.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { controlKey, logKey, projectPattern, stageChannel, stateKey, textKey, textsKey } from '../src/channels.js';
import { inStepCheck } from './in-step-check.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { waitUntil } from './wait-until.js';

let redis: TestRedis;
/** A plain client of the test server, to look at it from outside the broker. */
let admin: Redis;

before(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
  admin.on('error', () => {}); // it reconnects by itself after the outage tests
});
after(async () => {
  await admin.quit();
  await redis.close();
});

brokerContract('RedisBroker', () => ({
  async create(options) {
    return new RedisBroker({ ...options, url: redis.url });
  },
  async expire(broker, projectId) {
    // Redis expires keys on its own: wait for both keys to be gone (the suite uses a 1 s TTL).
    const keys = [logKey(broker.prefix, projectId), stateKey(broker.prefix, projectId)];
    await waitUntil(async () => (await admin.exists(...keys)) === 0, `${keys.join(', ')} expired`, 5000);
  },
  async publishForeign(_broker, channel, payload) {
    await admin.publish(channel, payload);
  },
  async serverSubscriptions(channel) {
    const [, count] = (await admin.call('PUBSUB', 'NUMSUB', channel)) as [string, number];
    return { channel: Number(count), patterns: Number(await admin.call('PUBSUB', 'NUMPAT')) };
  },
  async storedLog(broker, projectId) {
    return storedData(await admin.xrange(logKey(broker.prefix, projectId), '-', '+'));
  },
}));

/** The `data` field of each XRANGE entry. */
function storedData(entries: [string, string[]][]): string[] {
  return entries.map(([, fields]) => fields[fields.indexOf('data') + 1]!);
}

async function connectionsNamed(prefix: string): Promise<number> {
  const list = (await admin.call('CLIENT', 'LIST')) as string;
  return list.split('\n').filter((line) => line.includes(` name=${prefix}`)).length;
}

async function numsub(channel: string): Promise<number> {
  const [, count] = (await admin.call('PUBSUB', 'NUMSUB', channel)) as [string, number];
  return Number(count);
}

async function numpat(): Promise<number> {
  return Number(await admin.call('PUBSUB', 'NUMPAT'));
}

function message(projectId: string, stage: string, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({ type: 'token', stage, project_id: projectId, timestamp: Date.now() / 1000, ...fields });
}

describe('RedisBroker', () => {
  const open: RedisBroker[] = [];
  const create = (options: ConstructorParameters<typeof RedisBroker>[0] = {}) => {
    const broker = new RedisBroker({ url: redis.url, ...options });
    open.push(broker);
    return broker;
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((broker) => broker.close()));
  });

  it('holds one connection while it only publishes, and one more from the first subscribe on', async () => {
    const broker = create();
    const project = uniqueProject();
    await broker.publish(project, 'rewrite', 'token', message(project, 'rewrite'));
    await broker.snapshot(project);
    assert.equal(await connectionsNamed('ai-story-sse:'), 1);
    await broker.subscribe(stageChannel(broker.prefix, project, 'a'), () => {});
    await broker.subscribe(projectPattern(broker.prefix, project), () => {}, true);
    assert.equal(await connectionsNamed('ai-story-sse:'), 2);
    await broker.close();
    assert.equal(await connectionsNamed('ai-story-sse:'), 0);
  });

  it('trims the log exactly to logMaxLen and sets the TTL of the log and the state', async () => {
    const broker = create({ logMaxLen: 3, logTtlSeconds: 3600 });
    const project = uniqueProject();
    for (let i = 0; i < 5; i++) await broker.publish(project, 'rewrite', 'token', message(project, 'rewrite'));
    assert.equal(await admin.xlen(logKey(broker.prefix, project)), 3);
    for (const key of [logKey(broker.prefix, project), stateKey(broker.prefix, project)]) {
      const ttl = await admin.ttl(key);
      assert.ok(ttl > 3590 && ttl <= 3600, `${key} ttl ${ttl}`);
    }
  });

  it('with control options, sets the TTL on every key a call creates, and refreshes it once a tenth of the TTL has passed', async () => {
    const broker = create({ logTtlSeconds: 20 });
    const project = uniqueProject();
    const keys = [logKey(broker.prefix, project), stateKey(broker.prefix, project), controlKey(broker.prefix, project), textsKey(broker.prefix, project), textKey(broker.prefix, project, 'rewrite')];
    const control = (seq: number) => ({ producer: 'p1', seq, run: 'p1', leaseMs: 30_000 });
    const token = (content: string, offset: number) => JSON.stringify({ type: 'token', stage: 'rewrite', project_id: project, content, offset });
    await broker.publish(project, 'rewrite', 'token', token('Once', 0), { content: 'Once', offset: 0 }, control(1));
    for (const key of keys) assert.ok((await admin.pttl(key)) > 19_000, `${key} has the TTL from the first call`);
    // Let the TTLs run down a little, then publish within the refresh interval (2 s): they are left alone...
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await broker.publish(project, 'rewrite', 'token', token(' upon', 4), { content: ' upon', offset: 4 }, control(2));
    for (const key of keys) {
      const ttl = await admin.pttl(key);
      assert.ok(ttl > 17_000 && ttl < 19_000, `${key}: ${ttl} ms, not refreshed within the interval`);
    }
    // ...but a key the call creates gets it at once: a new stage's state field, and a new run's text (SET).
    await broker.publish(project, 'summary', 'token', JSON.stringify({ type: 'token', stage: 'summary', project_id: project, content: 'A', offset: 0 }), { content: 'A', offset: 0 }, { producer: 'p2', seq: 1, run: 'p2', leaseMs: 30_000 });
    assert.ok((await admin.pttl(textKey(broker.prefix, project, 'summary'))) > 19_000, 'a new text has its TTL');
    assert.ok((await admin.pttl(stateKey(broker.prefix, project))) > 19_000, 'a new state field refreshes the state');
    // After the interval, the next call refreshes every key.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await broker.publish(project, 'rewrite', 'token', token(' a', 9), { content: ' a', offset: 9 }, control(3));
    for (const key of keys) assert.ok((await admin.pttl(key)) > 19_000, `${key} refreshed after the interval`);
    assert.equal(await admin.get(textKey(broker.prefix, project, 'rewrite')), 'Once upon a');
  });

  it('keeps a project\'s log and state under its id as a hash tag, and publishes on the untagged stage channel', async () => {
    const broker = create();
    const project = uniqueProject();
    const rec = recorder();
    await broker.subscribe(stageChannel(broker.prefix, project, 'rewrite'), rec.listener);
    await broker.publish(project, 'rewrite', 'token', message(project, 'rewrite'));
    await rec.waitFor(1);
    assert.equal(rec.heard[0]!.channel, `ai_story:project:${project}:stage:rewrite`);
    assert.deepEqual((await admin.keys(`*${project}*`)).sort(), [`ai_story:project:{${project}}:log`, `ai_story:project:{${project}}:state`]);
  });

  it('resolves replay and snapshot only once the subscriber heard every message they contain', async () => {
    await inStepCheck(create());
  });

  it('refuses a cluster together with a url or a client, and a cluster without nodes', () => {
    const nodes = [{ host: '127.0.0.1', port: 1 }];
    assert.throws(() => new RedisBroker({ url: redis.url, cluster: { nodes } }), InvalidArgumentError);
    assert.throws(() => new RedisBroker({ cluster: { nodes: [] } }), InvalidArgumentError);
  });

  it('reads REDIS_CLUSTER_NODES entries as host:port or URLs whose credentials and TLS apply to every node', () => {
    assert.deepEqual(parseClusterNodes('10.0.0.1:7000, 10.0.0.2:7001,,'), {
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
      ],
    });
    assert.deepEqual(parseClusterNodes('rediss://app:s%3Acret@redis-a:6380,redis-b,[::1]:7000'), {
      nodes: [
        { host: 'redis-a', port: 6380 },
        { host: 'redis-b', port: 6379 },
        { host: '::1', port: 7000 },
      ],
      username: 'app',
      password: 's:cret',
      tls: true,
    });
    for (const bad of ['', ' , ', 'host:99999', 'redis://:pw@:7000', 'a b:1']) assert.throws(() => parseClusterNodes(bad), TypeError, bad);
  });

  it('delivers a plain PUBLISH of another program like its own messages', async () => {
    const broker = create();
    const project = uniqueProject();
    const rec = recorder();
    await broker.subscribe(projectPattern(broker.prefix, project), rec.listener, true);
    const foreign = JSON.stringify({ type: 'token', content: 'hi', full_text: 'hi', stage: 'rewrite', project_id: project, timestamp: 1 });
    await admin.publish(stageChannel(broker.prefix, project, 'rewrite'), foreign);
    await rec.waitFor(1);
    assert.deepEqual(rec.heard, [{ payload: foreign, channel: stageChannel(broker.prefix, project, 'rewrite') }]);
  });

  it('answers a malformed replay id without sending anything to Redis', async () => {
    const broker = create();
    await broker.ping();
    await admin.config('RESETSTAT');
    assert.deepEqual(await broker.replay('p', '1-0 +'), { covered: false, entries: [], more: false });
    const stats = (await admin.info('commandstats')) as string;
    assert.doesNotMatch(stats, /cmdstat_(xrange|multi|exec)/);
  });

  it('rejects a publish Redis does not answer within commandTimeoutMs, telling that it was sent', async () => {
    const broker = create({ commandTimeoutMs: 200 });
    const project = uniqueProject();
    await broker.ping();
    const watcher = create();
    const rec = recorder();
    await watcher.subscribe(stageChannel(watcher.prefix, project, 'rewrite'), rec.listener);
    // Redis holds every write for 600 ms: the publish is written but gets no answer in time.
    await admin.call('CLIENT', 'PAUSE', '600', 'WRITE');
    const started = Date.now();
    const error = await broker.publish(project, 'rewrite', 'token', message(project, 'rewrite')).then(
      () => assert.fail('publish resolved during CLIENT PAUSE'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof BrokerUnavailableError, String(error));
    assert.equal(error.sent, true);
    assert.ok(Date.now() - started < 550, `rejected after ${Date.now() - started} ms`);
    // "sent: true" means it may still take effect: here it does, once the pause ends.
    await rec.waitFor(1);
  });

  it('leaves a client it was given open on close', async () => {
    const client = new Redis(redis.url, RedisBroker.connectionOptions);
    try {
      const broker = new RedisBroker({ client });
      const project = uniqueProject();
      await broker.publish(project, 'rewrite', 'token', message(project, 'rewrite'));
      await broker.subscribe(stageChannel(broker.prefix, project, 'rewrite'), () => {});
      await broker.close();
      assert.equal(client.status, 'ready');
      assert.equal(await client.ping(), 'PONG');
    } finally {
      await client.quit();
    }
  });

  describe('project patterns: one PSUBSCRIBE for all projects, routed in the process', () => {
    it('holds one pattern in Redis for 500 watched projects, delivers to each, and none after the last leaves', async () => {
      const broker = create();
      const projects = Array.from({ length: 500 }, () => uniqueProject());
      const recs = projects.map(() => recorder());
      // All at once: the ones that join while the shared PSUBSCRIBE is in flight resolve with it, not before.
      const leaves = await Promise.all(projects.map((project, i) => broker.subscribe(projectPattern(broker.prefix, project), recs[i]!.listener, true)));
      assert.equal(await numpat(), 1);
      for (const [i, project] of projects.entries()) await admin.publish(stageChannel(broker.prefix, project, 'rewrite'), `to ${i}`);
      await Promise.all(recs.map((rec) => rec.waitFor(1)));
      recs.forEach((rec, i) => assert.deepEqual(rec.heard, [{ payload: `to ${i}`, channel: stageChannel(broker.prefix, projects[i]!, 'rewrite') }]));
      await Promise.all(leaves.slice(1).map((leave) => leave()));
      assert.equal(await numpat(), 1, 'one project is still watched');
      await leaves[0]!();
      assert.equal(await numpat(), 0);
    });

    it('keeps projects apart, even ids that are prefixes of one another, and ignores channels of another prefix', async () => {
      const base = uniqueProject();
      const [one, twelve, two] = [`${base}1`, `${base}12`, `${base}2`];
      const broker = create();
      const other = create({ prefix: 'other_prefix' });
      const recs = { one: recorder(), twelve: recorder(), two: recorder(), oneStage: recorder(), otherOne: recorder() };
      await broker.subscribe(projectPattern(broker.prefix, one), recs.one.listener, true);
      await broker.subscribe(projectPattern(broker.prefix, twelve), recs.twelve.listener, true);
      await broker.subscribe(projectPattern(broker.prefix, two), recs.two.listener, true);
      await broker.subscribe(stageChannel(broker.prefix, one, 'rewrite'), recs.oneStage.listener);
      await other.subscribe(projectPattern(other.prefix, one), recs.otherOne.listener, true);
      // Channels the shared pattern matches that no project pattern does: an id with a colon, an empty id.
      await admin.publish(`${broker.prefix}:project:${one}:x:stage:rewrite`, 'not a project channel');
      await admin.publish(`${broker.prefix}:project::stage:rewrite`, 'no id');
      await admin.publish(stageChannel(other.prefix, one, 'rewrite'), 'other prefix');
      await broker.publish(twelve, 'rewrite', 'token', message(twelve, 'rewrite'));
      await admin.publish(stageChannel(broker.prefix, one, 'rewrite'), 'one');
      await admin.publish(`${stageChannel(broker.prefix, two, 'a')}:stage:b`, 'two, as its own pattern matches it');
      await recs.one.waitFor(1);
      await recs.oneStage.waitFor(1);
      await recs.twelve.waitFor(1);
      await recs.two.waitFor(1);
      await recs.otherOne.waitFor(1);
      // A last message to each: once it arrives, whatever was published before it had its chance.
      for (const [project, prefix] of [[one, broker.prefix], [twelve, broker.prefix], [two, broker.prefix], [one, other.prefix]] as const) {
        await admin.publish(stageChannel(prefix, project, 'last'), 'last');
      }
      await Promise.all([recs.one.waitFor(2), recs.twelve.waitFor(2), recs.two.waitFor(2), recs.otherOne.waitFor(2)]);
      assert.deepEqual(recs.one.payloads(), ['one', 'last']);
      assert.deepEqual(recs.oneStage.payloads(), ['one']);
      assert.equal(JSON.parse(recs.twelve.payloads()[0]!).project_id, twelve);
      assert.equal(recs.twelve.heard.length, 2);
      assert.deepEqual(recs.two.payloads(), ['two, as its own pattern matches it', 'last']);
      assert.deepEqual(recs.otherOne.payloads(), ['other prefix', 'last']);
      assert.equal(await numpat(), 2, 'one pattern per prefix');
    });

    it('ends subscribed when a subscribe races the unsubscribe of the last project listener', async () => {
      const broker = create();
      const [first, second] = [uniqueProject(), uniqueProject()];
      for (const next of [second, first]) {
        const leave = await broker.subscribe(projectPattern(broker.prefix, first), () => {}, true);
        const rec = recorder();
        // The PUNSUBSCRIBE is under way when the PSUBSCRIBE of the next listener is sent.
        const [, joined] = await Promise.all([leave(), broker.subscribe(projectPattern(broker.prefix, next), rec.listener, true)]);
        assert.equal(await numpat(), 1);
        await admin.publish(stageChannel(broker.prefix, next, 'rewrite'), 'still heard');
        await rec.waitFor(1);
        await joined();
        assert.equal(await numpat(), 0);
      }
    });

    it('subscribes any other pattern as given, the shared one included, without disturbing the projects', async () => {
      const broker = create();
      const project = uniqueProject();
      const all = recorder();
      const mine = recorder();
      const anyProject = `${broker.prefix}:project:*:stage:*`;
      const leaveAll = await broker.subscribe(anyProject, all.listener, true);
      const leaveMine = await broker.subscribe(projectPattern(broker.prefix, project), mine.listener, true);
      await broker.subscribe(projectPattern(broker.prefix, 'a?'), () => {}, true);
      assert.equal(await numpat(), 2, 'the shared pattern once, and the one that names no valid id');
      await leaveMine();
      assert.equal(await numpat(), 2, 'the shared pattern stays while its own listener needs it');
      await admin.publish(stageChannel(broker.prefix, project, 'rewrite'), 'after');
      await all.waitFor(1);
      assert.equal(mine.heard.length, 0);
      await leaveAll();
      assert.equal(await numpat(), 1);
    });

    it('restores the shared pattern after Redis restarts, for the projects still watched', async () => {
      const broker = create({ commandTimeoutMs: 300 });
      const [kept, left] = [uniqueProject(), uniqueProject()];
      const keptRec = recorder();
      const leftRec = recorder();
      await broker.subscribe(projectPattern(broker.prefix, kept), keptRec.listener, true);
      const leave = await broker.subscribe(projectPattern(broker.prefix, left), leftRec.listener, true);
      await redis.stop();
      await waitUntil(() => !broker.healthy, 'unhealthy');
      await leave();
      await redis.restart();
      await waitUntil(() => broker.healthy, 'healthy again');
      await waitUntil(async () => (await numpat()) === 1, 'the shared pattern restored');
      await admin.publish(stageChannel(broker.prefix, left, 'rewrite'), 'to nobody');
      await admin.publish(stageChannel(broker.prefix, kept, 'rewrite'), 'after the restart');
      await keptRec.waitFor(1);
      assert.deepEqual(keptRec.payloads(), ['after the restart']);
      assert.equal(leftRec.heard.length, 0);
    });

    it('does not restore the shared pattern when every project listener left during the outage', async () => {
      const broker = create({ commandTimeoutMs: 300 });
      const project = uniqueProject();
      const channel = stageChannel(broker.prefix, project, 'kept');
      await broker.subscribe(channel, () => {});
      const leave = await broker.subscribe(projectPattern(broker.prefix, project), () => {}, true);
      await redis.stop();
      await waitUntil(() => !broker.healthy, 'unhealthy');
      await leave();
      await redis.restart();
      await waitUntil(async () => broker.healthy && (await numsub(channel)) === 1, 'the channel restored');
      assert.equal(await numpat(), 0);
    });
  });

  describe('when Redis goes down and comes back', () => {
    it('rejects publish and subscribe within commandTimeoutMs while Redis is down, and works again after it restarts', async () => {
      const broker = create({ commandTimeoutMs: 300 });
      const project = uniqueProject();
      await broker.publish(project, 'rewrite', 'token', message(project, 'rewrite'));
      await redis.stop();
      for (const attempt of [
        () => broker.publish(project, 'rewrite', 'token', message(project, 'rewrite')),
        () => broker.subscribe(stageChannel(broker.prefix, project, 'rewrite'), () => {}),
        () => broker.ping(),
      ]) {
        const started = Date.now();
        await assert.rejects(attempt(), BrokerUnavailableError);
        assert.ok(Date.now() - started < 1000, `rejected after ${Date.now() - started} ms`);
      }
      assert.equal(broker.healthy, false);
      // Many calls waiting at once share one 'ready' listener: no MaxListenersExceededWarning, all bounded.
      const warnings: Error[] = [];
      const onWarning = (warning: Error) => warnings.push(warning);
      process.on('warning', onWarning);
      const many = await Promise.allSettled(Array.from({ length: 30 }, () => broker.publish(project, 'rewrite', 'token', message(project, 'rewrite'))));
      process.off('warning', onWarning);
      assert.ok(many.every((r) => r.status === 'rejected' && r.reason instanceof BrokerUnavailableError));
      assert.deepEqual(warnings, []);
      await redis.restart();
      await waitUntil(() => broker.healthy, 'healthy again');
      // The restarted server has an empty script cache: this also proves the EVAL fallback.
      const id = await broker.publish(project, 'rewrite', 'token', message(project, 'rewrite'));
      const next = await broker.publish(project, 'rewrite', 'token', message(project, 'rewrite'));
      assert.deepEqual((await broker.replay(project, id)).entries.map((e) => e.id), [next]);
      // The subscribe that failed during the outage left nothing behind.
      assert.equal(await numsub(stageChannel(broker.prefix, project, 'rewrite')), 0);
    });

    it('restores its subscriptions, except one whose last listener left during the outage', async () => {
      const broker = create({ commandTimeoutMs: 300 });
      const project = uniqueProject();
      const kept = stageChannel(broker.prefix, project, 'kept');
      const left = stageChannel(broker.prefix, project, 'left');
      const keptRec = recorder();
      const leftRec = recorder();
      const patternRec = recorder();
      await broker.subscribe(kept, keptRec.listener);
      const leave = await broker.subscribe(left, leftRec.listener);
      await broker.subscribe(projectPattern(broker.prefix, project), patternRec.listener, true);
      await redis.stop();
      await waitUntil(() => !broker.healthy, 'unhealthy');
      await leave();
      await redis.restart();
      await waitUntil(() => broker.healthy, 'healthy again');
      await waitUntil(async () => (await numsub(kept)) === 1 && Number(await admin.call('PUBSUB', 'NUMPAT')) === 1, 'resubscribed');
      assert.equal(await numsub(left), 0);
      await admin.publish(left, 'to nobody');
      await admin.publish(kept, 'after the restart');
      await keptRec.waitFor(1);
      await patternRec.waitFor(2);
      assert.deepEqual(keptRec.payloads(), ['after the restart']);
      assert.deepEqual(patternRec.payloads(), ['to nobody', 'after the restart']);
      assert.equal(leftRec.heard.length, 0);
    });

    it('reports an interruption when its subscriber connection drops with subscriptions, then restores them', async () => {
      const broker = create();
      const project = uniqueProject();
      const channel = stageChannel(broker.prefix, project, 'rewrite');
      const rec = recorder();
      let interruptions = 0;
      const stop = broker.onInterruption(() => interruptions++);
      await broker.subscribe(channel, rec.listener);
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await waitUntil(() => interruptions === 1, 'the interruption reported');
      await waitUntil(async () => (await numsub(channel)) === 1, 'resubscribed');
      await admin.publish(channel, 'after the drop');
      await rec.waitFor(1);
      stop();
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await waitUntil(async () => (await numsub(channel)) === 1, 'resubscribed again');
      assert.equal(interruptions, 1);
    });

    it('reports no interruption when the dropped subscriber connection held no subscription, nor on close', async () => {
      const broker = create();
      let interruptions = 0;
      broker.onInterruption(() => interruptions++);
      const leave = await broker.subscribe(stageChannel(broker.prefix, uniqueProject(), 'rewrite'), () => {});
      await leave();
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await waitUntil(() => broker.healthy, 'reconnected');
      await broker.subscribe('another-channel', () => {});
      await broker.close();
      assert.equal(interruptions, 0);
    });

    it('closes promptly while Redis is down', async () => {
      const broker = create({ commandTimeoutMs: 5000 });
      await broker.ping();
      await broker.subscribe('some-channel', () => {});
      await redis.stop();
      await waitUntil(() => !broker.healthy, 'unhealthy');
      const pending = assert.rejects(broker.ping(), BrokerClosedError);
      const started = Date.now();
      await broker.close();
      await pending;
      assert.ok(Date.now() - started < 1000, `closed after ${Date.now() - started} ms`);
      await redis.restart();
    });
  });
});
