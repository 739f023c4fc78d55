import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StageTexts, TokenTexts, continueText, encodeCompactToken, isCompactToken, withFullText } from './compact.js';

describe('compact tokens', () => {
  it('encodes a token without full_text and with the offset of its piece, after the other fields', () => {
    const compact = encodeCompactToken({ id: '1-0', type: 'token', stage: 's', content: '界', full_text: '世界' });
    assert.deepEqual(compact, { id: '1-0', type: 'token', stage: 's', content: '界', offset: 1 });
    assert.deepEqual(Object.keys(compact!), ['id', 'type', 'stage', 'content', 'offset']);
    // Offsets count UTF-16 code units, as JavaScript string lengths do.
    assert.equal(encodeCompactToken({ type: 'token', content: 'a', full_text: '😀a' })!.offset, 2);
  });

  it('encodes nothing that is not a well-formed token', () => {
    assert.equal(encodeCompactToken({ type: 'done', content: 'a', full_text: 'a' }), null);
    assert.equal(encodeCompactToken({ type: 'token', content: 'b', full_text: 'a' }), null, 'text that does not end with the piece');
    assert.equal(encodeCompactToken({ type: 'token', content: 'a' }), null);
  });

  it('continues a text only where it ends, and restarts it at offset 0', () => {
    assert.equal(continueText('ab', 2, 'c'), 'abc');
    assert.equal(continueText('ab', 0, 'x'), 'x');
    assert.equal(continueText('ab', 1, 'c'), null, 'a repeated piece');
    assert.equal(continueText('ab', 3, 'c'), null, 'a lost piece');
  });

  it('tells compact tokens from original ones', () => {
    assert.ok(isCompactToken({ content: 'a', offset: 0 }));
    assert.ok(!isCompactToken({ content: 'a', offset: 0, full_text: 'a' }));
    assert.ok(!isCompactToken({ content: 'a', offset: -1 }));
    assert.ok(!isCompactToken({ content: 'a', offset: 1.5 }));
  });

  it('round-trips a generation through StageTexts, per stage, and refuses a token out of step', () => {
    const texts = new StageTexts();
    let full = '';
    for (const piece of ['从前', ' once', ' upon']) {
      full += piece;
      const wire = encodeCompactToken({ type: 'token', stage: 'a', content: piece, full_text: full })!;
      assert.ok(texts.apply(wire));
      assert.deepEqual(wire, { type: 'token', stage: 'a', content: piece, full_text: full });
    }
    assert.ok(texts.apply({ type: 'token', stage: 'b', content: 'x', full_text: 'x' }), 'an original-format token sets the text');
    assert.equal(texts.get('b'), 'x');
    assert.equal(texts.apply({ type: 'token', stage: 'a', content: '!', offset: 3 }), false);
    assert.equal(texts.get('a'), full, 'a refused token changes nothing');
  });
});

describe('linear tokens back to the original format', () => {
  const byNumber = (a: string, b: string) => Number(a.split('-')[0]) - Number(b.split('-')[0]);

  it('puts full_text where offset was, byte for byte', () => {
    const original = JSON.stringify({ id: '1-0', type: 'token', stage: 's', content: '界"', full_text: '世界"' });
    const linear = JSON.stringify(encodeCompactToken(JSON.parse(original)));
    assert.equal(withFullText(linear, '世界"'), original);
    assert.equal(withFullText('{"content":"a","offset":0,"x":1}', 'a'), '{"content":"a","x":1,"full_text":"a"}', 'another shape is re-serialised');
  });

  it('continues primed texts, checks tokens the read already held, and never invents a text', () => {
    const texts = new TokenTexts(byNumber);
    texts.set('s', 'abc', '3-0');
    assert.equal(texts.apply('s', { id: '2-0', offset: 1, content: 'b' }), 'ab', 'held by the read: its text up to the piece');
    assert.equal(texts.apply('s', { id: '2-0', offset: 1, content: 'x' }), null, 'held, but not this piece');
    assert.equal(texts.apply('s', { id: '4-0', offset: 3, content: 'd' }), 'abcd');
    assert.equal(texts.apply('s', { id: '5-0', offset: 9, content: 'e' }), null, 'a gap');
    assert.equal(texts.text('s'), undefined, 'out of step: forgotten until a new run');
    assert.equal(texts.apply('s', { id: '6-0', offset: 2, content: 'f' }), null);
    assert.equal(texts.apply('s', { id: '7-0', offset: 0, content: 'new' }), 'new', 'offset 0 starts a new run');
    assert.equal(texts.apply('t', { offset: 1, content: 'x' }), null, 'a stage never read');
  });
});
