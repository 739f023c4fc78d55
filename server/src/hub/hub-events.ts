/**
 * What the hub announces, once and in one typed way: a stream opened, went live or closed, a broker message was
 * written. Metrics and logs listen (see metrics.ts and mount.ts); the hub itself never depends on them.
 */
import type { ClientStream, CloseReason } from './client-stream.js';
import type { ReadKind } from './coalesced-reads.js';
import type { MuxConnection } from './mux-connection.js';

/** What a stream got before it went live. */
export interface StreamOpening {
  /** Messages written while opening: the replay, and live ones held back meanwhile. */
  events: number;
  /** True when the stream came with a `Last-Event-ID`. */
  resumed: boolean;
  /** Log entries replayed after `Last-Event-ID`; 0 without one. On reset, those written before it. */
  replayed: number;
  /**
   * Set when a `reset` was sent instead of (the rest of) the replay: the log no longer covered `Last-Event-ID`
   * (`expired`, also when it was trimmed between two pages of the replay), or never did (`unknown_id`), or what
   * follows it is more than a resume may read (`too_long`, see `HubOptions.maxReplayEntries`).
   */
  reset: 'expired' | 'unknown_id' | 'too_long' | undefined;
}

/** A broker message as the hub wrote it to its clients. */
export interface HubMessage {
  /** Its log id (the SSE `id:`), when it has one. */
  readonly id: string | undefined;
  /** Its `type`: the SSE event name (`message` for a payload that is not a JSON object). */
  readonly type: string;
  readonly stage: string | undefined;
  /** Its `timestamp`, set by its publisher, in seconds since the epoch. */
  readonly timestamp: number | undefined;
}

/** The hub's events and the arguments their listeners get. */
export interface HubEventMap {
  /**
   * `Hub.open()` answered a request: `connected` and any replay were written (or the client left meanwhile).
   * Once per stream that opened; a stream refused before any byte (the broker failed) gets none. The stream,
   * stream-live, snapshot and stream-closed events are also those of each subscription of a multiplexed
   * connection (`stream.subscription` set), which open and close as streams do.
   */
  'stream-opened': [stream: ClientStream, resumed: boolean];
  /** A stream went live, with what was written while it opened. At most once per stream. */
  'stream-live': [stream: ClientStream, opening: StreamOpening];
  /** A stream was sent a `snapshot` current up to the log id `upTo`. */
  snapshot: [stream: ClientStream, upTo: string];
  /** A stream closed, for whatever reason. Once per stream, also for one refused before any byte. */
  'stream-closed': [stream: ClientStream, reason: CloseReason];
  /** A multiplexed connection opened (its `connection` event was written). It is one HTTP stream, as a stream of its own. */
  'connection-opened': [connection: MuxConnection];
  /** A multiplexed connection closed, after each of its subscriptions did (their `stream-closed`). */
  'connection-closed': [connection: MuxConnection, reason: CloseReason];
  /** A broker message was written to `written` live streams: once per message, not once per client. */
  message: [message: HubMessage, written: number];
  /**
   * A resume or a snapshot read the log or the state: sent to the broker (`shared` false), or answered from a read
   * another stream's opening made (`shared` true; see coalesced-reads.ts).
   */
  'log-read': [kind: ReadKind, shared: boolean];
}

export type HubEventName = keyof HubEventMap;

/** The listening half of {@link HubEvents}: what `hub.events` shows. */
export interface HubEventSource {
  /** Calls `listener` on each `name` event until the returned function is called. */
  on<K extends HubEventName>(name: K, listener: (...args: HubEventMap[K]) => void): () => void;
  off<K extends HubEventName>(name: K, listener: (...args: HubEventMap[K]) => void): void;
}

type Listeners = { [K in HubEventName]?: Set<(...args: HubEventMap[K]) => void> };

/**
 * A small typed emitter. Listeners run synchronously, in the order they were added; one that throws throws into
 * the hub (as with node's EventEmitter), so keep them to counting and logging.
 */
export class HubEvents implements HubEventSource {
  readonly #listeners: Listeners = {};

  on<K extends HubEventName>(name: K, listener: (...args: HubEventMap[K]) => void): () => void {
    // A new set fits the event's listeners; TypeScript cannot see that through the generic key.
    const listeners = (this.#listeners[name] ??= new Set() as NonNullable<Listeners[K]>);
    listeners.add(listener);
    return () => this.off(name, listener);
  }

  off<K extends HubEventName>(name: K, listener: (...args: HubEventMap[K]) => void): void {
    const listeners: Listeners[K] = this.#listeners[name];
    if (listeners?.delete(listener) && listeners.size === 0) delete this.#listeners[name];
  }

  /** True when anyone listens to `name`: lets the hot path skip a loop whose events nobody reads. */
  has(name: HubEventName): boolean {
    return this.#listeners[name] !== undefined;
  }

  emit<K extends HubEventName>(name: K, ...args: HubEventMap[K]): void {
    const listeners: Listeners[K] = this.#listeners[name];
    if (listeners) for (const listener of listeners) listener(...args);
  }
}
