/**
 * The server library (`ai-story-sse/server`): publish from a worker, read from Node, and embed the SSE hub
 * in a server of your own. The standalone server is `npm start` (server/src/main.ts), not part of this entry.
 * In the package, `ai-story-sse/server` is dist/server/entry.js, which scripts/build-lib.mjs writes: it checks the
 * peer dependencies these modules import (peers.ts), then loads this one. Re-export by name only (it lists the names).
 */

// Workers: publish one stage's progress; read it back from Node.
export { StreamPublisher } from './publisher.js';
export type { StreamPublisherOptions } from './publisher.js';
export { StreamSubscriber } from './subscriber.js';
export type { StreamSubscriberOptions, ListenOptions, SubscriberMessage, RawMessage } from './subscriber.js';

// Brokers: Redis, and the in-process twin for one process and tests.
export { RedisBroker } from './broker/redis-broker.js';
export type { RedisBrokerOptions } from './broker/redis-broker.js';
export { MemoryBroker } from './broker/memory-broker.js';
export type { MemoryBrokerOptions } from './broker/memory-broker.js';
export type { Broker, BrokerKind, LogEntry, ReplayResult, Snapshot, StageText, TokenPiece, MessageListener, Unsubscribe } from './broker/broker.js';
export { BrokerUnavailableError, BrokerClosedError, InvalidArgumentError, SubscriberOverflowError, TokenOffsetError, StageCancelledError, LeaseLostError } from './broker/errors.js';
export { hasStageControl } from './broker/broker.js';
export type { PublishControl, StageControlBroker, ControlOp, ControlResult } from './broker/broker.js';
export { LeaseReaper, WORKER_LOST, workerLostMessage } from './lease-reaper.js';

// The hub in your own server, its metrics, and the tokens of its authenticated endpoints.
export { mountSse } from './mount.js';
export type { SseOptions, SseMount, SseLogger } from './mount.js';
export { SseMetrics } from './metrics.js';
export type { SseMetricsOptions, MetricsSource } from './metrics.js';
export type { Hub, OpenRequest, OpenConnectionRequest, SubscribeRequest } from './hub/hub.js';
export type { HubEventMap, HubEventName, HubEventSource, HubMessage, StreamOpening } from './hub/hub-events.js';
export type { ClientStream, CloseReason } from './hub/client-stream.js';
export type { MuxConnection, MuxSubscription } from './hub/mux-connection.js';
export type { StreamSink } from './hub/stream-sink.js';
export { signToken, signTokenWithKey } from './http/auth.js';
export type { KeySignOptions, TokenClaims, TokenPolicy } from './http/auth.js';
export { loadTokenKeys, TokenKeyError, ASYMMETRIC_ALGORITHMS } from './http/token-keys.js';
export type { TokenKeys, TokenKeySource } from './http/token-keys.js';
export { TrustedProxies, clientAddress } from './http/client-address.js';
export type { CorsRoute } from './http/cors.js';
export { DEFAULTS } from './defaults.js';

// The demo's endpoints (the mock pipeline, cut, development tokens), apart from the library: not for production.
export { mountDemo } from './mock/mount-demo.js';
export type { DemoOptions, DemoMount } from './mock/mount-demo.js';

// Channel names, for workers that PUBLISH themselves (the contract's format reaches viewers as it is).
export { DEFAULT_PREFIX, ID_PATTERN, isValidId, stageChannel, projectPattern } from './channels.js';

// The wire format: the messages workers publish and viewers receive.
export type {
  BaseMessage,
  TokenMessage,
  StageUpdateMessage,
  ProgressMessage,
  DoneMessage,
  ErrorMessage,
  StageMessage,
  StageMessageType,
  StageStatus,
} from '../../protocol/messages.js';
