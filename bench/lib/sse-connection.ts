/**
 * One raw SSE connection of the load generator: a `node:net` socket, a hand-written HTTP/1.1 request,
 * a de-chunker and a scanner that finds the `"seq":N,"t":T` pair every bench message carries.
 * No SSE parser and no JSON.parse on the hot path, so the load generator stays cheap per event.
 */
import { connect, type Socket } from 'node:net';
import type { LatencyHistogram } from './histogram.js';

const HEADER_END = Buffer.from('\r\n\r\n');
/**
 * One read buffer shared by every connection: with `onread`, Node reads straight into it and calls us
 * synchronously, skipping the stream machinery and a Buffer per read. Anything kept past the call is copied.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);
const SEQ = Buffer.from('"seq":');
const CONNECTED = Buffer.from('event: connected');

export type ReadyOn = 'connected-event' | 'headers';

export interface ConnectionSpec {
  port: number;
  path: string;
  /** Source address (127.0.0.x), so many connections do not run out of ephemeral ports. */
  localAddress?: string;
  /** When the stream counts as subscribed: our `connected` event, or (nchan) the response headers. */
  readyOn: ReadyOn;
  /** More request headers, e.g. `Last-Event-ID` for a resume. */
  headers?: Record<string, string>;
}

/** What every connection of a run adds to: shared, so the hot path touches no per-run map. */
export interface Tally {
  events: number;
  /** Socket reads (each one syscall and one callback): the load generator's cost follows these. */
  reads: number;
  dupes: number;
  /** Events skipped over (a seq jumped ahead): lost. */
  gaps: number;
  /** Events from before the current trial, ignored. */
  late: number;
  bytes: number;
  histogram: LatencyHistogram;
}

/** The clock messages are stamped with and measured against; the publisher runs in the same process. */
export const now = (): number => performance.now();

export class SseConnection {
  /** The next seq this connection expects. */
  next = 0;
  /** Seqs below this belong to an earlier trial. */
  floor = 0;
  ready = false;
  closed = false;
  status = 0;
  bytes = 0;
  /** Raw bytes as received, when `capture` is on (for the client-CPU measurement). */
  captured: Buffer[] | undefined;

  readonly #socket: Socket;
  readonly #tally: Tally;
  readonly #readyOn: ReadyOn;
  #head: Buffer | undefined = Buffer.alloc(0);
  #chunked = false;
  /** De-chunker: bytes left in the current chunk, or -1 while reading a chunk-size line. */
  #chunkLeft = -1;
  #sizeLine = '';
  /** Bytes of CRLF still to skip after a chunk's data. */
  #skipCrlf = 0;
  #carry: Buffer | undefined;
  #onReady: (() => void) | undefined;
  #onClose: (() => void) | undefined;
  /** Called for every body slice (tokens scenario). */
  onBody: ((slice: Buffer) => void) | undefined;

  constructor(spec: ConnectionSpec, tally: Tally, capture = false) {
    this.#tally = tally;
    this.#readyOn = spec.readyOn;
    if (capture) this.captured = [];
    this.#socket = connect({
      port: spec.port,
      host: '127.0.0.1',
      localAddress: spec.localAddress,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (length: number, buffer: Uint8Array) => {
          this.#onData(Buffer.from(buffer.buffer, buffer.byteOffset, length));
          return true;
        },
      },
    });
    this.#socket.on('connect', () => {
      const extra = Object.entries(spec.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`).join('');
      this.#socket.write(
        `GET ${spec.path} HTTP/1.1\r\nHost: 127.0.0.1:${spec.port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n${extra}\r\n`,
      );
    });
    this.#socket.on('error', () => {});
    this.#socket.on('close', () => {
      this.closed = true;
      this.#onClose?.();
    });
  }

  /** Resolves once subscribed; rejects when the socket closes first or on a non-200 answer. */
  whenReady(timeoutMs: number): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms`)), timeoutMs);
      this.#onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#onClose = () => {
        clearTimeout(timer);
        reject(new Error(`closed before ready (status ${this.status})`));
      };
    });
  }

  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#onClose;
      this.#onClose = () => {
        previous?.();
        resolve();
      };
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  #markReady(): void {
    if (this.ready) return;
    this.ready = true;
    this.#onReady?.();
    this.#onReady = undefined;
  }

  #onData(data: Buffer): void {
    this.bytes += data.length;
    this.#tally.bytes += data.length;
    this.#tally.reads++;
    this.captured?.push(Buffer.from(data));
    if (this.#head !== undefined) {
      const head: Buffer = this.#head.length > 0 ? Buffer.concat([this.#head, data]) : data;
      const end = head.indexOf(HEADER_END);
      if (end < 0) {
        this.#head = Buffer.from(head);
        return;
      }
      const text = head.subarray(0, end).toString('latin1');
      this.#head = undefined;
      this.status = Number(text.slice(9, 12));
      if (this.status !== 200) {
        this.#socket.destroy();
        return;
      }
      this.#chunked = /\r\ntransfer-encoding:\s*chunked/i.test(text);
      if (this.#readyOn === 'headers') this.#markReady();
      data = head.subarray(end + 4);
      if (data.length === 0) return;
    }
    if (this.#chunked) this.#dechunk(data);
    else this.#body(data);
  }

  /** HTTP/1.1 chunked transfer coding: hands each chunk's data to #body without copying. */
  #dechunk(data: Buffer): void {
    let i = 0;
    const n = data.length;
    while (i < n) {
      if (this.#skipCrlf > 0) {
        const skip = Math.min(this.#skipCrlf, n - i);
        this.#skipCrlf -= skip;
        i += skip;
        continue;
      }
      if (this.#chunkLeft < 0) {
        const lf = data.indexOf(10, i);
        if (lf < 0) {
          this.#sizeLine += data.toString('latin1', i, n);
          return;
        }
        this.#sizeLine += data.toString('latin1', i, lf);
        i = lf + 1;
        const size = parseInt(this.#sizeLine, 16);
        this.#sizeLine = '';
        if (size === 0) {
          // The response ended (server closed the stream).
          this.#socket.destroy();
          return;
        }
        this.#chunkLeft = size;
        continue;
      }
      const take = Math.min(this.#chunkLeft, n - i);
      this.#body(data.subarray(i, i + take));
      i += take;
      this.#chunkLeft -= take;
      if (this.#chunkLeft === 0) {
        this.#chunkLeft = -1;
        this.#skipCrlf = 2;
      }
    }
  }

  /** The SSE body: finds every `"seq":N,"t":T` and accounts for it. */
  #body(slice: Buffer): void {
    this.onBody?.(slice);
    let data = slice;
    if (this.#carry !== undefined) {
      data = Buffer.concat([this.#carry, slice]);
      this.#carry = undefined;
    }
    if (!this.ready && data.indexOf(CONNECTED) >= 0) this.#markReady();
    let pos = 0;
    const n = data.length;
    const tally = this.#tally;
    for (;;) {
      const at = data.indexOf(SEQ, pos);
      if (at < 0) break;
      // seq: an unsigned integer
      let i = at + 6;
      let seq = 0;
      let c = 0;
      while (i < n && (c = data[i]!) >= 48 && c <= 57) {
        seq = seq * 10 + (c - 48);
        i++;
      }
      // then `,"t":` and a decimal number
      i += 5;
      let t = 0;
      let scale = 0;
      while (i < n) {
        c = data[i]!;
        if (c >= 48 && c <= 57) {
          t = t * 10 + (c - 48);
          if (scale > 0) scale *= 10;
        } else if (c === 46) scale = 1;
        else break;
        i++;
      }
      if (i >= n) {
        // The pair runs past this slice: keep (a copy of) it for the next one.
        this.#carry = Buffer.from(data.subarray(at));
        return;
      }
      if (scale > 0) t /= scale;
      pos = i;
      if (seq === this.next) this.next++;
      else if (seq < this.floor) {
        tally.late++;
        continue;
      } else if (seq < this.next) {
        tally.dupes++;
        continue;
      } else {
        tally.gaps += seq - this.next;
        this.next = seq + 1;
      }
      tally.events++;
      tally.histogram.record(now() - t);
    }
    // A needle split across two slices: keep the tail that could start one.
    for (let k = Math.max(pos, n - SEQ.length + 1); k < n; k++) {
      if (data[k] === 34 && SEQ.subarray(0, n - k).equals(data.subarray(k))) {
        this.#carry = Buffer.from(data.subarray(k));
        break;
      }
    }
  }
}
