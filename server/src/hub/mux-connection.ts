/**
 * One multiplexed connection (protocol/mux.ts): an HTTP response (or a WebSocket, see ConnectionWire) that carries any number of subscriptions, each
 * a ClientStream of the hub writing into its share of the response (a MuxSubscription, its StreamSink).
 *
 * What ends where: a subscription removed by its client (`unsubscribed`) or whose token ran out (`token_expired`)
 * ends alone, and the others go on untouched. Anything else that would end one subscription (a slow client: the
 * buffer is the response's; a broker failure; a cut; shutdown) ends the whole connection, and the client
 * reconnects and subscribes again, each subscription with its own cursor.
 */
import { tagJson, type MuxConnectionMessage, type MuxUnsubscribedMessage } from '../../../protocol/mux.js';
import type { ClientStream, CloseReason } from './client-stream.js';
import type { ConnectionWire } from './connection-wire.js';
import { HEARTBEAT_FRAME, formatEvent } from './sse-frame.js';
import type { StreamSink } from './stream-sink.js';

export interface MuxConnectionOptions {
  /** The connection's id (the client's, or one the server chose). */
  id: string;
  /** Who opened it (the remote address): only the same client may add subscriptions to it. */
  clientKey: string;
  /** An id for logs (the stream request's `X-Request-Id`). */
  requestId: string;
  /** Subscriptions it may hold at once. */
  maxSubscriptions: number;
  /** Unsent bytes the response may hold before the client counts as too slow and the connection is dropped. */
  maxBufferBytes: number;
  /** Once, when the connection ends, after each of its subscriptions did. */
  onClose: (connection: MuxConnection, reason: CloseReason) => void;
}

export class MuxConnection {
  readonly id: string;
  readonly clientKey: string;
  readonly requestId: string;
  readonly maxSubscriptions: number;
  readonly openedAt = Date.now();
  readonly #wire: ConnectionWire;
  readonly #options: MuxConnectionOptions;
  readonly #subscriptions = new Map<string, MuxSubscription>();
  /** Replays of subscriptions waiting for the response to drain: one `drain` listener wakes them all. */
  readonly #drainWaiters = new Set<() => void>();
  #started = false;
  #closed = false;

  constructor(wire: ConnectionWire, options: MuxConnectionOptions) {
    this.#wire = wire;
    this.#options = options;
    this.id = options.id;
    this.clientKey = options.clientKey;
    this.requestId = options.requestId;
    this.maxSubscriptions = options.maxSubscriptions;
    wire.onceGone(() => this.#gone());
    wire.onDrain(() => {
      const waiters = [...this.#drainWaiters];
      this.#drainWaiters.clear();
      for (const wake of waiters) wake();
    });
  }

  /** Writes the head, `retry:` and the `connection` event. */
  start(retry: string): void {
    const message: MuxConnectionMessage = { type: 'connection', connection: this.id, max_subscriptions: this.maxSubscriptions, timestamp: Date.now() / 1000 };
    this.#wire.start(retry + formatEvent({ event: 'connection', data: JSON.stringify(message) }));
    this.#started = true;
  }

  /** True once the connection ended (or its client went away): nothing more is written. */
  get ended(): boolean {
    return this.#closed || this.#wire.ended;
  }

  /** Subscriptions held, those still joining their topic included. */
  get size(): number {
    return this.#subscriptions.size;
  }

  subscription(id: string): MuxSubscription | undefined {
    return this.#subscriptions.get(id);
  }

  /** Holds a new subscription; its stream is attached by the hub (Hub.subscribe). The caller checked id and limit. */
  add(id: string, projectId: string, stage: string | null): MuxSubscription {
    const subscription = new MuxSubscription(this, id, projectId, stage, (released, reason) => this.#release(released, reason));
    this.#subscriptions.set(id, subscription);
    return subscription;
  }

  /** Removes a subscription at its client's request: its last event is `unsubscribed`. False when not held. */
  unsubscribe(id: string): boolean {
    const subscription = this.#subscriptions.get(id);
    if (!subscription) return false;
    subscription.stream?.close('unsubscribed');
    // A subscription whose stream is not attached yet cannot be here (Hub.subscribe attaches it at once); still,
    // never leave one held that no stream will release.
    if (this.#subscriptions.get(id) === subscription) this.#release(subscription, 'unsubscribed');
    return true;
  }

  get writableLength(): number {
    return this.#wire.writableLength;
  }

  get writableNeedDrain(): boolean {
    return this.#wire.writableNeedDrain;
  }

  /** Calls `wake` once, at the response's next `drain`; returns the undo. */
  onceDrained(wake: () => void): () => void {
    this.#drainWaiters.add(wake);
    return () => this.#drainWaiters.delete(wake);
  }

  /** One heartbeat per connection, whatever its subscriptions. */
  heartbeat(): void {
    if (!this.#started) return;
    this.write(HEARTBEAT_FRAME);
    this.#wire.heartbeat?.();
  }

  write(chunk: string | Buffer): void {
    if (this.ended) return;
    // The single stream's rule (ClientStream.write), for the whole connection: its subscriptions share the buffer.
    if (this.#wire.writableLength > this.#options.maxBufferBytes) {
      this.close('slow_consumer');
      return;
    }
    this.#wire.write(chunk);
  }

  /** Ends the connection and every subscription on it, each closed for `reason`. */
  close(reason: CloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const subscription of [...this.#subscriptions.values()]) subscription.stream?.close(reason);
    this.#subscriptions.clear();
    this.#drainWaiters.clear();
    this.#wire.end(reason);
    this.#options.onClose(this, reason);
  }

  /** The client went away: every subscription ends as a single stream does then (`client_gone`). */
  #gone(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const subscription of [...this.#subscriptions.values()]) subscription.gone();
    this.#subscriptions.clear();
    this.#drainWaiters.clear();
    this.#options.onClose(this, 'client_gone');
  }

  /**
   * A subscription's stream ended (reason), or was abandoned before it began (undefined): it is no longer held.
   * Only its client's unsubscribe and its token's end leave the connection open.
   */
  #release(subscription: MuxSubscription, reason: CloseReason | undefined): void {
    if (this.#subscriptions.get(subscription.id) === subscription) this.#subscriptions.delete(subscription.id);
    if (reason === 'unsubscribed' && !subscription.removed) this.write(unsubscribedFrame(subscription));
    subscription.remove();
    if (reason === undefined || reason === 'unsubscribed' || reason === 'token_expired') return;
    this.close(reason);
  }
}

/** The `unsubscribed` event: the last of a subscription its client removed. */
function unsubscribedFrame(subscription: MuxSubscription): string {
  const message: Omit<MuxUnsubscribedMessage, 'subscription'> = {
    type: 'unsubscribed',
    project_id: subscription.projectId,
    stage: subscription.stage,
    reason: 'client',
    timestamp: Date.now() / 1000,
  };
  return formatEvent({ event: 'unsubscribed', data: tagJson(JSON.stringify(message), subscription.id) });
}

/** One subscription's share of its connection's response: the StreamSink of its ClientStream. */
export class MuxSubscription implements StreamSink {
  readonly id: string;
  readonly projectId: string;
  readonly stage: string | null;
  /** Its stream, attached as soon as the hub made it. */
  stream: ClientStream | undefined;
  /** Resolves once the stream joined its topic (or ended before); rejects when the broker could not subscribe. */
  joined: Promise<void> = Promise.resolve();
  readonly #connection: MuxConnection;
  readonly #release: (subscription: MuxSubscription, reason: CloseReason | undefined) => void;
  #removed = false;
  #gone: (() => void) | undefined;

  constructor(
    connection: MuxConnection,
    id: string,
    projectId: string,
    stage: string | null,
    release: (subscription: MuxSubscription, reason: CloseReason | undefined) => void,
  ) {
    this.#connection = connection;
    this.id = id;
    this.projectId = projectId;
    this.stage = stage;
    this.#release = release;
  }

  /** True once it is no longer held by its connection: nothing of it is written after. */
  get removed(): boolean {
    return this.#removed;
  }

  /** Its connection wrote the head and `retry:` before any subscription was added. */
  get started(): boolean {
    return true;
  }

  get ended(): boolean {
    return this.#removed || this.#connection.ended;
  }

  get writableLength(): number {
    return this.#connection.writableLength;
  }

  get writableNeedDrain(): boolean {
    return this.#connection.writableNeedDrain;
  }

  write(chunk: string | Buffer): void {
    if (!this.#removed) this.#connection.write(chunk);
  }

  begin(): void {}

  onceDrained(wake: () => void): () => void {
    return this.#connection.onceDrained(wake);
  }

  onceGone(gone: () => void): void {
    this.#gone = gone;
  }

  end(reason: CloseReason): void {
    this.#release(this, reason);
  }

  abandon(): void {
    this.#release(this, undefined);
  }

  /** Its connection's client went away. */
  gone(): void {
    this.#removed = true;
    this.#gone?.();
  }

  /** No longer held: later writes go nowhere. */
  remove(): void {
    this.#removed = true;
  }
}
