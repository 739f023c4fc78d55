/**
 * The Python subscriber (workers/python/ai_story_subscriber.py) with cluster=True against a private three-master
 * Redis Cluster: what the TypeScript StreamPublisher publishes through a cluster RedisBroker, on projects spread
 * over every master, arrives live with full_text rebuilt, resumes exactly with listen(last_id=...), and state() matches.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { uniqueProject } from './broker.contract.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { logKey } from '../src/channels.js';
import { StreamPublisher } from '../src/publisher.js';
import { startRedisCluster, type TestRedisCluster } from './redis-cluster.js';
import { PYTHON, PYTHON_WORKERS } from './python.js';

const PREFIX = 'ai_story';

const noClusterPy = spawnSync(PYTHON, ['-c', 'import redis.cluster'], { encoding: 'utf8' }).status !== 0;
// Outside CI a machine without redis-py >= 4.1 skips with a message; in CI (.ci/run installs python3-redis) it must run.
const skipPython = noClusterPy && !process.env.CI ? `${PYTHON} cannot import redis.cluster (apt-get install python3-redis)` : false;

/** Python: one all-stages subscriber per project (argv[1], a JSON list), cluster=True on the node argv[2]. */
const LISTENER = `
import json, sys
from ai_story_subscriber import RedisStreamSubscriber
projects, url, resume = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
def out(via, project, message):
    print(json.dumps({"via": via, "project": project, **message}, ensure_ascii=False), flush=True)
subscribers = [RedisStreamSubscriber(project, redis_url=url, cluster=True) for project in projects]
try:
    for subscriber in subscribers:
        subscriber.subscribe()
    print("ready", flush=True)
    for project, subscriber in zip(projects, subscribers):
        for message in subscriber.listen(timeout=15):
            out("live", project, message)
            if message["type"] == "done" and message["stage"] == "storyboard":
                break
        with RedisStreamSubscriber(project, redis_url=url, cluster=True) as resumed:
            for message in resumed.listen(timeout=0.3, last_id=resume[project]):
                out("resumed", project, message)
        out("state", project, subscriber.state())
finally:
    for subscriber in subscribers:
        subscriber.close()
`;

interface Sent {
  id: string;
  stage: string;
  type: string;
  content?: string;
  full_text?: string;
}

const shape = (m: Record<string, unknown>): Sent => ({
  id: m.id as string,
  stage: m.stage as string,
  type: m.type as string,
  ...(m.content === undefined ? {} : { content: m.content as string }),
  ...(m.full_text === undefined ? {} : { full_text: m.full_text as string }),
});

describe('Python subscriber with cluster=True on a Redis Cluster', { skip: skipPython }, () => {
  let cluster: TestRedisCluster;
  let admin: Redis;
  let broker: RedisBroker;

  before(async () => {
    cluster = await startRedisCluster();
    admin = new Redis(cluster.nodes[0]!.port, cluster.nodes[0]!.host);
    broker = new RedisBroker({ prefix: PREFIX, cluster: { nodes: cluster.nodes } });
  });
  after(async () => {
    await broker?.close();
    await admin?.quit();
    await cluster?.close();
  });

  /** One project per master. */
  async function projectsOnEveryMaster(): Promise<string[]> {
    const byMaster = new Map<number, string>();
    for (let i = 0; byMaster.size < cluster.nodes.length; i++) {
      if (i > 300) throw new Error('no project id found for some master');
      const project = uniqueProject();
      const slot = Number(await admin.call('CLUSTER', 'KEYSLOT', logKey(PREFIX, project)));
      const master = cluster.portOfSlot(slot);
      if (!byMaster.has(master)) byMaster.set(master, project);
    }
    return [...byMaster.values()];
  }

  it('receives exactly the live messages with full_text on every master, resumes exactly, and state() matches', async () => {
    const projects = await projectsOnEveryMaster();
    assert.equal(projects.length, 3);

    // History before the subscriber, per project: a finished rewrite stage.
    const history = new Map<string, Sent[]>();
    for (const project of projects) {
      await using rewrite = new StreamPublisher({ projectId: project, stage: 'rewrite', broker });
      let text = '';
      const sent: Sent[] = [{ id: await rewrite.publishStageUpdate('processing', 0, 'rewriting'), stage: 'rewrite', type: 'stage_update' }];
      for (const piece of ['从前', '😀', `有一座山 ${project}`]) {
        text += piece;
        sent.push({ id: await rewrite.publishToken(piece, text), stage: 'rewrite', type: 'token', content: piece, full_text: text });
      }
      sent.push({ id: await rewrite.publishDone(text, { tokens_used: 3 }), stage: 'rewrite', type: 'done', full_text: text });
      history.set(project, sent);
    }
    const rewriteText = (project: string) => history.get(project)!.at(-1)!.full_text!;

    // Resume after the first history token: the rest of the history, then every live message.
    const resumeAfter = Object.fromEntries(projects.map((project) => [project, history.get(project)![1]!.id]));
    const node = cluster.nodes[1]!;
    const child = spawn(PYTHON, ['-c', LISTENER, JSON.stringify(projects), `redis://${node.host}:${node.port}`, JSON.stringify(resumeAfter)], {
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: PYTHON_WORKERS },
    });
    let err = '';
    child.stderr.on('data', (chunk) => (err += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      const first = await lines.next();
      if (first.done || first.value !== 'ready') throw new Error(`the Python subscriber did not start:\n${err}`);

      // Live, interleaved over the projects: a storyboard stage with tokens, then done.
      const live = new Map<string, Sent[]>(projects.map((project) => [project, []]));
      const boards = projects.map((project) => new StreamPublisher({ projectId: project, stage: 'storyboard', broker }));
      const texts = projects.map(() => '');
      for (const [i, board] of boards.entries()) {
        live.get(projects[i]!)!.push({ id: await board.publishStageUpdate('processing', 10, 'boarding'), stage: 'storyboard', type: 'stage_update' });
      }
      for (const piece of ['镜头一', '🎬🇫🇷', ' é "q"\n', '👩‍👩‍👧 二']) {
        for (const [i, board] of boards.entries()) {
          texts[i] += piece;
          live.get(projects[i]!)!.push({ id: await board.publishToken(piece, texts[i]), stage: 'storyboard', type: 'token', content: piece, full_text: texts[i] });
        }
      }
      for (const [i, board] of boards.entries()) {
        live.get(projects[i]!)!.push({ id: await board.publishDone(texts[i]!, { frames: 2 }), stage: 'storyboard', type: 'done', full_text: texts[i] });
        await board.close();
      }

      const got: Record<string, unknown>[] = [];
      for (;;) {
        const { value, done } = await lines.next();
        if (done) break;
        got.push(JSON.parse(value) as Record<string, unknown>);
      }
      assert.equal(await exited, 0, err);

      for (const [i, project] of projects.entries()) {
        const mine = got.filter((m) => m.project === project);
        const liveGot = mine.filter((m) => m.via === 'live');
        assert.deepEqual(liveGot.map(shape), live.get(project), `live messages of ${project}`);
        assert.ok(liveGot.every((m) => m.offset === undefined && m.project_id === project && typeof m.timestamp === 'number'));

        const resumed = mine.filter((m) => m.via === 'resumed');
        assert.deepEqual(resumed.map(shape), [...history.get(project)!.slice(2), ...live.get(project)!], `resumed messages of ${project}`);
        assert.ok(resumed.every((m) => m.offset === undefined));

        const states = mine.filter((m) => m.via === 'state') as unknown as {
          type: string;
          id: string;
          project_id: string;
          stages: Record<string, Record<string, Record<string, unknown> | string | undefined>>;
        }[];
        assert.equal(states.length, 1);
        const [state] = states;
        assert.equal(state!.type, 'snapshot');
        assert.equal(state!.project_id, project);
        assert.equal(state!.id, live.get(project)!.at(-1)!.id);
        assert.deepEqual(Object.keys(state!.stages).sort(), ['rewrite', 'storyboard']);
        const { rewrite, storyboard } = state!.stages as Record<string, Record<string, Record<string, unknown> | undefined> & { text?: string }>;
        assert.equal(rewrite!.done!.full_text, rewriteText(project));
        assert.equal(rewrite!.stage_update!.message, 'rewriting');
        assert.equal(storyboard!.done!.full_text, texts[i]);
        assert.equal(storyboard!.stage_update!.message, 'boarding');
        assert.equal(storyboard!.text, undefined);
      }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    }
  });
});
