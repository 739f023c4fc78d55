import { expect } from '@open-wc/testing';
import { backoffCeiling, exponentialBackoff } from './backoff.js';

describe('backoff', () => {
  it('doubles the ceiling per attempt from the base', () => {
    expect([1, 2, 3, 4].map((attempt) => backoffCeiling(attempt, 1000))).to.deep.equal([1000, 2000, 4000, 8000]);
  });

  it('caps the ceiling at maxMs', () => {
    expect(backoffCeiling(20, 1000, 30_000)).to.equal(30_000);
  });

  it('never caps below a server retry larger than maxMs', () => {
    expect(backoffCeiling(1, 60_000, 30_000)).to.equal(60_000);
    expect(backoffCeiling(3, 60_000, 30_000)).to.equal(60_000);
  });

  it('applies full jitter between 0 and the ceiling', () => {
    expect(exponentialBackoff({ random: () => 0 })({ attempt: 3, baseMs: 1000 })).to.equal(0);
    expect(exponentialBackoff({ random: () => 0.5 })({ attempt: 3, baseMs: 1000 })).to.equal(2000);
    expect(exponentialBackoff({ random: () => 0.999999 })({ attempt: 3, baseMs: 1000 })).to.equal(3999);
  });

  it('takes factor and cap options', () => {
    const strategy = exponentialBackoff({ random: () => 0.5, factor: 3, maxMs: 5000 });
    expect(strategy({ attempt: 2, baseMs: 1000 })).to.equal(1500);
    expect(strategy({ attempt: 5, baseMs: 1000 })).to.equal(2500);
  });
});
