import { expect } from '@open-wc/testing';
import { Emitter } from './emitter.js';

describe('Emitter', () => {
  it('calls the handlers of an event in the order they were added, with its data', () => {
    const emitter = new Emitter();
    const calls: string[] = [];
    emitter.on('token', (data: string) => calls.push(`a:${data}`));
    emitter.on('token', (data: string) => calls.push(`b:${data}`));
    emitter.on('done', () => calls.push('done'));
    emitter.emit('token', 'x');
    expect(calls).to.deep.equal(['a:x', 'b:x']);
  });

  it('reports a throwing handler and still calls the others', () => {
    const reported: unknown[] = [];
    const emitter = new Emitter((error) => reported.push(error));
    const calls: string[] = [];
    const boom = new Error('handler bug');
    emitter.on('token', () => {
      throw boom;
    });
    emitter.on('token', () => calls.push('after'));
    expect(() => emitter.emit('token', 1)).not.to.throw();
    expect(reported).to.deep.equal([boom]);
    expect(calls).to.deep.equal(['after']);
  });

  it('calls the handlers present when the emit began, whatever they add or remove', () => {
    const emitter = new Emitter();
    const calls: string[] = [];
    const second = () => calls.push('second');
    const added = () => calls.push('added');
    emitter.on('state', () => {
      calls.push('first');
      emitter.off('state', second);
      emitter.on('state', added);
    });
    emitter.on('state', second);
    emitter.emit('state', null);
    expect(calls, 'second was removed during the emit, added was added').to.deep.equal(['first', 'second']);
    calls.length = 0;
    emitter.emit('state', null);
    expect(calls).to.deep.equal(['first', 'added']);
  });

  it('stops calling a handler once it is removed, and keeps one copy of a handler added twice', () => {
    const emitter = new Emitter();
    let count = 0;
    const handler = () => count++;
    emitter.on('done', handler);
    emitter.on('done', handler);
    emitter.emit('done', null);
    emitter.off('done', handler);
    emitter.emit('done', null);
    expect(count).to.equal(1);
  });
});
