/**
 * What a multiplexed connection (mux-connection.ts) writes to: an HTTP response carrying an event stream, or a
 * WebSocket (http/ws-routes.ts) carrying the same SSE text, one message per write. The connection's code (its
 * subscriptions, the shared buffer's slow-consumer rule, heartbeats, what ends what) is the same for both.
 */
import type { ServerResponse } from 'node:http';
import type { CloseReason } from './client-stream.js';
import { flattenHead, streamHeaders } from './stream-sink.js';
import { SSE_HEADERS } from './sse-frame.js';

export interface ConnectionWire {
  /** Starts the connection: `head` is its `retry:` and its `connection` event. */
  start(head: string): void;
  write(chunk: string | Buffer): void;
  /** Bytes written and not yet sent. */
  readonly writableLength: number;
  /** True past the high-water mark, until `onDrain` listeners are called. */
  readonly writableNeedDrain: boolean;
  /** True once nothing more can be written (ended, destroyed, closed). */
  readonly ended: boolean;
  /** Calls `listener` each time the buffer drained. */
  onDrain(listener: () => void): void;
  /** Calls `listener` once, when the client went away. */
  onceGone(listener: () => void): void;
  /** Ends the connection for `reason`: what was written goes out, except to a slow client (dropped with it). */
  end(reason: CloseReason): void;
  /** Called at each heartbeat, after the heartbeat frame (a WebSocket also pings, to find half-open sockets). */
  heartbeat?(): void;
}

/** The multiplexed stream over HTTP: the response is the connection. */
export class ResponseWire implements ConnectionWire {
  readonly #res: ServerResponse;
  readonly #requestId: string | undefined;

  /** `requestId`: sent as `X-Request-Id` in the head (see ResponseSink: all of the head in writeHead). */
  constructor(res: ServerResponse, requestId?: string) {
    this.#res = res;
    this.#requestId = requestId;
  }

  start(head: string): void {
    this.#res.writeHead(200, streamHeaders(this.#requestId));
    this.#res.write(head);
    flattenHead(this.#res);
  }

  write(chunk: string | Buffer): void {
    this.#res.write(chunk);
  }

  get writableLength(): number {
    return this.#res.writableLength;
  }

  get writableNeedDrain(): boolean {
    return this.#res.writableNeedDrain;
  }

  get ended(): boolean {
    return this.#res.destroyed || this.#res.writableEnded;
  }

  onDrain(listener: () => void): void {
    this.#res.on('drain', listener);
  }

  onceGone(listener: () => void): void {
    this.#res.once('close', listener);
  }

  end(reason: CloseReason): void {
    if (reason === 'slow_consumer' || reason === 'client_gone') this.#res.destroy();
    else this.#res.end();
  }
}
