import { expect } from '@open-wc/testing';
import { chineseLabels, englishLabels, labelsFor, mergeLabels } from './labels.js';

describe('mergeLabels', () => {
  it('keeps the entries of a group it does not override, and replaces functions and strings whole', () => {
    const stage = (name: string) => `<${name}>`;
    const merged = mergeLabels(englishLabels, { state: { open: 'On air' }, stage, retry: 'Again' });
    expect(merged.state).to.deep.equal({ ...englishLabels.state, open: 'On air' });
    expect(merged.stage).to.equal(stage);
    expect(merged.retry).to.equal('Again');
    expect(merged.connect).to.equal(englishLabels.connect);
    expect(merged.output('rewrite'), 'the default output label names the stage as overridden').to.equal('<rewrite> output');
    expect(englishLabels.output('rewrite')).to.equal('Rewrite output');
  });

  it('changes neither argument, keeps the default for undefined and null, and never writes a prototype', () => {
    const overrides = JSON.parse('{"state": {"closed": "Idle"}, "__proto__": {"polluted": true}, "retry": null}');
    const merged = mergeLabels(chineseLabels, { ...overrides, done: undefined });
    expect(chineseLabels.state.closed).to.equal('已关闭');
    expect(merged.state.closed).to.equal('Idle');
    expect(merged.done).to.equal('完成');
    expect(merged.retry).to.equal('立即重试');
    expect(({} as Record<string, unknown>)['polluted']).to.equal(undefined);
    expect(Object.getPrototypeOf(merged)).to.equal(Object.prototype);
  });
});

describe('metadataValue', () => {
  it('shows durations with units, lists, yes/no and grouped numbers, per language', () => {
    const en = labelsFor('en').metadataValue;
    const zh = labelsFor('zh-Hans').metadataValue;
    expect([en('latency_ms', 850), en('latency_ms', 3817), en('wait_s', 75), en('tokens_used', 3817)]).to.deep.equal(['850 ms', '3.8 s', '1 min 15 s', '3,817']);
    expect([zh('latency_ms', 850), zh('latency_ms', 3817), zh('wait_s', 75)]).to.deep.equal(['850 毫秒', '3.8 秒', '1 分 15 秒']);
    expect([en('tags', ['a', 1, { b: 2 }]), en('nested', { a: [1, 2] }), en('ok', false), en('none', null)]).to.deep.equal(['a, 1, {"b":2}', '{"a":[1,2]}', 'no', '—']);
  });
});
