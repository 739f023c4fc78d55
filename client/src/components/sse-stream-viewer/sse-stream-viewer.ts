import type { ConnectedMessage, DoneMessage, StageUpdateMessage, TokenMessage } from '../../../../protocol/messages.js';
import type { DisconnectedEvent } from '../../sse-client.js';
import { SseStreamViewer } from './sse-stream-viewer.component.js';

export { SseStreamViewer };
export type { SseStreamViewerEventMap } from './sse-stream-viewer.component.js';

if (!customElements.get('sse-stream-viewer')) customElements.define('sse-stream-viewer', SseStreamViewer);

declare global {
  interface HTMLElementTagNameMap {
    'sse-stream-viewer': SseStreamViewer;
  }
  // `progress` and `error` cannot be declared here (the DOM already types them as ProgressEvent and ErrorEvent);
  // `SseStreamViewer#addEventListener` is typed for all seven events.
  interface GlobalEventHandlersEventMap {
    connected: CustomEvent<ConnectedMessage>;
    token: CustomEvent<TokenMessage>;
    stage_update: CustomEvent<StageUpdateMessage>;
    done: CustomEvent<DoneMessage>;
    disconnected: CustomEvent<DisconnectedEvent>;
  }
}
