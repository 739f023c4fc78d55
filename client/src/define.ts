/**
 * Registers `<sse-stream-provider>` and `<sse-stream-viewer>`. Import for its side effect:
 * `<script type="module" src=".../define.js"></script>`. The provider goes first so that viewers
 * inside it find their shared connection when they upgrade.
 */
import './components/sse-stream-provider/sse-stream-provider.js';
import './components/sse-stream-viewer/sse-stream-viewer.js';
