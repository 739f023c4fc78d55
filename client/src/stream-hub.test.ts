import { expect } from '@open-wc/testing';
import { createSSEClient } from './sse-client.js';
import { StreamHub } from './stream-hub.js';
import { Recorder } from '../test/recorder.js';
import { ScriptedServer } from '../test/sse-server.js';
import { connected, token } from '../test/fixtures.js';

/** Stage names any worker can PUBLISH; on a plain object each one reaches something every object shares. */
const HOSTILE = ['__proto__', 'constructor', 'hasOwnProperty'];
/** What `snapshot[stage] ??= {}` would have reached for each of them. */
const SHARED: object[] = [Object.prototype, Object, Object.prototype.hasOwnProperty];

describe('StreamHub', () => {
  let server: ScriptedServer;
  let detach: (() => void) | undefined;

  beforeEach(() => {
    server = new ScriptedServer();
  });

  afterEach(() => {
    detach?.();
    detach = undefined;
    server.closeAll();
    for (const target of SHARED) Reflect.deleteProperty(target, 'token');
  });

  async function attached(): Promise<{ hub: StreamHub; events: Recorder; stream: Awaited<ReturnType<ScriptedServer['nextStream']>> }> {
    const client = createSSEClient('1', null, { baseUrl: 'http://sse.test', fetch: server.fetch });
    const hub = new StreamHub(client);
    const events = new Recorder(client);
    detach = hub.attach(() => {});
    const stream = await server.nextStream();
    stream.event('connected', connected(null));
    return { hub, events, stream };
  }

  it('keeps the latest message of a stage named __proto__, constructor or hasOwnProperty as data, touching no shared object', async () => {
    const { hub, events, stream } = await attached();
    for (const stage of HOSTILE) stream.event('token', token(stage, 'x', 'x'));
    await events.count('token', HOSTILE.length);
    for (const target of SHARED) expect(Object.hasOwn(target, 'token')).to.equal(false);
    expect(Object.keys(hub.snapshot)).to.deep.equal(HOSTILE);
    for (const stage of HOSTILE) expect(hub.snapshot[stage]?.token?.stage).to.equal(stage);
  });

  it('takes a reset’s stages into prototype-less objects, so messages of any stage afterwards stay data', async () => {
    const { hub, events, stream } = await attached();
    // As the server frames it: the JSON holds "__proto__" as an ordinary key.
    const latest = JSON.stringify(token('__proto__', 'a', 'a'));
    stream.write(`event: reset\ndata: {"type":"reset","project_id":"1","stage":null,"reason":"expired","stages":{"__proto__":{"token":${latest}}},"timestamp":1}\n\n`);
    await events.count('reset', 1);
    expect(Object.getPrototypeOf(hub.snapshot)).to.equal(null);
    expect(hub.snapshot['__proto__']?.token?.full_text).to.equal('a');
    for (const stage of HOSTILE) stream.event('token', token(stage, 'ab', 'b'));
    await events.count('token', HOSTILE.length);
    for (const target of SHARED) expect(Object.hasOwn(target, 'token')).to.equal(false);
    for (const stage of HOSTILE) expect(hub.snapshot[stage]?.token?.full_text).to.equal('ab');
  });
});
