/**
 * A resilient client for the kit's Server-Sent Events endpoints.
 *
 * fetch + a streamed body parsed by eventsource-parser (instead of the native EventSource, which
 * cannot send an `Authorization` header, retries forever at a fixed delay and gives up for good
 * after one 5xx). Works in browsers and in Node >= 20.
 */
import { createParser, type ParseError } from 'eventsource-parser';
import { StageTexts } from '../../protocol/compact.js';
import { ID_RULE, isValidId } from '../../protocol/ids.js';
import { compareLogIds, isLogId } from '../../protocol/log-id.js';
import type { SnapshotMessage, StreamEventMap } from '../../protocol/messages.js';
import { QueryParam, streamUrl } from '../../protocol/routes.js';
import { exponentialBackoff, type BackoffStrategy } from './backoff.js';
import { systemClock, type Clock } from './clock.js';
import { Emitter } from './emitter.js';
import { isClientEvent } from './event-names.js';
import { isEventStream, readHttpFailure, type ServerError } from './http-response.js';
import { NetworkWatcher, isOffline } from './network-watcher.js';
import { MuxCore, type MuxDetail, type MuxHandle, type MuxStatus, type Transport } from './shared/mux-core.js';
import { absoluteBase, sharedPort, type MuxPort } from './shared/share.js';
import { resolveToken, type TokenSource } from './token-source.js';
import { Watchdog } from './watchdog.js';
import { cancelStagePath } from '../../protocol/routes.js';

/** The states of a client. Changed in one place, which emits the `state` event. */
export const ConnectionState = {
  /** A request is on its way and no response has arrived yet. */
  connecting: 'connecting',
  /** The stream is open: events flow. */
  open: 'open',
  /** The connection failed or dropped; a retry is scheduled (see the `reconnecting` event). */
  reconnecting: 'reconnecting',
  /** The browser reports no network; the client reconnects as soon as it comes back. */
  offline: 'offline',
  /** Not connected and not trying: before `connect()`, after `disconnect()`, or after a fatal failure. */
  closed: 'closed',
} as const;
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

/** Why a connection attempt or an open connection ended. */
export const DisconnectReason = {
  /** `disconnect()` was called. */
  disconnect: 'disconnect',
  /** `closeOnDone` and the stage sent `done`. */
  done: 'done',
  /** The server answered with a status other than 200 (`status` and `error` say which). */
  httpStatus: 'http_status',
  /** A 200 that is not `text/event-stream`: the URL points at something else. */
  contentType: 'content_type',
  /** The request or the body failed (also: the `token` function threw). */
  network: 'network',
  /** The server ended the stream. */
  streamEnded: 'stream_ended',
  /** No byte (heartbeats included) arrived for `heartbeatMs * watchdogMultiplier`: a half-open connection. */
  watchdog: 'watchdog',
  /** The browser went offline. */
  offline: 'offline',
  /** One event grew beyond `maxEventChars` without ending. */
  protocol: 'protocol',
  /** The server ended the stream because its token expired (`token_expired`): the client asks for a new token and resumes at once. */
  tokenExpired: 'token_expired',
} as const;
export type DisconnectReason = (typeof DisconnectReason)[keyof typeof DisconnectReason];

/** How a connection attempt failed: it got no HTTP response, the server refused it, or the token source threw. */
export const FailureKind = {
  /** No HTTP response at all: the server is down or unreachable, or the browser blocked the request (CORS, mixed content, CSP). */
  network: 'network',
  /** The server answered with a status other than 200 (`status`, and `code` when it sent its JSON error). */
  http: 'http',
  /** The `token` function threw or rejected. */
  token: 'token',
} as const;
export type FailureKind = (typeof FailureKind)[keyof typeof FailureKind];

/**
 * Why the client cannot get a stream open: on `disconnected`, `reconnecting` and `state` events while its attempts fail,
 * until a stream opens again. Attempts that opened a stream and dropped later are not failures.
 */
export interface ConnectionFailure {
  kind: FailureKind;
  /** The HTTP status, for `http`. */
  status?: number;
  /** The server's error code (`auth_not_configured`, `forbidden`, `unavailable`, ...), when it sent its JSON error. */
  code?: string;
  /** What went wrong, in English: the server's error message, or the error the request or the token function threw. */
  message: string;
  /** The server tried: its origin and path prefix, e.g. `http://127.0.0.1:8100`. */
  server: string;
  /** Consecutive attempts that failed this way (same kind, and same status for `http`): 1, 2, 3, ... */
  attempts: number;
  /** True when the client stopped for good: nothing is retried. */
  fatal: boolean;
}

/** Detail of `disconnected`: fired whenever an attempt or an open connection ends, and when the client stops for good. */
export interface DisconnectedEvent {
  reason: DisconnectReason;
  /** True when a retry is scheduled or the client waits for the network; false when it is closed now. */
  willReconnect: boolean;
  /** The HTTP status, for `http_status`. */
  status?: number;
  /** The server's error, when it sent its JSON error body. */
  error?: ServerError;
  /** The thrown value, for `network`. */
  cause?: unknown;
  /** Set when the attempt never got a stream open: why, and how many attempts in a row failed so. */
  failure?: ConnectionFailure;
}

/** Detail of `reconnecting`: a retry is scheduled. */
export interface ReconnectingEvent {
  /** 1 for the first retry after the connection was stable, then 2, 3, ... */
  attempt: number;
  /** How long until the retry, in ms. */
  delayMs: number;
  reason: DisconnectReason;
  /** Why the attempts fail, when they do (see {@link ConnectionFailure}). */
  failure?: ConnectionFailure;
}

/** Detail of `state`. */
export interface StateChangeEvent {
  state: ConnectionState;
  previous: ConnectionState;
  /** While attempts fail (`reconnecting`, `offline`, or `closed` after a fatal refusal): why (see {@link ConnectionFailure}). */
  failure?: ConnectionFailure;
}

/** Detail of `message`: every event of the stream, known types and unknown ones, after its own event. */
export interface StreamEvent {
  /** The SSE event name (`message` when the server sent none). */
  type: string;
  /** The data parsed as JSON, or the raw text when it is not JSON. */
  data: unknown;
  /** The SSE `id:` of the event, if it had one. */
  id: string | undefined;
}

/** Events of an {@link SSEClient}: the stream's messages plus the client's lifecycle. */
export interface SSEClientEventMap extends StreamEventMap {
  /** Every stream event, wrapped; the only way to receive events the server sent without an `event:` name. */
  message: StreamEvent;
  disconnected: DisconnectedEvent;
  reconnecting: ReconnectingEvent;
  state: StateChangeEvent;
}

export interface SSEClientOptions {
  /** Origin (and path prefix) of the server, e.g. `https://example.com`. Default `''`: the page's origin. Required outside a browser. */
  baseUrl?: string;
  /** Bearer token; when set, the client uses the authenticated `.../stream/` endpoints. Default none. */
  token?: TokenSource;
  /** The fetch to use. Default the global `fetch`, looked up at each attempt. */
  fetch?: typeof globalThis.fetch;
  /** Delay strategy for retries. Default {@link exponentialBackoff} with a 30 s cap and full jitter. */
  backoff?: BackoffStrategy;
  /** Base delay of the backoff in ms until the server sends `retry:`. Default 1000. */
  retryMs?: number;
  /** A connection that stayed open this long (ms) resets the backoff to its first attempt. Default 10000. */
  stableAfterMs?: number;
  /** The server's heartbeat interval in ms (`SSE_HEARTBEAT_MS`). Default 15000. `0` turns the watchdog off. */
  heartbeatMs?: number;
  /** The watchdog declares the connection dead after `heartbeatMs * watchdogMultiplier` ms without a byte. Default 2.5. */
  watchdogMultiplier?: number;
  /** Single-stage clients only: close after the stage's `done`. Default false. */
  closeOnDone?: boolean;
  /** Resume after this event id on the first connection. Default none. */
  lastEventId?: string;
  /** Largest event, in characters, the parser buffers before it gives up on the stream. Default 64 Mi. */
  maxEventChars?: number;
  /** Timers; inject a fake clock in tests. Default the real timers. */
  clock?: Clock;
  /**
   * Ask the server for compact token events (`?compact=1`): each carries only the new piece and its offset, and
   * the client rebuilds `full_text`, so handlers get the same message. A 5,000-token answer then costs its text once
   * on the wire instead of once per token. Default true; a server without the mode sends full tokens, which work too.
   */
  compact?: boolean;
  /**
   * Let the server start a fresh stream (one without `Last-Event-ID`) with a `snapshot` event: the current state of
   * every stage watched, text included once, so a page opened or reloaded mid-job draws it at once. `false` adds
   * `?snapshot=0`. Reconnects resume with `Last-Event-ID` and never get one. Default true.
   */
  snapshot?: boolean;
  /**
   * Share one connection with every other client of the browser (every tab of the origin): the client becomes a
   * subscription on the server's multiplexed stream, held by a SharedWorker, a leader tab or this page (see
   * `configureSharing`). Browsers allow six HTTP/1.1 connections per origin; shared, a hundred viewers in ten tabs
   * hold one. Against a server without the multiplexed endpoint the client falls back to a stream of its own.
   * Default true in a browser; false in Node, and whenever `fetch` or `clock` is given (they cannot cross into a worker).
   */
  shared?: boolean;
  /**
   * How the client reaches the server: `sse` (the default), `websocket` (the multiplexed connection over one
   * WebSocket, `/api/v1/sse/ws/`, for networks that mangle long HTTP responses), or `auto` (the WebSocket first,
   * SSE when it cannot open, remembering what worked). Every behaviour (backoff, fatal or retried refusals,
   * offline, watchdog, exact resume, state on connect) is the same on both.
   */
  transport?: Transport;
  /**
   * Only messages of these types (`['progress', 'done']`), filtered on the server (`?types=`): a dashboard of 200
   * jobs need not receive every token. The client's own events (`connected`, `snapshot`, ...) always come; a snapshot
   * holds only these types. Default: all.
   */
  types?: string[];
  /** An all-stages client: only these stages (`?stages=`), not the whole project. Default: all. */
  stages?: string[];
  /** The WebSocket class for `transport: 'websocket'` outside a browser (Node 20 has none: the `ws` package's). */
  WebSocket?: typeof globalThis.WebSocket;
}

type Handler = (data: never) => void;

function parseData(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

/**
 * A client for one stage (`stageName` given) or all stages of a project.
 *
 * @example
 * const client = createSSEClient('1', 'rewrite', { baseUrl: 'http://127.0.0.1:8000' })
 *   .on('token', (m) => process.stdout.write(m.content))
 *   .on('done', () => client.disconnect())
 *   .connect();
 */
export class SSEClient {
  readonly projectId: string;
  /** `null` for an all-stages client. */
  readonly stageName: string | null;
  /** The endpoint the client requests. */
  readonly url: string;

  constructor(projectId: string, stageName?: string | null, options: SSEClientOptions = {}) {
    if (!isValidId(projectId)) {
      throw new TypeError(`SSEClient: projectId ${JSON.stringify(projectId)} is invalid; it must be ${ID_RULE}.`);
    }
    if (stageName && !isValidId(stageName)) {
      throw new TypeError(`SSEClient: stageName ${JSON.stringify(stageName)} is invalid; it must be ${ID_RULE}, or omitted for all stages.`);
    }
    for (const name of ['types', 'stages'] as const) {
      const list = options[name];
      if (list === undefined) continue;
      if (!Array.isArray(list) || list.length === 0 || list.length > 16 || !list.every((item) => isValidId(item)) || new Set(list).size !== list.length) {
        throw new TypeError(`SSEClient: ${name} must be 1 to 16 distinct names, each ${ID_RULE}.`);
      }
    }
    if (options.stages && stageName) throw new TypeError('SSEClient: stages narrows an all-stages client; this one watches one stage already.');
    const baseUrl = options.baseUrl ?? '';
    if (!/^[a-z][a-z0-9+.-]*:/i.test(baseUrl) && typeof (globalThis as { location?: unknown }).location === 'undefined') {
      throw new TypeError('SSEClient: outside a browser, pass an absolute baseUrl such as "http://127.0.0.1:8000".');
    }
    this.projectId = projectId;
    this.stageName = stageName || null;
    this.url = streamUrl(baseUrl, projectId, this.stageName, options.token !== undefined);
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#backoff = options.backoff ?? exponentialBackoff();
    this.#lastEventId = options.lastEventId ?? '';
    const watchdogMs = (options.heartbeatMs ?? 15_000) * (options.watchdogMultiplier ?? 2.5);
    // Silence before any response: nothing answered, as when the server cannot be reached.
    this.#watchdog = new Watchdog(this.#clock, watchdogMs, () =>
      this.#fail({ reason: DisconnectReason.watchdog }, undefined, this.#state === ConnectionState.connecting ? FailureKind.network : undefined),
    );
  }

  /** The connection state; listen to `state` for changes. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The id of the last event received; sent as `Last-Event-ID` on every reconnect. */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Why the attempts fail, while they do: cleared when a stream opens, and by `connect()` after the client closed. */
  get failure(): ConnectionFailure | undefined {
    return this.#failure;
  }

  /** True while the stream is open. */
  isConnected(): boolean {
    return this.#state === ConnectionState.open;
  }

  /** Adds a handler. Unknown event names from the server can be listened to by name too. */
  on<K extends keyof SSEClientEventMap>(type: K, handler: (data: SSEClientEventMap[K]) => void): this;
  on(type: string, handler: (data: unknown) => void): this;
  on(type: string, handler: Handler): this {
    this.#emitter.on(type, handler);
    return this;
  }

  /** Removes a handler added with {@link on}. */
  off<K extends keyof SSEClientEventMap>(type: K, handler: (data: SSEClientEventMap[K]) => void): this;
  off(type: string, handler: (data: unknown) => void): this;
  off(type: string, handler: Handler): this {
    this.#emitter.off(type, handler);
    return this;
  }

  /**
   * Opens the stream. Does nothing while connecting or open; while a retry is pending or the
   * client waits for the network, tries again at once.
   */
  connect(): this {
    if (this.#state === ConnectionState.connecting || this.#state === ConnectionState.open) return this;
    if (this.#state === ConnectionState.closed) {
      this.#attempt = 0;
      this.#failure = undefined;
      this.#network.start();
    }
    this.#clearRetry();
    void this.#open();
    return this;
  }

  /** Closes the stream and cancels any pending retry. Idempotent; nothing reconnects afterwards. */
  disconnect(): this {
    if (this.#state !== ConnectionState.closed) this.#close({ reason: DisconnectReason.disconnect });
    return this;
  }

  /**
   * Cancels the stage (`POST …/stages/{stage}/cancel/`, with the client's token when it has one): the hub records
   * it, publishes a `cancelled` message once, and the worker stops. `stage` defaults to the client's stage (required
   * on an all-stages client). Resolves to the server's JSON answer with its HTTP status: 200 `{cancelled: true, id}`
   * (also for a repeat, with `already_cancelled: true`), 409 `stage_finished` / `stage_not_running`, 401/403 without
   * a token that grants the project. Rejects only when the request itself failed (network).
   */
  async cancel(stage?: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const name = stage ?? this.stageName;
    if (!name || !isValidId(name)) throw new TypeError(`SSEClient.cancel: a stage name is required (${ID_RULE}).`);
    const headers: Record<string, string> = { 'Content-Type': 'application/json', Accept: 'application/json' };
    const token = this.#options.token === undefined ? undefined : await resolveToken(this.#options.token);
    if (token) headers['Authorization'] = `Bearer ${token}`;
    const fetch = this.#options.fetch ?? globalThis.fetch;
    const response = await fetch((this.#options.baseUrl ?? '').replace(/\/+$/, '') + cancelStagePath(this.projectId, name), {
      method: 'POST',
      headers,
      body: '{}',
    });
    const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    return { status: response.status, body };
  }

  // ---- private ----

  readonly #options: SSEClientOptions;
  readonly #clock: Clock;
  readonly #backoff: BackoffStrategy;
  readonly #emitter = new Emitter();
  readonly #watchdog: Watchdog;
  readonly #network = new NetworkWatcher({ online: () => this.#onOnline(), offline: () => this.#onOffline() });
  #state: ConnectionState = ConnectionState.closed;
  #lastEventId: string;
  /** Each stage's text so far, to rebuild `full_text` of compact token events. */
  readonly #texts = new StageTexts();
  /** The server's `retry:` in ms, kept across connections as the spec says. */
  #serverRetryMs: number | undefined;
  /** Bumped by every attempt and by every teardown: async steps of an older attempt see a different value and stop. */
  #generation = 0;
  #abort: AbortController | undefined;
  #attempt = 0;
  #openedAt: number | undefined;
  #retryTimer: unknown;
  /** The subscription on the shared connection, while shared. */
  #shared: MuxHandle | undefined;
  /** The server has no multiplexed endpoint: streams of our own from now on. */
  #sharedUnsupported = false;
  /** Ids of messages taken ahead of the cursor (see `cursor`), which a resume may bring again. */
  readonly #ahead = new Set<string>();
  /** The connection of a client not shared but on a WebSocket. */
  #core: MuxCore | undefined;
  /** Why the attempts fail, while they do. */
  #failure: ConnectionFailure | undefined;

  /** True when this client goes through the shared connection. */
  get shared(): boolean {
    const options = this.#options;
    return options.shared !== false && !options.fetch && !options.clock && !options.WebSocket && !this.#sharedUnsupported && sharedPort() !== undefined;
  }

  /** Where the subscription goes: the browser's shared connection, or (a WebSocket of its own) a connection of this client's. */
  #port(): Pick<MuxPort, 'add'> | undefined {
    if (this.shared) return sharedPort();
    const options = this.#options;
    if ((options.transport ?? 'sse') === 'sse' || this.#sharedUnsupported) return undefined;
    return {
      add: (baseUrl, spec, subscriber) => {
        this.#core ??= new MuxCore(absoluteBase(baseUrl), {
          transport: options.transport,
          ...(options.fetch && { fetch: options.fetch }),
          ...(options.clock && { clock: options.clock }),
          ...(options.WebSocket && { WebSocket: options.WebSocket }),
          ...(options.backoff && { backoff: options.backoff }),
          ...(options.heartbeatMs !== undefined && { heartbeatMs: options.heartbeatMs }),
          ...(options.stableAfterMs !== undefined && { stableAfterMs: options.stableAfterMs }),
          lingerMs: 0,
        });
        return this.#core.add({ ...spec, cursor: subscriber.cursor() }, subscriber);
      },
    };
  }

  #setState(next: ConnectionState): void {
    if (next === this.#state) return;
    const previous = this.#state;
    this.#state = next;
    if (next === ConnectionState.open) this.#failure = undefined;
    const failing = next === ConnectionState.reconnecting || next === ConnectionState.offline || next === ConnectionState.closed;
    const failure = failing ? this.#failure : undefined;
    this.#emitter.emit('state', { state: next, previous, ...(failure && { failure }) } satisfies StateChangeEvent);
  }

  async #open(): Promise<void> {
    const generation = ++this.#generation;
    const current = () => generation === this.#generation;
    if (isOffline()) {
      this.#setState(ConnectionState.offline);
      return;
    }
    this.#setState(ConnectionState.connecting);
    this.#openedAt = undefined;
    const port = this.#port();
    if (port) return this.#openShared(generation, port);

    let response: Response;
    const abort = new AbortController();
    this.#abort = abort;
    const headers: Record<string, string> = { Accept: 'text/event-stream' };
    try {
      const token = await resolveToken(this.#options.token);
      if (!current()) return;
      if (token) headers['Authorization'] = `Bearer ${token}`;
    } catch (cause) {
      if (current()) this.#fail({ reason: DisconnectReason.network, cause }, undefined, FailureKind.token);
      return;
    }
    try {
      // [spec] "If the last event ID string is not the empty string, set Last-Event-ID."
      if (this.#lastEventId) headers['Last-Event-ID'] = this.#lastEventId;
      this.#watchdog.start();
      const fetch = this.#options.fetch ?? globalThis.fetch;
      response = await fetch(this.#requestUrl(), { method: 'GET', headers, signal: abort.signal });
    } catch (cause) {
      if (current()) this.#fail({ reason: DisconnectReason.network, cause }, undefined, FailureKind.network);
      return;
    }
    if (!current()) {
      void response.body?.cancel().catch(() => undefined);
      return;
    }

    if (response.status !== 200) {
      const { status, error, retry, retryAfterMs } = await readHttpFailure(response, this.#clock.now());
      if (!current()) return;
      const detail: Omit<DisconnectedEvent, 'willReconnect'> = { reason: DisconnectReason.httpStatus, status };
      if (error) detail.error = error;
      if (retry) this.#fail(detail, retryAfterMs, FailureKind.http);
      else this.#close(detail, FailureKind.http); // [spec] 204 and other statuses "fail the connection": no retry.
      return;
    }
    if (!isEventStream(response) || !response.body) {
      void response.body?.cancel().catch(() => undefined);
      this.#close({ reason: DisconnectReason.contentType });
      return;
    }

    this.#setState(ConnectionState.open);
    this.#openedAt = this.#clock.now();
    await this.#read(response.body, generation);
  }

  /** {@link url} with the query parameters the options ask for. */
  #requestUrl(): string {
    const params = new URLSearchParams();
    if (this.#options.compact !== false) params.set(QueryParam.compact, '1');
    if (this.#options.snapshot === false) params.set(QueryParam.snapshot, '0');
    if (this.#options.types) params.set(QueryParam.types, this.#options.types.join(','));
    if (this.#options.stages) params.set(QueryParam.stages, this.#options.stages.join(','));
    const query = params.toString();
    return query ? `${this.url}${this.url.includes('?') ? '&' : '?'}${query}` : this.url;
  }

  async #read(body: ReadableStream<Uint8Array>, generation: number): Promise<void> {
    const current = () => generation === this.#generation;
    const parser = createParser({
      onEvent: (event) => {
        if (current()) this.#dispatch(event.event ?? 'message', parseData(event.data), event.id);
      },
      onRetry: (ms) => {
        this.#serverRetryMs = ms;
      },
      onError: (error: ParseError) => {
        if (error.type === 'max-buffer-size-exceeded' && current()) this.#close({ reason: DisconnectReason.protocol, cause: error });
      },
      maxBufferSize: this.#options.maxEventChars ?? 64 * 1024 * 1024,
    });
    const decoder = new TextDecoder();
    const reader = body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (!current()) return;
        if (done) break;
        this.#watchdog.feed();
        parser.feed(decoder.decode(value, { stream: true }));
        if (!current()) return;
      }
    } catch (cause) {
      if (current()) this.#fail({ reason: DisconnectReason.network, cause });
      return;
    } finally {
      if (!current()) void reader.cancel().catch(() => undefined);
    }
    // [spec] An event still being buffered when the stream ends is discarded.
    this.#fail({ reason: DisconnectReason.streamEnded });
  }

  /**
   * Subscribes on the shared connection. The connection (its backoff, watchdog and network status) belongs to
   * whoever holds it; this client reports its states as if they were its own, and keeps its own cursor: the last
   * id it took, which every resubscription resumes after (also with a new leader tab, which may send again what
   * this client has: such events are dropped here).
   */
  #openShared(generation: number, port: Pick<MuxPort, 'add'>): void {
    const current = () => generation === this.#generation;
    this.#shared = port.add(
      this.#options.baseUrl ?? '',
      {
        projectId: this.projectId,
        stage: this.stageName,
        snapshot: this.#options.snapshot !== false,
        cursor: this.#lastEventId,
        public: this.#options.token === undefined,
        transport: this.#options.transport ?? 'sse',
        ...(this.#options.types && { types: [...this.#options.types] }),
        ...(this.#options.stages && { stages: [...this.#options.stages] }),
      },
      {
        cursor: () => this.#lastEventId,
        token: () => resolveToken(this.#options.token),
        status: (status) => {
          if (current()) this.#sharedStatus(status);
        },
        event: (type, id, data) => {
          if (!current()) return;
          // A reset or snapshot re-bases the cursor (a log that started over has smaller ids): never dropped.
          if (id !== undefined && type !== 'reset' && type !== 'snapshot' && this.#isSeen(id)) return;
          this.#dispatch(type, data, id);
        },
      },
    );
  }

  #sharedStatus(status: MuxStatus): void {
    switch (status.state) {
      case 'connecting':
        this.#setState(ConnectionState.connecting);
        return;
      case 'open':
        this.#setState(ConnectionState.open);
        this.#openedAt = this.#clock.now();
        return;
      case 'reconnecting': {
        const detail = disconnectDetail(status.detail);
        const failure = this.#noteFailure(detail, kindOf(status.detail), false);
        const generation = this.#generation;
        this.#setState(ConnectionState.reconnecting);
        if (generation !== this.#generation) return;
        this.#emitter.emit('disconnected', { ...detail, willReconnect: true, ...(failure && { failure }) } satisfies DisconnectedEvent);
        if (generation !== this.#generation) return;
        this.#emitter.emit('reconnecting', { attempt: status.attempt, delayMs: status.delayMs, reason: detail.reason, ...(failure && { failure }) } satisfies ReconnectingEvent);
        return;
      }
      case 'offline':
        this.#setState(ConnectionState.offline);
        this.#emitter.emit('disconnected', { reason: DisconnectReason.offline, willReconnect: true } satisfies DisconnectedEvent);
        return;
      case 'failed': {
        this.#close(disconnectDetail(status.detail), kindOf(status.detail));
        return;
      }
      case 'unsupported':
        // An older server: a stream of our own, at once.
        this.#sharedUnsupported = true;
        this.#endAttempt();
        void this.#open();
        return;
    }
  }

  /** An event at or before the last one taken (both log ids): a new leader tab resent it. */
  #isSeen(id: string): boolean {
    const last = this.#lastEventId;
    return last !== '' && isLogId(id) && isLogId(last) && compareLogIds(id, last) <= 0;
  }

  #dispatch(type: string, data: unknown, id: string | undefined): void {
    // A slow client's flush (the server's priorities) ends with an id-only `cursor` event: the position, no message.
    if (type === 'cursor') {
      if (id !== undefined) this.#advance(id);
      return;
    }
    // Sent ahead of messages with smaller ids, without its id line: taken now, and dropped if a resume brings it again.
    const dataId = (data as { id?: unknown } | null)?.id;
    if (id === undefined && isLogId(dataId) && isLogId(this.#lastEventId) && compareLogIds(dataId, this.#lastEventId) > 0) this.#ahead.add(dataId);
    else if (id !== undefined && this.#ahead.has(id)) {
      this.#advance(id);
      return;
    }
    // A compact token that does not continue its stage's text: out of step, so reconnect (the server sends each
    // stage's first token of a connection whole, which brings the text back). Its id is not taken: the resume
    // must bring this very token again.
    if (type === 'token' && !this.#texts.apply(data)) {
      this.#fail({ reason: DisconnectReason.protocol });
      return;
    }
    if (type === 'snapshot') this.#seedTexts(data);
    // [spec] The id field sets the last event ID buffer, and an empty id clears it.
    if (id !== undefined) this.#advance(id);
    const generation = this.#generation;
    if (!isClientEvent(type)) this.#emitter.emit(type, data);
    if (generation !== this.#generation) return; // a handler disconnected
    this.#emitter.emit('message', { type, data, id } satisfies StreamEvent);
    if (generation !== this.#generation) return;
    if (type === 'done' && this.#options.closeOnDone && this.stageName) this.#close({ reason: DisconnectReason.done });
    // No backoff: the token source is asked again, and the Last-Event-ID resume leaves no gap.
    else if (type === 'token_expired') this.#fail({ reason: DisconnectReason.tokenExpired }, 0);
  }

  /** The cursor moves to `id`; messages taken ahead of it are behind it now, and no resume brings them again. */
  #advance(id: string): void {
    this.#lastEventId = id;
    if (this.#ahead.size === 0 || !isLogId(id)) return;
    this.#ahead.delete(id);
    for (const ahead of this.#ahead) if (compareLogIds(ahead, id) <= 0) this.#ahead.delete(ahead);
  }

  /** A snapshot carries each stage's text so far: the compact tokens after it continue that text. */
  #seedTexts(data: unknown): void {
    const stages = (data as Partial<SnapshotMessage> | null)?.stages;
    if (typeof stages !== 'object' || stages === null) return;
    for (const [stage, state] of Object.entries(stages)) {
      const text = state?.done?.full_text ?? state?.text;
      if (typeof text === 'string') this.#texts.set(stage, text);
    }
  }

  /**
   * The failure an attempt that ended with `detail` adds up to: `kind` is how it failed, undefined when it did not fail to
   * open (a stream that dropped, `disconnect()`), which clears the count.
   */
  #noteFailure(detail: Omit<DisconnectedEvent, 'willReconnect'>, kind: FailureKind | undefined, fatal: boolean): ConnectionFailure | undefined {
    if (kind === undefined) return (this.#failure = undefined);
    const previous = this.#failure;
    const attempts = previous && previous.kind === kind && previous.status === detail.status ? previous.attempts + 1 : 1;
    const { status, error, cause } = detail;
    const message = error?.message || (cause instanceof Error ? cause.message : cause === undefined ? '' : String(cause)) || (status ? `HTTP ${status}` : kind);
    this.#failure = {
      kind,
      ...(status !== undefined && { status }),
      ...(error?.code && { code: error.code }),
      message,
      server: serverOf(this.#options.baseUrl ?? ''),
      attempts,
      fatal,
    };
    return this.#failure;
  }

  /** Ends the current attempt and schedules the next one (or waits for the network). `kind`: how the attempt failed to open, if it did. */
  #fail(detail: Omit<DisconnectedEvent, 'willReconnect'>, retryAfterMs?: number, kind?: FailureKind): void {
    const stable = this.#openedAt !== undefined && this.#clock.now() - this.#openedAt >= (this.#options.stableAfterMs ?? 10_000);
    const failure = this.#noteFailure(detail, kind, false);
    this.#endAttempt();
    if (stable) this.#attempt = 0;
    const attempt = ++this.#attempt;
    const generation = this.#generation;

    if (isOffline()) {
      this.#setState(ConnectionState.offline);
      this.#emitter.emit('disconnected', { ...detail, willReconnect: true, ...(failure && { failure }) } satisfies DisconnectedEvent);
      return;
    }
    const baseMs = this.#serverRetryMs ?? this.#options.retryMs ?? 1000;
    const delayMs = Math.max(0, retryAfterMs ?? this.#backoff({ attempt, baseMs }));
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      void this.#open();
    }, delayMs);
    this.#setState(ConnectionState.reconnecting);
    if (generation !== this.#generation) return; // a state handler disconnected
    this.#emitter.emit('disconnected', { ...detail, willReconnect: true, ...(failure && { failure }) } satisfies DisconnectedEvent);
    if (generation !== this.#generation) return;
    this.#emitter.emit('reconnecting', { attempt, delayMs, reason: detail.reason, ...(failure && { failure }) } satisfies ReconnectingEvent);
  }

  /** Ends everything for good: the attempt, the pending retry, the network listeners. `kind`: a fatal refusal's. */
  #close(detail: Omit<DisconnectedEvent, 'willReconnect'>, kind?: FailureKind): void {
    const failure = this.#noteFailure(detail, kind, true);
    this.#endAttempt();
    this.#clearRetry();
    this.#network.stop();
    this.#setState(ConnectionState.closed);
    this.#emitter.emit('disconnected', { ...detail, willReconnect: false, ...(failure && { failure }) } satisfies DisconnectedEvent);
  }

  #endAttempt(): void {
    this.#generation++;
    this.#shared?.remove();
    this.#shared = undefined;
    this.#abort?.abort();
    this.#abort = undefined;
    this.#openedAt = undefined;
    this.#watchdog.stop();
  }

  #clearRetry(): void {
    if (this.#retryTimer === undefined) return;
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  #onOnline(): void {
    // The network is back: retry at once instead of waiting out the backoff.
    if (this.#state === ConnectionState.offline || this.#state === ConnectionState.reconnecting) this.connect();
  }

  #onOffline(): void {
    if (this.#state === ConnectionState.closed) return;
    this.#clearRetry();
    const wasActive = this.#state === ConnectionState.connecting || this.#state === ConnectionState.open;
    this.#endAttempt();
    this.#setState(ConnectionState.offline);
    if (wasActive) this.#emitter.emit('disconnected', { reason: DisconnectReason.offline, willReconnect: true } satisfies DisconnectedEvent);
  }
}

/** How a shared connection's attempt failed, from its detail. */
function kindOf(detail: MuxDetail): FailureKind | undefined {
  return detail.failure ?? (detail.status !== undefined ? FailureKind.http : undefined);
}

/** A shared connection's detail as the `disconnected` event says it. */
function disconnectDetail({ failure: _failure, ...detail }: MuxDetail): Omit<DisconnectedEvent, 'willReconnect'> {
  return detail;
}

/** The server of `baseUrl` as a failure names it: origin and path prefix (the page's origin for `''`). */
function serverOf(baseUrl: string): string {
  try {
    return absoluteBase(baseUrl);
  } catch {
    return baseUrl;
  }
}

/** Creates an {@link SSEClient} for one stage, or for all stages of the project when `stageName` is omitted. */
export function createSSEClient(projectId: string, stageName?: string | null, options?: SSEClientOptions): SSEClient {
  return new SSEClient(projectId, stageName, options);
}
