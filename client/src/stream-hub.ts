/**
 * One SSEClient shared by any number of listeners (the viewers of a page), connected while at least
 * one listener is attached. Keeps the latest message of each type per stage (seeded by the server's `snapshot` or
 * `reset`), so a viewer that attaches late draws the current state at once instead of waiting for the next messages.
 */
import type { ResetMessage, StageMessage } from '../../protocol/messages.js';
import { EVENT_NAMES, isStageMessageType } from './event-names.js';
import { latestOfSnapshot } from './stage-store.js';
import { ConnectionState, type DisconnectedEvent, type SSEClient, type SSEClientEventMap } from './sse-client.js';

/** Any event of the client, tagged with its name. */
export type HubEvent = { [K in keyof SSEClientEventMap]: { type: K; data: SSEClientEventMap[K] } }[keyof SSEClientEventMap];
export type HubListener = (event: HubEvent) => void;

/**
 * A reset's `stages`, copied into prototype-less objects. Stage names and types come from the network (any worker
 * can PUBLISH `"stage":"__proto__"`), and on a plain object `snapshot["__proto__"]` is Object.prototype.
 */
function prototypeLess(stages: ResetMessage['stages'] | undefined): ResetMessage['stages'] {
  const copy: ResetMessage['stages'] = Object.create(null);
  for (const [name, latest] of Object.entries(stages ?? {})) {
    if (typeof latest === 'object' && latest !== null) copy[name] = Object.assign(Object.create(null), latest);
  }
  return copy;
}

export class StreamHub {
  readonly client: SSEClient;
  readonly #listeners = new Set<HubListener>();
  #snapshot: ResetMessage['stages'] = Object.create(null);
  #retryAt: number | undefined;
  #lastDisconnect: DisconnectedEvent | undefined;

  constructor(client: SSEClient) {
    this.client = client;
    for (const type of EVENT_NAMES) client.on(type, (data: unknown) => this.#forward({ type, data } as HubEvent));
  }

  get state(): ConnectionState {
    return this.client.state;
  }

  /** The latest message of each type per stage; the same shape as a reset's `stages`. */
  get snapshot(): ResetMessage['stages'] {
    return this.#snapshot;
  }

  /** When the pending retry fires (`Date.now()` time), while reconnecting. */
  get retryAt(): number | undefined {
    return this.client.state === ConnectionState.reconnecting ? this.#retryAt : undefined;
  }

  /** Why the connection last ended, if it did. */
  get lastDisconnect(): DisconnectedEvent | undefined {
    return this.#lastDisconnect;
  }

  /** Adds a listener; the first one connects. Returns the detach function (idempotent); the last detach disconnects. */
  attach(listener: HubListener): () => void {
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.client.connect();
    return () => {
      if (!this.#listeners.delete(listener)) return;
      if (this.#listeners.size === 0) this.client.disconnect();
    };
  }

  /** Reconnects now: after a fatal failure, or to skip the wait of a pending retry. */
  retry(): void {
    if (this.#listeners.size > 0) this.client.connect();
  }

  #forward(event: HubEvent): void {
    switch (event.type) {
      case 'reset':
        this.#snapshot = prototypeLess(event.data.stages);
        break;
      case 'snapshot':
        this.#snapshot = latestOfSnapshot(event.data.stages, event.data.project_id);
        break;
      case 'reconnecting':
        this.#retryAt = Date.now() + event.data.delayMs;
        break;
      case 'disconnected':
        this.#lastDisconnect = event.data;
        break;
      case 'state':
        if (event.data.state === ConnectionState.open) this.#lastDisconnect = undefined;
        break;
      default:
        if (isStageMessageType(event.type)) {
          const message = event.data as StageMessage;
          if (typeof message?.stage === 'string') (this.#snapshot[message.stage] ??= Object.create(null))[message.type] = message;
        }
    }
    for (const listener of [...this.#listeners]) listener(event);
  }
}
