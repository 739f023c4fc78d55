import { expect } from '@open-wc/testing';
import { isEventStream, isRetriedFailure, isRetriedStatus, parseRetryAfter, readHttpFailure } from './http-response.js';

const json = { 'content-type': 'application/json' };

describe('parseRetryAfter', () => {
  const now = Date.parse('2024-11-27T10:00:00Z');

  it('reads delay-seconds as milliseconds', () => {
    expect(parseRetryAfter('30', now)).to.equal(30_000);
    expect(parseRetryAfter(' 0 ', now)).to.equal(0);
  });

  it('reads an HTTP date as the time left until it, never negative', () => {
    expect(parseRetryAfter('Wed, 27 Nov 2024 10:00:05 GMT', now)).to.equal(5000);
    expect(parseRetryAfter('Wed, 27 Nov 2024 09:59:00 GMT', now)).to.equal(0);
  });

  it('gives undefined for a missing or unreadable value', () => {
    expect(parseRetryAfter(null, now)).to.equal(undefined);
    expect(parseRetryAfter('soon', now)).to.equal(undefined);
  });
});

describe('isRetriedStatus', () => {
  it('retries 408, 429 and 5xx, and nothing else', () => {
    expect([408, 429, 500, 502, 503, 599].map(isRetriedStatus)).to.deep.equal([true, true, true, true, true, true]);
    expect([204, 301, 400, 401, 403, 404, 410, 431].map(isRetriedStatus)).to.deep.equal([false, false, false, false, false, false, false, false]);
  });
});

describe('isRetriedFailure', () => {
  it('retries a retried status unless its error code says no retry can help', () => {
    expect(isRetriedFailure(503)).to.equal(true);
    expect(isRetriedFailure(503, { code: 'unavailable' })).to.equal(true);
    expect(isRetriedFailure(503, { code: 'auth_not_configured' })).to.equal(false);
    expect(isRetriedFailure(401, { code: 'unauthorized' })).to.equal(false);
  });
});

describe('isEventStream', () => {
  it('accepts text/event-stream with parameters and in any case, and nothing else', () => {
    const of = (type: string) => isEventStream(new Response('', { headers: { 'content-type': type } }));
    expect(of('text/event-stream')).to.equal(true);
    expect(of('Text/Event-Stream; charset=utf-8')).to.equal(true);
    expect(of('text/html')).to.equal(false);
    expect(isEventStream(new Response(''))).to.equal(false);
  });
});

describe('readHttpFailure', () => {
  it("reads a retried status, its Retry-After and the server's JSON error", async () => {
    const body = JSON.stringify({ error: { code: 'unavailable', message: 'Redis is down' } });
    const failure = await readHttpFailure(new Response(body, { status: 503, headers: { ...json, 'retry-after': '2' } }), 0);
    expect(failure).to.deep.equal({ status: 503, error: { code: 'unavailable', message: 'Redis is down' }, retry: true, retryAfterMs: 2000 });
  });

  it('marks other statuses fatal and ignores their Retry-After', async () => {
    const body = JSON.stringify({ error: { code: 'unauthorized', message: 'Token expired' } });
    const failure = await readHttpFailure(new Response(body, { status: 401, headers: { ...json, 'retry-after': '2' } }), 0);
    expect(failure).to.deep.equal({ status: 401, error: { code: 'unauthorized', message: 'Token expired' }, retry: false, retryAfterMs: undefined });
  });

  it('marks auth_not_configured fatal: a token sent to a server without token keys', async () => {
    const body = JSON.stringify({ error: { code: 'auth_not_configured', message: 'Authenticated streams are off' } });
    const failure = await readHttpFailure(new Response(body, { status: 503, headers: json }), 0);
    expect(failure).to.deep.include({ status: 503, retry: false, retryAfterMs: undefined });
  });

  it('has no error for a body that is not the JSON error shape', async () => {
    const html = await readHttpFailure(new Response('<h1>Bad gateway</h1>', { status: 502, headers: { 'content-type': 'text/html' } }), 0);
    const broken = await readHttpFailure(new Response('{not json', { status: 500, headers: json }), 0);
    const foreign = await readHttpFailure(new Response('{"message":"nope"}', { status: 404, headers: json }), 0);
    expect([html.error, broken.error, foreign.error]).to.deep.equal([undefined, undefined, undefined]);
  });
});
