/**
 * Checks that a RedisBroker's replay and snapshot resolve only once its subscriber heard every message they
 * return: the hub drops live messages up to what it replayed, so a message heard later would reach a client twice.
 * Shared by the single-Redis and the cluster tests.
 */
import assert from 'node:assert/strict';
import { uniqueProject } from './broker.contract.js';
import type { RedisBroker } from '../src/broker/redis-broker.js';
import { projectPattern } from '../src/channels.js';

export async function inStepCheck(broker: RedisBroker, projectId = uniqueProject()): Promise<void> {
  const heard = new Set<string>();
  await broker.subscribe(projectPattern(broker.prefix, projectId), (payload) => heard.add(JSON.parse(payload).id), true);
  const message = JSON.stringify({ type: 'token', stage: 'rewrite', project_id: projectId, timestamp: 1 });
  const first = await broker.publish(projectId, 'rewrite', 'token', message);
  // Bursts of publishes in flight while the log is read, again and again: a race shows within a few rounds.
  for (let round = 0; round < 20; round++) {
    const burst = Promise.all(Array.from({ length: 20 }, () => broker.publish(projectId, 'rewrite', 'token', message)));
    for (let read = 0; read < 3; read++) {
      const { entries } = await broker.replay(projectId, first);
      const unheard = entries.filter((entry) => !heard.has(entry.id)).length;
      assert.equal(unheard, 0, `round ${round}: the replay returned ${unheard} messages the subscriber had not heard yet`);
      // In pages, as the hub reads a long resume: only the last page (not full) waits, and covers the ones before.
      const paged: string[] = [];
      for (let after = first, more = true; more; ) {
        const page = await broker.replay(projectId, after, { limit: 64 });
        paged.push(...page.entries.map((entry) => entry.id));
        more = page.more;
        after = page.entries.at(-1)?.id ?? after;
      }
      const unheardPaged = paged.filter((id) => !heard.has(id)).length;
      assert.equal(unheardPaged, 0, `round ${round}: the paged replay returned ${unheardPaged} messages the subscriber had not heard yet`);
      const { lastId } = await broker.snapshot(projectId);
      assert.ok(lastId !== null && heard.has(lastId), `round ${round}: the snapshot's newest id ${lastId} was not heard yet`);
    }
    await burst;
  }
}
