import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HubEvents, type HubMessage } from './hub-events.js';

const message: HubMessage = { id: '1-0', type: 'token', stage: 'rewrite', timestamp: 1 };

describe('HubEvents', () => {
  it('calls each listener of an event with its arguments, in the order they were added', () => {
    const events = new HubEvents();
    const calls: string[] = [];
    events.on('message', (m, written) => calls.push(`a ${m.id} ${written}`));
    events.on('message', (m, written) => calls.push(`b ${m.id} ${written}`));
    events.on('stream-closed', () => calls.push('closed'));
    events.emit('message', message, 3);
    assert.deepEqual(calls, ['a 1-0 3', 'b 1-0 3']);
  });

  it('stops calling a listener once its unsubscribe (or off) was called, and says when nobody listens', () => {
    const events = new HubEvents();
    let count = 0;
    const listener = () => count++;
    assert.equal(events.has('message'), false);
    const unsubscribe = events.on('message', listener);
    assert.equal(events.has('message'), true);
    events.emit('message', message, 1);
    unsubscribe();
    unsubscribe();
    events.emit('message', message, 1);
    assert.equal(count, 1);
    assert.equal(events.has('message'), false);

    events.on('message', listener);
    events.off('message', listener);
    events.emit('message', message, 1);
    assert.equal(count, 1);
  });
});
