import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Broker } from '../src/broker/broker.js';
import { brokerContract, recorder, uniqueProject } from './broker.contract.js';
import { InvalidArgumentError } from '../src/broker/errors.js';
import { compareLogIds } from '../src/broker/log-id.js';
import { globToRegExp } from '../src/broker/glob-to-regexp.js';
import { MemoryBroker } from '../src/broker/memory-broker.js';
import { projectPattern, stageChannel } from '../src/channels.js';

/** Each broker gets its own fake clock, so the TTL test moves time instead of waiting for it. */
const clocks = new WeakMap<Broker, { now: number }>();

brokerContract('MemoryBroker', () => ({
  async create(options) {
    const clock = { now: Date.now() };
    const broker = new MemoryBroker({ ...options, now: () => clock.now });
    clocks.set(broker, clock);
    return broker;
  },
  async expire(broker) {
    clocks.get(broker)!.now += 86_400_000;
  },
  async publishForeign(broker, channel, payload) {
    await (broker as MemoryBroker).publishRaw(channel, payload);
  },
}));

describe('MemoryBroker', () => {
  it('refuses a prefix that breaks the id rule: separators, globs, nothing, or a name of an object’s internals', () => {
    for (const prefix of ['ai_story:project:victim:stage:x#', 'a*', '', '__proto__', 'constructor', 'prototype']) {
      assert.throws(() => new MemoryBroker({ prefix }), InvalidArgumentError, prefix);
    }
    assert.equal(new MemoryBroker({ prefix: 'other_app' }).prefix, 'other_app');
  });

  it('reads only a message’s own fields, so an id on Object.prototype cannot stop every publish', async () => {
    const broker = new MemoryBroker();
    Object.defineProperty(Object.prototype, 'id', { value: '1-0', configurable: true, writable: true });
    try {
      assert.match(await broker.publish('p', 's', 'token', '{"type":"token"}'), /^\d+-\d+$/);
    } finally {
      Reflect.deleteProperty(Object.prototype, 'id');
      await broker.close();
    }
  });

  it('keeps ids increasing when the clock goes back or stands still', async () => {
    let now = 5_000;
    const broker = new MemoryBroker({ now: () => now });
    const a = await broker.publish('p', 's', 'message', '{}');
    const b = await broker.publish('p', 's', 'message', '{}');
    now = 1_000;
    const c = await broker.publish('q', 's', 'message', '{}');
    now = 9_000;
    const d = await broker.publish('p', 's', 'message', '{}');
    assert.deepEqual([a, b, c, d], ['5000-0', '5000-1', '5000-2', '9000-0']);
    assert.ok(compareLogIds(c, d) < 0);
    await broker.close();
  });

  it('keeps a log alive while messages arrive within the TTL of each other', async () => {
    let now = 0;
    const broker = new MemoryBroker({ logTtlSeconds: 10, now: () => now });
    const first = await broker.publish('p', 's', 'message', '{}');
    now = 9_999;
    await broker.publish('p', 's', 'message', '{}');
    now = 19_998;
    assert.equal((await broker.replay('p', first)).covered, true);
    now = 19_999;
    assert.equal((await broker.replay('p', first)).covered, false);
    await broker.close();
  });

  it('calls listeners after publish returns, not during it', async () => {
    const broker = new MemoryBroker();
    const project = uniqueProject();
    const rec = recorder();
    await broker.subscribe(stageChannel(broker.prefix, project, 's'), rec.listener);
    const publishing = broker.publish(project, 's', 'message', '{}');
    assert.equal(rec.heard.length, 0);
    await publishing;
    await rec.waitFor(1);
    await broker.close();
  });

  it('delivers a message to the listeners subscribed when it was published, project patterns included, not to later ones', async () => {
    const broker = new MemoryBroker();
    const project = uniqueProject();
    const early = recorder();
    const late = recorder();
    await broker.subscribe(projectPattern(broker.prefix, project), early.listener, true);
    const first = broker.publish(project, 's', 'message', '{}');
    await broker.subscribe(projectPattern(broker.prefix, project), late.listener, true);
    await first;
    await broker.publish(project, 's', 'message', '{ }');
    await early.waitFor(2);
    await late.waitFor(1);
    assert.deepEqual([early.heard.length, late.heard.length], [2, 1]);
    await broker.close();
  });

  it('matches Redis glob patterns', () => {
    const cases: [string, string, boolean][] = [
      ['a:*', 'a:b:c', true],
      ['a:*', 'b:a', false],
      ['a:?', 'a:b', true],
      ['a:?', 'a:bc', false],
      ['a:[bc]', 'a:c', true],
      ['a:[^bc]', 'a:c', false],
      ['a:[a-c]x', 'a:bx', true],
      ['a.b', 'axb', false],
      ['a\\*', 'a*', true],
      ['a\\*', 'ab', false],
      ['(x)|y', '(x)|y', true],
    ];
    for (const [glob, channel, expected] of cases) assert.equal(globToRegExp(glob).test(channel), expected, `${glob} ~ ${channel}`);
  });
});
