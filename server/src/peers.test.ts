import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MissingPeerDependencyError, installCommand, missingPeers, requirePeers } from './peers.js';

const installed = { name: 'ws', range: '^8.23.0' };
const absent = { name: 'no-such-package-ai-story-sse', range: '^1.0.0' };
const scopedAbsent = { name: '@ai-story-sse/no-such-package', range: '1.0.0-next.28' };

describe('the peer dependency check of the server entry points', () => {
  it('finds the peers that do not resolve from the package, in the order given', () => {
    assert.deepEqual(missingPeers([installed, absent, scopedAbsent]), [absent, scopedAbsent]);
    assert.deepEqual(missingPeers([installed]), []);
  });

  it('writes the npm install line with each range quoted, for every shell', () => {
    assert.equal(installCommand([absent, scopedAbsent]), 'npm install "no-such-package-ai-story-sse@^1.0.0" "@ai-story-sse/no-such-package@1.0.0-next.28"');
  });

  it('throws one error that names what is missing and how to install it', () => {
    assert.doesNotThrow(() => requirePeers('ai-story-sse/server', [installed]));
    assert.throws(
      () => requirePeers('ai-story-sse/server', [installed, absent]),
      (error: unknown) =>
        error instanceof MissingPeerDependencyError &&
        error.code === 'ERR_AI_STORY_SSE_MISSING_PEERS' &&
        error.missing.length === 1 &&
        error.message ===
          'ai-story-sse/server needs packages that are not installed: no-such-package-ai-story-sse (the server\'s dependencies are ' +
            'optional peer dependencies of ai-story-sse, left out of a client-only install). Install it: npm install "no-such-package-ai-story-sse@^1.0.0"',
    );
  });
});
