/**
 * Where a ClientStream's bytes go: an HTTP response of its own (the single stream), or its share of a
 * multiplexed connection's response (a subscription, see mux-connection.ts). The stream's code (open, replay,
 * snapshot, live, the slow-consumer rule) is the same for both; only how it starts and ends differs.
 */
import type { ServerResponse } from 'node:http';
import type { CloseReason } from './client-stream.js';
import { SSE_HEADERS } from './sse-frame.js';

export interface StreamSink {
  /** True once events may be written: the response's head went out. */
  readonly started: boolean;
  /** True when a write would go nowhere: the response ended or was destroyed, or the subscription was removed. */
  readonly ended: boolean;
  /** Bytes written and not yet sent, of the whole response (shared by every subscription of a connection). */
  readonly writableLength: number;
  /** True when the response is past its high-water mark, until it emits `drain`. */
  readonly writableNeedDrain: boolean;
  write(chunk: string | Buffer): void;
  /** Starts the response: a stream of its own writes its head and `retry:`; a subscription's connection did that already. */
  begin(retry: string): void;
  /** Calls `wake` once, at the response's next `drain`; returns the undo. */
  onceDrained(wake: () => void): () => void;
  /** Calls `gone` once, when the client went away before the stream ended. */
  onceGone(gone: () => void): void;
  /** The stream closed for `reason`: end what it writes to (the response, or the subscription) accordingly. */
  end(reason: CloseReason): void;
  /** The stream was released before it began: the caller answers the request (an error). */
  abandon(): void;
}

/** The single stream's sink: the whole response is the stream's. */
export class ResponseSink implements StreamSink {
  readonly #res: ServerResponse;
  readonly #requestId: string | undefined;

  /** `requestId`: sent as `X-Request-Id` in the head (given here rather than set on `res` before: see begin()). */
  constructor(res: ServerResponse, requestId?: string) {
    this.#res = res;
    this.#requestId = requestId;
  }

  get started(): boolean {
    return this.#res.headersSent;
  }

  get ended(): boolean {
    return this.#res.destroyed || this.#res.writableEnded;
  }

  get writableLength(): number {
    return this.#res.writableLength;
  }

  get writableNeedDrain(): boolean {
    return this.#res.writableNeedDrain;
  }

  write(chunk: string | Buffer): void {
    this.#res.write(chunk);
  }

  begin(retry: string): void {
    // All of the head in writeHead: a response with no header set before keeps no table of its headers for its
    // lifetime (Node builds the head text straight from these), a few hundred bytes less per open stream.
    this.#res.writeHead(200, streamHeaders(this.#requestId));
    this.#res.write(retry);
    flattenHead(this.#res);
  }

  onceDrained(wake: () => void): () => void {
    this.#res.once('drain', wake);
    return () => this.#res.off('drain', wake);
  }

  onceGone(gone: () => void): void {
    // Whoever ends the response, 'close' fires once; the stream's own end comes first and makes this a no-op.
    this.#res.once('close', gone);
  }

  end(reason: CloseReason): void {
    // A slow client's buffered bytes are dropped with it; any other end lets what was written go out.
    if (reason === 'slow_consumer' || reason === 'client_gone') this.#res.destroy();
    else this.#res.end();
  }

  abandon(): void {}
}

/** A stream's head: the SSE headers, and `X-Request-Id` when there is one. */
export function streamHeaders(requestId: string | undefined): Record<string, string> {
  return requestId ? { ...SSE_HEADERS, 'X-Request-Id': requestId } : SSE_HEADERS;
}

let flattened = 0;

/**
 * Node keeps a response's head text for as long as the response lives (`_header`: it tells `headersSent`), as the
 * rope of some 25 pieces its concatenation left; a long-lived stream holds it for hours. Reading one character
 * flattens a rope in place, into one string: about 700 bytes less per open stream (bench: idle memory). Only read,
 * never written; without `_header` (another Node), nothing happens.
 */
export function flattenHead(res: ServerResponse): void {
  const head = (res as unknown as { _header?: unknown })._header;
  // The sum keeps the read from being optimized away.
  if (typeof head === 'string') flattened = (flattened + head.charCodeAt(0)) | 0;
}
