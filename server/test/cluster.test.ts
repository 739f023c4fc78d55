/**
 * The kit on a Redis Cluster (three masters on free loopback ports): the Broker contract, the server's
 * all-stages and resume scenarios with projects spread over every master, foreign and Python publishers,
 * the server process configured by REDIS_CLUSTER_NODES, and the subscriber moving on when its node dies.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { brokerContract, recorder, uniqueProject } from './broker.contract.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { logKey, projectPattern, stageChannel, stateKey } from '../src/channels.js';
import { ConfigError, readConfig } from '../src/config.js';
import { StreamPublisher } from '../src/publisher.js';
import { startServer, type RunningServer } from '../src/server.js';
import { streamUrl, TEST_SETTINGS } from './harness.js';
import { inStepCheck } from './in-step-check.js';
import { startRedisCluster, type TestRedisCluster } from './redis-cluster.js';
import { openStream, requestJson, type StreamReader } from './sse-reader.js';
import { PYTHON, PYTHON_WORKERS } from './python.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import { waitUntil } from './wait-until.js';

const PREFIX = 'ai_story';

let cluster: TestRedisCluster;
/** One plain connection per master, to look at each node from outside the broker. */
let nodeClients: Redis[];

before(async () => {
  cluster = await startRedisCluster();
  nodeClients = cluster.nodes.map(({ host, port }) => new Redis(port, host));
});
after(async () => {
  await Promise.all(nodeClients.map((client) => client.quit()));
  await cluster.close();
});

const clusterBroker = (options: { logMaxLen?: number; logTtlSeconds?: number } = {}) =>
  new RedisBroker({ ...options, prefix: PREFIX, cluster: { nodes: cluster.nodes } });

/** The master that owns a project's log and state. */
async function masterOf(projectId: string): Promise<number> {
  const slot = Number(await nodeClients[0]!.call('CLUSTER', 'KEYSLOT', logKey(PREFIX, projectId)));
  return cluster.portOfSlot(slot);
}

/** One project id per master, so each scenario runs on every shard. */
async function projectsOnEveryMaster(tag: string): Promise<string[]> {
  const byMaster = new Map<number, string>();
  for (let i = 0; byMaster.size < cluster.nodes.length; i++) {
    if (i > 200) throw new Error('no project id found for some master');
    const project = `${tag}-${i}`;
    const master = await masterOf(project);
    if (!byMaster.has(master)) byMaster.set(master, project);
  }
  return [...byMaster.values()];
}

function nodeClient(port: number): Redis {
  const index = cluster.nodes.findIndex((node) => node.port === port);
  if (index < 0) throw new Error(`no node on ${port}`);
  return nodeClients[index]!;
}

async function sumOverNodes(command: (client: Redis) => Promise<unknown>): Promise<number> {
  const counts = await Promise.all(nodeClients.map(command));
  return counts.reduce<number>((sum, count) => sum + Number(count), 0);
}

brokerContract('RedisBroker on a Redis Cluster', () => ({
  async create(options) {
    return clusterBroker(options);
  },
  async expire(broker, projectId) {
    // Both keys live on the same master, which expires them on its own (the suite uses a 1 s TTL).
    const client = nodeClient(await masterOf(projectId));
    const keys = [logKey(broker.prefix, projectId), stateKey(broker.prefix, projectId)];
    await waitUntil(async () => (await client.exists(...keys)) === 0, `${keys.join(', ')} expired`, 5000);
  },
  async publishForeign(_broker, channel, payload) {
    // Any node: the cluster forwards a PUBLISH to every node.
    await nodeClients[0]!.publish(channel, payload);
  },
  async serverSubscriptions(channel) {
    // Subscriptions are local to the node a client is connected to: count them on every node.
    return {
      channel: await sumOverNodes(async (client) => ((await client.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1]),
      patterns: await sumOverNodes((client) => client.call('PUBSUB', 'NUMPAT')),
    };
  },
  async storedLog(broker, projectId) {
    const entries = await nodeClient(await masterOf(projectId)).xrange(logKey(broker.prefix, projectId), '-', '+');
    return entries.map(([, fields]) => fields[fields.indexOf('data') + 1]!);
  },
}));

describe('the server on a Redis Cluster', () => {
  let broker: RedisBroker;
  let server: RunningServer;
  const open: StreamReader[] = [];

  before(async () => {
    broker = clusterBroker();
    server = await startServer({ ...TEST_SETTINGS }, broker);
  });
  after(async () => {
    for (const reader of open) reader.close();
    await server.close();
    await broker.close();
  });

  async function watch(projectId: string, stage?: string, headers: Record<string, string> = {}): Promise<StreamReader> {
    const reader = await openStream(streamUrl(server.url, projectId, stage), headers);
    open.push(reader);
    await reader.waitFor((e) => e.event === 'connected');
    return reader;
  }

  const publisher = (projectId: string, stage: string) => new StreamPublisher({ projectId, stage, broker });

  it('spreads projects over the masters: the log and the state of one project share a slot', async () => {
    const projects = await projectsOnEveryMaster('spread');
    assert.equal(new Set(await Promise.all(projects.map(masterOf))).size, 3);
    for (const project of projects) {
      await publisher(project, 'rewrite').publishToken('x', 'x');
      const [logSlot, stateSlot] = await Promise.all(
        [logKey(PREFIX, project), stateKey(PREFIX, project)].map((key) => nodeClients[0]!.call('CLUSTER', 'KEYSLOT', key)),
      );
      assert.equal(logSlot, stateSlot);
      const owner = nodeClient(cluster.portOfSlot(Number(logSlot)));
      assert.equal(await owner.exists(logKey(PREFIX, project), stateKey(PREFIX, project)), 2);
    }
  });

  it('delivers every stage of a project in publish order, and no other project, for projects on every master', async () => {
    const projects = await projectsOnEveryMaster('all');
    await Promise.all(
      projects.map(async (project, i) => {
        const reader = await watch(project);
        const other = projects[(i + 1) % projects.length]!;
        await using a = publisher(project, 'rewrite');
        await using b = publisher(project, 'image_generation');
        await using c = publisher(`${other}x`, 'rewrite');
        await a.publishToken('1', '1');
        await c.publishToken('x', 'x');
        await b.publishProgress(1, 2, 'one.png');
        const last = await a.publishDone('1', {});
        await reader.waitFor((e) => e.id === last);
        assert.deepEqual(
          reader.events.slice(1).map((e) => `${e.json?.project_id}:${e.json?.stage}:${e.event}`),
          [`${project}:rewrite:token`, `${project}:image_generation:progress`, `${project}:rewrite:done`],
        );
        reader.close();
      }),
    );
  });

  it('resumes with Last-Event-ID: exactly what was published during the drop, then live, on every master', async () => {
    const projects = await projectsOnEveryMaster('resume');
    await Promise.all(
      projects.map(async (project) => {
        await using pub = publisher(project, 'rewrite');
        const first = await watch(project, 'rewrite');
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) ids.push(await pub.publishToken(String(i), String(i)));
        await first.waitFor((e) => e.id === ids[2]);
        first.close();
        for (let i = 3; i < 8; i++) ids.push(await pub.publishToken(String(i), String(i)));
        const resumed = await watch(project, 'rewrite', { 'Last-Event-ID': ids[2]! });
        assert.equal(resumed.events[0]!.json?.resumed, true);
        ids.push(await pub.publishToken('8', '8'));
        await resumed.waitFor((e) => e.id === ids[8]);
        assert.deepEqual(resumed.events.slice(1).map((e) => e.json?.content), ['3', '4', '5', '6', '7', '8']);
        resumed.close();
      }),
    );
  });

  it('has no gap and no duplicate while busy publishers on every master race the replay', async () => {
    const projects = await projectsOnEveryMaster('race');
    await Promise.all(
      projects.map(async (project) => {
        await using pub = publisher(project, 'storyboard');
        const first = await watch(project);
        let published = 0;
        const burst = async (n: number) => {
          for (let i = 0; i < n; i++) {
            const piece = String(published++);
            await pub.publishToken(piece, piece);
          }
        };
        await burst(30);
        await first.waitFor((e) => e.json?.content === '29');
        first.close();
        const racing = burst(200);
        const resumed = await watch(project, undefined, { 'Last-Event-ID': first.lastEventId! });
        await racing;
        await resumed.waitFor((e) => e.json?.content === '229');
        const contents = resumed.events.filter((e) => e.event === 'token').map((e) => Number(e.json?.content));
        assert.deepEqual(contents, Array.from({ length: 200 }, (_, i) => i + 30));
        resumed.close();
      }),
    );
  });

  it('resumes the all-stages stream across stages in one id space', async () => {
    const [project] = await projectsOnEveryMaster('stages');
    await using a = publisher(project!, 'rewrite');
    await using b = publisher(project!, 'storyboard');
    const from = await a.publishToken('a1', 'a1');
    await b.publishToken('b1', 'b1');
    await a.publishToken('a2', 'a2');
    const last = await b.publishToken('b2', 'b2');
    const reader = await watch(project!, undefined, { 'Last-Event-ID': from });
    await reader.waitFor((e) => e.id === last);
    assert.deepEqual(reader.events.slice(1).map((e) => e.json?.content), ['b1', 'a2', 'b2']);
    reader.close();
  });

  it('sends a reset with the latest state of each stage when the id is no longer in the log', async () => {
    const [, project] = await projectsOnEveryMaster('reset');
    await using a = publisher(project!, 'rewrite');
    await a.publishStageUpdate('processing', 0, 'go');
    await a.publishToken('x', 'x');
    const newest = await a.publishToken('y', 'xy');
    const reader = await watch(project!, undefined, { 'Last-Event-ID': '1-0' });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    assert.equal(reset.id, newest);
    const stages = reset.json?.stages as Record<string, Record<string, Record<string, unknown>>>;
    assert.equal(stages.rewrite?.token?.full_text, 'xy');
    assert.equal(stages.rewrite?.stage_update?.status, 'processing');
    reader.close();
  });

  it('resolves replay and snapshot only once the subscriber heard every message they contain, for projects on every master', async () => {
    // The subscriber sits on one node; most projects live on another master, whose messages come over the bus.
    for (const project of await projectsOnEveryMaster('step')) await inStepCheck(broker, project);
  });

  it('delivers a foreign plain PUBLISH sent to any node of the cluster', async () => {
    const project = uniqueProject();
    const reader = await watch(project, 'rewrite');
    for (const [i, client] of nodeClients.entries()) {
      await client.publish(stageChannel(PREFIX, project, 'rewrite'), JSON.stringify({ type: 'token', content: `node ${i}`, full_text: '' }));
    }
    // Messages sent to different nodes travel different links of the cluster bus: no order between them.
    for (const i of nodeClients.keys()) await reader.waitFor((e) => e.json?.content === `node ${i}`);
    assert.deepEqual(
      reader.events
        .slice(1)
        .map((e) => [e.id, e.json?.content])
        .sort(),
      nodeClients.map((_, i) => [undefined, `node ${i}`]),
    );
    reader.close();
  });

  const noClusterPy = spawnSync(PYTHON, ['-c', 'import redis.cluster'], { encoding: 'utf8' }).status !== 0;
  // Outside CI a machine without redis-py >= 4.1 skips with a message; in CI (.ci/run installs python3-redis) it must run.
  const skipPython = noClusterPy && !process.env.CI ? `${PYTHON} cannot import redis.cluster (apt-get install python3-redis)` : false;

  it('takes a Python worker’s messages with cluster=True into the same log: live with ids, then resumable', { skip: skipPython }, async () => {
    const projects = await projectsOnEveryMaster('py');
    const [first] = cluster.nodes;
    const code = `
import json, sys
from ai_story_stream import RedisStreamPublisher
ids = []
for project in json.loads(sys.argv[1]):
    with RedisStreamPublisher(project, "rewrite", redis_url=sys.argv[2], cluster=True) as publisher:
        ids.append([publisher.publish_token("a", "a"), publisher.publish_token("b", "ab"), publisher.publish_done("ab", {"tokens_used": 2})])
print(json.dumps(ids))
`;
    const readers = await Promise.all(projects.map((project) => watch(project, 'rewrite')));
    const output = await run(PYTHON, ['-c', code, JSON.stringify(projects), `redis://${first!.host}:${first!.port}`], {
      PYTHONPATH: PYTHON_WORKERS,
      PYTHONDONTWRITEBYTECODE: '1',
    });
    const ids = JSON.parse(output) as string[][];
    for (const [i, reader] of readers.entries()) {
      await reader.waitFor((e) => e.event === 'done');
      assert.deepEqual(reader.events.slice(1).map((e) => e.id), ids[i]);
      const resumed = await watch(projects[i]!, 'rewrite', { 'Last-Event-ID': ids[i]![0]! });
      await resumed.waitFor((e) => e.event === 'done');
      assert.deepEqual(resumed.events.slice(1).map((e) => e.json?.full_text), ['ab', 'ab']);
      resumed.close();
      reader.close();
    }
  });
});

describe('a Cluster the caller built', () => {
  it('is used for commands and left open on close, with the broker’s own subscriber connection', async () => {
    const client = new Cluster(cluster.nodes, RedisBroker.clusterOptions);
    try {
      const broker = new RedisBroker({ client, prefix: PREFIX });
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(stageChannel(PREFIX, project, 'rewrite'), rec.listener);
      const id = await broker.publish(project, 'rewrite', 'token', '{"type":"token"}');
      await rec.waitFor(1);
      assert.deepEqual((await broker.replay(project, id)).entries, []);
      await broker.close();
      assert.equal(client.status, 'ready');
      assert.equal(await client.exists(logKey(PREFIX, project)), 1);
    } finally {
      await client.quit();
    }
  });
});

describe('REDIS_CLUSTER_NODES in the configuration', () => {
  it('is read into cluster settings, and refused together with REDIS_URL or when malformed', () => {
    assert.deepEqual(readConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000,10.0.0.2:7000' }).redisCluster, {
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7000 },
      ],
    });
    assert.equal(readConfig({}).redisCluster, undefined);
    assert.throws(() => readConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000', REDIS_URL: 'redis://10.0.0.1:6379' }), ConfigError);
    assert.throws(() => readConfig({ REDIS_CLUSTER_NODES: 'host:0' }), /REDIS_CLUSTER_NODES: "host:0"/);
  });
});

describe('the server process with REDIS_CLUSTER_NODES', () => {
  let server: ServerProcess | undefined;
  after(async () => {
    await server?.kill('SIGKILL');
  });

  it('uses the cluster, says so in one log line, and streams what a cluster publisher sends', async () => {
    server = await startServerProcess({ REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodesEnv, LOG_LEVEL: 'info' });
    assert.match(server.output(), new RegExp(`broker: redis cluster at ${cluster.nodesEnv.replace(/[.]/g, '\\.')} \\(REDIS_CLUSTER_NODES\\)`));
    const projects = await projectsOnEveryMaster('proc');
    const broker = clusterBroker();
    try {
      for (const project of projects) {
        const reader = await openStream(streamUrl(server.url, project));
        await reader.waitFor((e) => e.event === 'connected');
        const id = await new StreamPublisher({ projectId: project, stage: 'rewrite', broker }).publishToken('hi', 'hi');
        assert.equal((await reader.waitFor((e) => e.event === 'token')).id, id);
        reader.close();
      }
    } finally {
      await broker.close();
    }
    await server.kill('SIGTERM');
  });
});

describe('when the node of the subscriber connection dies', () => {
  // A cluster of its own: this test kills one of its masters.
  let doomed: TestRedisCluster;
  let broker: RedisBroker;
  before(async () => {
    doomed = await startRedisCluster();
    broker = new RedisBroker({ prefix: PREFIX, cluster: { nodes: doomed.nodes }, commandTimeoutMs: 2000 });
  });
  after(async () => {
    await broker.close();
    await doomed.close();
  });

  it('reports the interruption, moves the subscriber to another node, restores its subscriptions and delivers again', async () => {
    const clients = doomed.nodes.map(({ host, port }) => new Redis(port, host));
    clients.forEach((client) => client.on('error', () => {}));
    try {
      let interruptions = 0;
      broker.onInterruption(() => interruptions++);
      const project = uniqueProject();
      const rec = recorder();
      await broker.subscribe(projectPattern(PREFIX, project), rec.listener, true);
      const subscriberNode = async () => {
        const lists = await Promise.all(clients.map((client) => (client.status === 'ready' ? (client.call('CLIENT', 'LIST') as Promise<string>) : '')));
        return doomed.nodes[lists.findIndex((list) => list.includes('name=ai-story-sse:subscriber'))]?.port;
      };
      // The test's own connections to the nodes may still be connecting: wait for one of them to see the subscriber.
      let before: number | undefined;
      await waitUntil(async () => (before = await subscriberNode()) !== undefined, 'the subscriber is connected to a node');
      assert.ok(before, 'the subscriber is connected to a node');
      await doomed.kill(before);
      await waitUntil(() => interruptions === 1, 'the interruption reported');
      await waitUntil(() => broker.healthy, 'healthy again');
      const after = await subscriberNode();
      assert.ok(after && after !== before, `moved from ${before} to ${after}`);
      // A project whose slot lives on a surviving master: its publish reaches the moved subscriber.
      let survivor = '';
      for (let i = 0; !survivor; i++) {
        const candidate = `${project}-${i}`;
        const slot = Number(await clients.find((c) => c.status === 'ready')!.call('CLUSTER', 'KEYSLOT', logKey(PREFIX, candidate)));
        if (doomed.portOfSlot(slot) !== before) survivor = candidate;
      }
      await broker.subscribe(projectPattern(PREFIX, survivor), rec.listener, true);
      await clients.find((c) => c.status === 'ready')!.publish(stageChannel(PREFIX, project, 'rewrite'), 'restored');
      const id = await broker.publish(survivor, 'rewrite', 'token', JSON.stringify({ type: 'token', content: 'after' }));
      await rec.waitFor(2);
      assert.deepEqual(rec.payloads(), ['restored', `{"id":"${id}","type":"token","content":"after"}`]);
    } finally {
      await Promise.all(clients.map((client) => client.quit().catch(() => client.disconnect())));
    }
  });
});

function run(command: string, args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} exited with ${code}:\n${err}`))));
  });
}
