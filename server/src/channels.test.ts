import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from './broker/errors.js';
import { ID_RULE, RESERVED_IDS, checkPrefix, isValidId } from './channels.js';

describe('the id rule', () => {
  it('accepts 1-64 letters, digits, "_" and "-"', () => {
    for (const id of ['42', 'rewrite', 'image_generation', 'a-b_C9', 'x'.repeat(64), '__proto', 'proto__', 'Constructor', 'toString']) {
      assert.equal(isValidId(id), true, id);
    }
  });

  it('refuses separators, globs, braces, the empty string, overlong ids and non-strings', () => {
    for (const id of ['', 'a b', 'a:b', 'p*', 'a?', '[a]', '{a}', 'a|b', 'x'.repeat(65), 42, null, undefined]) {
      assert.equal(isValidId(id), false, String(id));
    }
  });

  it('refuses __proto__, constructor and prototype, which name an object’s internals', () => {
    assert.deepEqual([...RESERVED_IDS], ['__proto__', 'constructor', 'prototype']);
    for (const id of RESERVED_IDS) assert.equal(isValidId(id), false, id);
    assert.ok(Object.isFrozen(RESERVED_IDS));
  });

  it('says the whole rule in words, reserved names included', () => {
    assert.match(ID_RULE, /^1-64 characters of A-Z, a-z, 0-9, "_" or "-"/);
    for (const id of RESERVED_IDS) assert.ok(ID_RULE.includes(`"${id}"`), id);
  });
});

describe('checkPrefix', () => {
  it('returns a prefix that follows the id rule', () => {
    assert.equal(checkPrefix('ai_story'), 'ai_story');
  });

  it('throws InvalidArgumentError for a prefix that would reach into another project’s names, or break the id rule', () => {
    for (const prefix of ['ai_story:project:victim:stage:x#', 'a:b', 'a*', '', ...RESERVED_IDS, 7, undefined]) {
      assert.throws(
        () => checkPrefix(prefix),
        (error: unknown) => error instanceof InvalidArgumentError && error.argument === 'prefix' && error.message.includes(ID_RULE),
        String(prefix),
      );
    }
  });
});
