import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { BatchFrames, formatComment, formatEvent, formatRetry, parsePayload, taggedFrame } from './sse-frame.js';

/** Parses frames the way a browser would, so each test checks the round trip and not only the bytes. */
function parse(text: string, chunkAt?: number): EventSourceMessage[] {
  const events: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => events.push(event) });
  if (chunkAt === undefined) parser.feed(text);
  else {
    parser.feed(text.slice(0, chunkAt));
    parser.feed(text.slice(chunkAt));
  }
  return events;
}

describe('SSE framing', () => {
  it('formats an event with id, event name and one data line', () => {
    assert.equal(formatEvent({ id: '1-0', event: 'token', data: '{"a":1}' }), 'id: 1-0\nevent: token\ndata: {"a":1}\n\n');
  });

  it('puts each line of multi-line data on its own data: line, for LF, CRLF and CR', () => {
    assert.equal(formatEvent({ data: 'a\nb\r\nc\rd' }), 'data: a\ndata: b\ndata: c\ndata: d\n\n');
    assert.deepEqual(parse(formatEvent({ data: 'a\nb\r\nc' })).map((e) => e.data), ['a\nb\nc']);
  });

  it('cannot be made to inject a field through data, id or event', () => {
    const hostile = formatEvent({ id: '1\nevent: x', event: 'token\n\ndata: evil', data: 'x\n\nid: 99\nevent: done\ndata: evil' });
    const events = parse(hostile);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.id, '1event: x');
    assert.equal(events[0]!.event, 'tokendata: evil');
    assert.equal(events[0]!.data, 'x\n\nid: 99\nevent: done\ndata: evil');
  });

  it('strips NUL from the id', () => {
    assert.equal(formatEvent({ id: 'a\0b', data: 'x' }), 'id: ab\ndata: x\n\n');
  });

  it('formats comments and retry lines that parsers ignore or honour', () => {
    assert.equal(formatComment('ping'), ': ping\n\n');
    assert.equal(formatComment('a\nb'), ': a b\n\n');
    assert.equal(formatRetry(3000), 'retry: 3000\n\n');
    assert.deepEqual(parse(formatComment('ping') + formatRetry(10)), []);
  });

  it('round-trips one event split across two chunks at every byte', () => {
    const frame = formatEvent({ id: '17-3', event: 'token', data: JSON.stringify({ type: 'token', content: '故事 story\n', full_text: '…' }) });
    const whole = parse(frame);
    for (let at = 0; at <= frame.length; at++) assert.deepEqual(parse(frame, at), whole, `split at ${at}`);
  });
});

describe('parsePayload', () => {
  it('names the event after the message type and takes the id from the message', () => {
    const parsed = parsePayload('{"id":"5-0","type":"token","stage":"rewrite","content":"a"}');
    assert.equal(parsed.type, 'token');
    assert.equal(parsed.id, '5-0');
    assert.equal(parsed.stage, 'rewrite');
    assert.equal(parsed.frame, 'id: 5-0\nevent: token\ndata: {"id":"5-0","type":"token","stage":"rewrite","content":"a"}\n\n');
  });

  it('delivers a foreign message without an id line', () => {
    assert.equal(parsePayload('{"type":"done","full_text":"x"}').frame, 'event: done\ndata: {"type":"done","full_text":"x"}\n\n');
  });

  it('delivers text that is not JSON as event "message", line by line', () => {
    const parsed = parsePayload('hello\nid: 1\n\nevent: done');
    assert.equal(parsed.type, 'message');
    assert.deepEqual(parse(parsed.frame).map((e) => [e.event, e.data]), [['message', 'hello\nid: 1\n\nevent: done']]);
  });

  it('refuses a type that is not a plain word as an event name', () => {
    assert.equal(parsePayload('{"type":"a b\\nc"}').type, 'message');
    assert.equal(parsePayload('[1,2]').type, 'message');
  });

  it('keeps pretty-printed JSON intact across data lines', () => {
    const pretty = JSON.stringify({ type: 'progress', current: 1 }, null, 2);
    const [event] = parse(parsePayload(pretty).frame);
    assert.deepEqual(JSON.parse(event!.data), { type: 'progress', current: 1 });
    assert.equal(event!.event, 'progress');
  });
});

describe('frames of a subscription (the multiplexed stream)', () => {
  it('appends the subscription as the last member of the data, keeping the id line and the event name', () => {
    const message = parsePayload('{"id":"1-0","type":"progress","stage":"s","current":1}');
    assert.equal(taggedFrame(message, 'original', 'p:1'), 'id: 1-0\nevent: progress\ndata: {"id":"1-0","type":"progress","stage":"s","current":1,"subscription":"p:1"}\n\n');
    // Built once per message and id.
    assert.equal(taggedFrame(message, 'original', 'p:1'), message.taggedFrames!.get('o:p:1'));
    assert.equal(message.frame, 'id: 1-0\nevent: progress\ndata: {"id":"1-0","type":"progress","stage":"s","current":1}\n\n', 'the untagged frame is unchanged');
  });

  it('wraps a payload that is not a JSON object as {"raw": …}, on one data line', () => {
    const [event] = parse(taggedFrame(parsePayload('plain\ntext'), 'original', 'a')!);
    assert.deepEqual([event!.event, event!.data], ['message', '{"raw":"plain\\ntext","subscription":"a"}']);
  });

  it('tags both forms of a linear token, and has no original frame for one whose text is unknown', () => {
    const message = parsePayload('{"id":"2-0","type":"token","stage":"s","content":"b","offset":1}');
    assert.equal(taggedFrame(message, 'compact', 'x'), 'id: 2-0\nevent: token\ndata: {"id":"2-0","type":"token","stage":"s","content":"b","offset":1,"subscription":"x"}\n\n');
    assert.equal(taggedFrame(message, 'original', 'x'), null);
    const known = parsePayload('{"id":"2-0","type":"token","stage":"s","content":"b","offset":1}');
    known.fullText = 'ab';
    assert.deepEqual(JSON.parse(parse(taggedFrame(known, 'original', 'x')!)[0]!.data), { id: '2-0', type: 'token', stage: 's', content: 'b', full_text: 'ab', subscription: 'x' });
  });

  it('joins a batch once per form and id, the untagged bytes those of the single stream', () => {
    const messages = [parsePayload('{"id":"3-0","type":"token","stage":"s","content":"a","full_text":"a"}'), parsePayload('{"id":"4-0","type":"done","stage":"s"}')];
    const frames = new BatchFrames(messages);
    assert.equal(frames.full()!.toString(), messages.map((m) => m.frame).join(''));
    assert.equal(frames.full('t'), frames.full('t'));
    assert.deepEqual(parse(frames.compact('t').toString()).map((e) => JSON.parse(e.data)), [
      { id: '3-0', type: 'token', stage: 's', content: 'a', offset: 0, subscription: 't' },
      { id: '4-0', type: 'done', stage: 's', subscription: 't' },
    ]);
  });
});
