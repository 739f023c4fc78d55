import { expect } from '@open-wc/testing';
import { EVENT_NAMES, STAGE_MESSAGE_TYPES, isClientEvent, isStageMessageType, isStreamEvent } from './event-names.js';

describe('event names', () => {
  it('sorts every event of the client into stage messages, other stream events and its own', () => {
    expect(STAGE_MESSAGE_TYPES).to.deep.equal(['token', 'stage_update', 'progress', 'done', 'error', 'cancelled']);
    expect(EVENT_NAMES.filter(isStreamEvent)).to.deep.equal([...STAGE_MESSAGE_TYPES, 'connected', 'reset', 'snapshot', 'token_expired']);
    expect(EVENT_NAMES.filter(isClientEvent)).to.deep.equal(['message', 'disconnected', 'reconnecting', 'state']);
  });

  it('knows nothing of other names, including those of an object’s internals', () => {
    for (const name of ['thumbnail', '__proto__', 'constructor', 'toString', '']) {
      expect([isStageMessageType(name), isStreamEvent(name), isClientEvent(name)], name).to.deep.equal([false, false, false]);
    }
    expect(isStageMessageType('token_expired')).to.equal(false);
  });
});
