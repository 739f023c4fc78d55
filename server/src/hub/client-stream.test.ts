/** ClientStream on a real HTTP response: what it holds back while a resume replays, and waiting for the socket. */
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { compareLogIds, isLogId } from '../../../protocol/log-id.js';
import { ClientStream, type CloseReason } from './client-stream.js';
import { parsePayload } from './sse-frame.js';
import { ResponseSink } from './stream-sink.js';

let server: Server | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  server?.closeAllConnections();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

/** A stream on the response to a raw GET whose socket the test holds; the client reads only when told to. */
async function open(maxPending: number) {
  server = createServer();
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const request = new Promise<ServerResponse>((resolve) => server!.once('request', (_req, res) => resolve(res)));
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  sockets.push(socket);
  socket.pause();
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  const res = await request;
  const closed: CloseReason[] = [];
  const stream = new ClientStream(new ResponseSink(res), {
    projectId: 'p',
    stage: 's',
    clientKey: '',
    maxBufferBytes: 64 * 1024 * 1024,
    maxPending,
    ids: { isId: isLogId, compareIds: compareLogIds },
    onClose: (_stream, reason) => closed.push(reason),
  });
  /** Everything the client received, once the stream ended. */
  const received = async () => {
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.resume();
    await new Promise((resolve) => socket.once('end', resolve));
    return text;
  };
  return { res, stream, closed, received };
}

const message = (id: string) => parsePayload(JSON.stringify({ id, type: 'token', stage: 's', content: id }));

describe('ClientStream while a resume replays', () => {
  it('holds back only live messages the replay has not written yet, so maxPending counts those alone', async () => {
    const { stream, closed, received } = await open(3);
    for (const id of ['1-0', '2-0', '3-0']) stream.deliver(message(id));
    stream.replayedThrough('2-0');
    // Two more fit: the copies of 1-0 and 2-0 were dropped, and a late copy of a replayed one is dropped on arrival.
    stream.deliver(message('2-0'));
    stream.deliver(message('4-0'));
    stream.deliver(message('5-0'));
    assert.deepEqual([stream.state, closed], ['opening', []]);
    stream.goLive('2-0');
    stream.close('server_shutdown');
    const ids = [...(await received()).matchAll(/^id: (\S+)$/gm)].map((match) => match[1]);
    assert.deepEqual(ids, ['3-0', '4-0', '5-0']);
  });

  it('still drops a client once maxPending messages newer than the replay pile up', async () => {
    const { stream, closed } = await open(3);
    stream.replayedThrough('1-0');
    for (const id of ['2-0', '3-0', '4-0', '5-0']) stream.deliver(message(id));
    assert.deepEqual([stream.state, closed], ['closed', ['slow_consumer']]);
  });

  it('ends a wait for the socket to drain when the stream ends, so a replay never waits on a dropped client', async () => {
    const { res, stream, closed } = await open(10);
    // More than the kernel's buffers take: the response holds the rest, past its high-water mark.
    res.write(Buffer.alloc(16 * 1024 * 1024, 'x'));
    assert.equal(res.writableNeedDrain, true);
    const drained = stream.drained();
    stream.close('broker_error');
    await drained;
    assert.deepEqual(closed, ['broker_error']);
    assert.equal(res.listenerCount('drain'), 0);
  });
});
