import { expect } from '@open-wc/testing';
import { liveToken, resolveToken, type TokenSource } from './token-source.js';

describe('resolveToken', () => {
  it('gives a string as it is, and asks a function (sync or async) each time', async () => {
    let issued = 0;
    expect(await resolveToken('jwt')).to.equal('jwt');
    expect(await resolveToken(undefined)).to.equal(undefined);
    expect(await resolveToken(() => `sync-${++issued}`)).to.equal('sync-1');
    expect(await resolveToken(async () => `async-${++issued}`)).to.equal('async-2');
  });

  it('rejects when the function throws, so a caller can treat it as a failed attempt', async () => {
    const error = await resolveToken(() => {
      throw new Error('no session');
    }).catch((thrown: unknown) => thrown);
    expect(error).to.be.instanceOf(Error);
  });
});

describe('liveToken', () => {
  it('is undefined while there is no token, so no authenticated endpoint is chosen', () => {
    expect(liveToken(() => undefined)).to.equal(undefined);
  });

  it('reads the current value at every call, string or function', async () => {
    let current: TokenSource | undefined = 'first';
    const source = liveToken(() => current) as () => Promise<string | null | undefined>;
    expect(await source()).to.equal('first');
    current = () => 'second';
    expect(await source()).to.equal('second');
    current = undefined;
    expect(await source()).to.equal(undefined);
  });
});
