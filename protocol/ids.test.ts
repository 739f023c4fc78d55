import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ID_RULE, isValidId } from './ids.js';
import { compareLogIds, isLogId } from './log-id.js';

describe('ids', () => {
  it('accepts the id alphabet up to 64 characters and refuses the names of object internals', () => {
    for (const id of ['1', 'rewrite', 'a_b-C', 'x'.repeat(64)]) assert.ok(isValidId(id), id);
    for (const id of ['', 'x'.repeat(65), 'a:b', 'a*', 'a b', '__proto__', 'constructor', 'prototype', 42]) assert.ok(!isValidId(id), String(id));
    assert.match(ID_RULE, /__proto__/);
  });

  it('orders log ids by time, then sequence, beyond 2^53', () => {
    assert.ok(compareLogIds('1-0', '1-1') < 0);
    assert.ok(compareLogIds('2-0', '1-9') > 0);
    assert.equal(compareLogIds('9007199254740993-0', '9007199254740993-0'), 0);
    assert.ok(compareLogIds('9007199254740993-0', '9007199254740992-5') > 0);
    assert.ok(isLogId('0-0') && !isLogId('1') && !isLogId('18446744073709551616-0'));
    assert.throws(() => compareLogIds('x', '1-0'), TypeError);
  });
});
