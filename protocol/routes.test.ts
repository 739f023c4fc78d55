import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { streamPath, streamUrl } from './routes.js';

describe('stream URLs', () => {
  it('builds the four stream endpoints', () => {
    assert.equal(streamPath('1', 'rewrite', false), '/api/v1/sse/projects/1/stages/rewrite/');
    assert.equal(streamPath('1', null, false), '/api/v1/sse/projects/1/');
    assert.equal(streamPath('1', 'rewrite', true), '/api/v1/sse/projects/1/stages/rewrite/stream/');
    assert.equal(streamPath('1', '', true), '/api/v1/sse/projects/1/stream/');
  });

  it('joins a base URL without doubling slashes, and encodes ids', () => {
    assert.equal(streamUrl('https://sse.example.com/', 'a b', null, false), 'https://sse.example.com/api/v1/sse/projects/a%20b/');
    assert.equal(streamUrl('', '1', 's', false), '/api/v1/sse/projects/1/stages/s/');
  });
});
