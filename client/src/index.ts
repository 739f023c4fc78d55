/** The client kit: the SSE client, and the element classes (import `./define.js` to register the tags). */
export { SSEClient, createSSEClient, ConnectionState, DisconnectReason, FailureKind } from './sse-client.js';
export type {
  SSEClientOptions,
  SSEClientEventMap,
  ConnectionFailure,
  DisconnectedEvent,
  ReconnectingEvent,
  StateChangeEvent,
  StreamEvent,
} from './sse-client.js';
export type { ServerError } from './http-response.js';
export { FATAL_ERROR_CODES } from './http-response.js';
export type { TokenSource } from './token-source.js';
export { streamUrl } from '../../protocol/routes.js';
export { exponentialBackoff, backoffCeiling } from './backoff.js';
export type { BackoffStrategy, BackoffContext, ExponentialBackoffOptions } from './backoff.js';
export type { Clock } from './clock.js';
export { StageStatus } from '../../protocol/messages.js';
export { PIPELINE_STAGES } from './stage-order.js';
export type {
  BaseMessage,
  TokenMessage,
  StageUpdateMessage,
  ProgressMessage,
  DoneMessage,
  ErrorMessage,
  ConnectedMessage,
  ResetMessage,
  StageMessage,
  StageMessageType,
  StreamEventMap,
} from '../../protocol/messages.js';
export { SseStreamViewer } from './components/sse-stream-viewer/sse-stream-viewer.component.js';
export type { SseStreamViewerEventMap, CancelDetail } from './components/sse-stream-viewer/sse-stream-viewer.component.js';
export type { ColorSchemeSetting } from './color-scheme-controller.js';
export { SseStreamProvider } from './components/sse-stream-provider/sse-stream-provider.component.js';
export { englishLabels, chineseLabels, labelsFor, mergeLabels } from './labels.js';
export type { ViewerLabels, ViewerLabelOverrides, FailureContext } from './labels.js';
export { streamHubContext } from './context.js';
export { StreamHub } from './stream-hub.js';
export type { HubEvent, HubListener } from './stream-hub.js';
export { configureSharing, sharingMode } from './shared/share.js';
export type { SharingMode, SharingOptions } from './shared/share.js';
export type { Transport } from './shared/mux-core.js';
