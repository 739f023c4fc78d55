/** The demo's gap and duplicate counters: the rules the resume test relies on, checked without a browser. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StreamAudit } from '../demo/src/stream-audit.js';

let seq = 0;
const token = (content: string, full_text: string, stage = 'rewrite', id = `1-${seq++}`) => ({ type: 'token', stage, content, full_text, id });

describe('StreamAudit', () => {
  it('counts a contiguous token stream and its done without a gap', () => {
    const audit = new StreamAudit();
    audit.observe('connected', { type: 'connected', resumed: false });
    assert.equal(audit.observe('token', token('a', 'a')), undefined);
    assert.equal(audit.observe('token', token('b', 'ab')), undefined);
    assert.equal(audit.observe('done', { type: 'done', stage: 'rewrite', full_text: 'ab', id: '1-100' }), undefined);
    assert.deepEqual(audit.counts, { events: 3, gaps: 0, duplicates: 0, resumes: 0, resets: 0 });
  });

  it('finds a gap when a token is missing, and when done does not match the last token', () => {
    const audit = new StreamAudit();
    audit.observe('token', token('a', 'a'));
    assert.equal(audit.observe('token', token('c', 'abc')), 'gap');
    assert.equal(audit.observe('done', { type: 'done', stage: 'rewrite', full_text: 'abcd' }), 'gap');
    assert.equal(audit.counts.gaps, 2);
  });

  it('finds a duplicate id and does not count it twice as text', () => {
    const audit = new StreamAudit();
    const first = token('a', 'a');
    audit.observe('token', first);
    assert.equal(audit.observe('token', first), 'duplicate');
    assert.equal(audit.observe('token', token('b', 'ab')), undefined);
    assert.equal(audit.counts.duplicates, 1);
    assert.equal(audit.counts.gaps, 0);
  });

  it('takes the first token after connecting mid-run as the baseline', () => {
    const audit = new StreamAudit();
    assert.equal(audit.observe('token', token('d', 'abcd')), undefined);
    assert.equal(audit.observe('token', token('e', 'abcde')), undefined);
    assert.equal(audit.counts.gaps, 0);
  });

  it('keeps the stages apart, and starts a stage over on a new run', () => {
    const audit = new StreamAudit();
    audit.observe('token', token('a', 'a', 'rewrite'));
    audit.observe('token', token('x', 'x', 'storyboard'));
    audit.observe('token', token('b', 'ab', 'rewrite'));
    audit.observe('stage_update', { type: 'stage_update', stage: 'rewrite', status: 'processing', progress: 0, id: '2-0' });
    assert.equal(audit.observe('token', token('n', 'n', 'rewrite')), undefined);
    audit.observe('error', { type: 'error', stage: 'storyboard', error: 'boom', id: '2-1' });
    assert.equal(audit.observe('token', token('y', 'y', 'storyboard')), undefined);
    assert.equal(audit.counts.gaps, 0);
  });

  it('counts resumes and resets, and a reset forgets the baselines instead of reporting a gap', () => {
    const audit = new StreamAudit();
    audit.observe('token', token('a', 'a'));
    audit.observe('connected', { type: 'connected', resumed: true });
    audit.observe('reset', { type: 'reset', reason: 'expired', stages: {}, id: '9-0' });
    assert.equal(audit.observe('token', token('z', 'a...z')), undefined);
    assert.deepEqual(audit.counts, { events: 3, gaps: 0, duplicates: 0, resumes: 1, resets: 1 });
  });

  it('ignores the lifecycle events and messages without an id for duplicates', () => {
    const audit = new StreamAudit();
    audit.observe('disconnected', { reason: 'stream_ended', willReconnect: true });
    audit.observe('progress', { type: 'progress', stage: 'image_generation', current: 1, total: 2 });
    audit.observe('progress', { type: 'progress', stage: 'image_generation', current: 1, total: 2 });
    assert.deepEqual(audit.counts, { events: 2, gaps: 0, duplicates: 0, resumes: 0, resets: 0 });
  });
});
