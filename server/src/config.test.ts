import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, readConfig } from './config.js';
import { DEFAULTS } from './defaults.js';

describe('readConfig', () => {
  it('has the contract defaults', () => {
    const config = readConfig({});
    assert.equal(config.port, 8000);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.redisUrl, undefined);
    assert.equal(config.heartbeatMs, 15_000);
    assert.equal(config.prefix, 'ai_story');
    assert.equal(config.publicStreams, true);
    assert.equal(config.demoEnabled, true);
  });

  it('takes every default it does not read from the environment from DEFAULTS, which nobody can change', () => {
    const config = readConfig({});
    for (const name of ['heartbeatMs', 'retryMs', 'maxBufferBytes', 'maxReplayEntries', 'maxReplayBytes', 'maxStreams', 'maxStreamsPerClient', 'maxSubscriptions', 'logMaxLen', 'logTtlSeconds', 'maxDemoTasks'] as const) {
      assert.equal(config[name], DEFAULTS[name], name);
    }
    assert.deepEqual(
      { retryMs: config.retryMs, maxBufferBytes: config.maxBufferBytes, maxStreams: config.maxStreams, maxStreamsPerClient: config.maxStreamsPerClient, logMaxLen: config.logMaxLen, logTtlSeconds: config.logTtlSeconds },
      { retryMs: 3_000, maxBufferBytes: 1024 * 1024, maxStreams: 20_000, maxStreamsPerClient: 64, logMaxLen: 1000, logTtlSeconds: 86_400 },
    );
    assert.ok(Object.isFrozen(DEFAULTS));
  });

  it('turns the mock publisher and demo controls off in production unless explicitly enabled', () => {
    assert.equal(readConfig({ NODE_ENV: 'production' }).demoEnabled, false);
    assert.equal(readConfig({ NODE_ENV: 'production', SSE_ENABLE_DEMO: 'true' }).demoEnabled, true);
  });

  it('refuses values that would misconfigure the server, naming the variable', () => {
    assert.throws(() => readConfig({ PORT: 'eighty' }), (e: unknown) => e instanceof ConfigError && /PORT/.test(e.message));
    assert.throws(() => readConfig({ SSE_HEARTBEAT_MS: '0' }), /SSE_HEARTBEAT_MS must be an integer >= 1/);
    assert.throws(() => readConfig({ SSE_PUBLIC_STREAMS: 'maybe' }), /SSE_PUBLIC_STREAMS must be true or false/);
    assert.throws(() => readConfig({ CHANNEL_PREFIX: 'a:*' }), /CHANNEL_PREFIX/);
  });
});
