/**
 * One connection to the multiplexed stream (protocol/mux.ts) carrying the subscriptions of any number of
 * subscribers: the clients of a page, or of every tab of a browser when it runs in a SharedWorker or in the leader
 * tab. It owns what belongs to the connection (the request, backoff, watchdog, network status) and routes each
 * event to its subscription. What belongs to a subscriber (its token, its cursor, its handlers) stays the
 * subscriber's: it is asked for a token at every (re)subscription, and its events carry their log ids so it can
 * resume exactly wherever the connection goes.
 *
 * Runs in a page, a SharedWorker or a leader tab alike: it uses only fetch, timers and the network events of its
 * global scope.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import {
  MUX_CLOSE,
  MUX_CONNECTION_HEADER,
  MUX_ROUTES,
  MUX_SUBSCRIPTION_FIELD,
  MUX_WS_ROUTE,
  newConnectionId,
  type MuxResultMessage,
  type MuxSubscribeBatchAnswer,
  type MuxSubscribeRequest,
  type MuxSubscribeResult,
} from '../../../protocol/mux.js';
import { exponentialBackoff, type BackoffStrategy } from '../backoff.js';
import { systemClock, type Clock } from '../clock.js';
import { isEventStream, isRetriedFailure, readHttpFailure, parseRetryAfter, type ServerError } from '../http-response.js';
import { NetworkWatcher, isOffline } from '../network-watcher.js';
import { Watchdog } from '../watchdog.js';

/** What a subscriber asks for. Plain data: it crosses into a SharedWorker or another tab. */
export interface MuxSpec {
  projectId: string;
  /** null: every stage. */
  stage: string | null;
  /** Start with a `snapshot` when there is no cursor. */
  snapshot: boolean;
  /** The last log id the subscriber has ('' for none): the subscription resumes after it. */
  cursor: string;
  /** True: the subscriber has no token (a public stream); it is then never asked for one. */
  public: boolean;
  /** How its connection reaches the server. Default `sse`. Subscribers of one server and transport share a connection. */
  transport?: Transport;
  /** Only messages of these types / stages (the server filters). */
  types?: string[];
  stages?: string[];
}

/** Why a subscription stopped flowing, as the SSEClient's `disconnected` event says it. */
export interface MuxDetail {
  reason: 'http_status' | 'content_type' | 'network' | 'stream_ended' | 'watchdog' | 'offline' | 'protocol';
  status?: number;
  error?: ServerError;
  /** What failed, as text (it crosses a MessagePort). */
  cause?: string;
  /** `network`: the attempt got no HTTP response at all (refused, unreachable, blocked by CORS); `token`: the subscriber's token source threw. */
  failure?: 'network' | 'token';
}

/** A subscription's state, reported to its subscriber. Plain data. */
export type MuxStatus =
  | { state: 'connecting' }
  /** The subscription's `connected` arrived: its events flow. */
  | { state: 'open' }
  /** Its connection dropped (or its subscribe was refused for now); the connection retries in `delayMs`. */
  | { state: 'reconnecting'; attempt: number; delayMs: number; detail: MuxDetail }
  | { state: 'offline'; detail: MuxDetail }
  /** Refused for good (a bad token, a project the token does not grant, a bad id): nothing is retried. */
  | { state: 'failed'; detail: MuxDetail }
  /** The server has no multiplexed endpoint: use a stream of your own. */
  | { state: 'unsupported' };

/** The subscriber's side, as the connection calls it. */
export interface MuxSink {
  /** A fresh token (asked at every subscribe; never for a public subscription). */
  token(): Promise<string | null | undefined>;
  status(status: MuxStatus): void;
  /** One event of the subscription: its SSE name, its `id:`, its data parsed (the `subscription` member removed). */
  event(type: string, id: string | undefined, data: unknown): void;
}

export interface MuxHandle {
  /** Ends the subscription. Idempotent. */
  remove(): void;
}

/** How the connection reaches the server. `auto` tries the WebSocket first, then SSE, and remembers what worked. */
export type Transport = 'sse' | 'websocket' | 'auto';

export interface MuxCoreOptions {
  /** Default `sse`. */
  transport?: Transport;
  /** The WebSocket class (Node 20 has none: pass the `ws` package's). Default the global `WebSocket`. */
  WebSocket?: typeof globalThis.WebSocket;
  fetch?: typeof globalThis.fetch;
  clock?: Clock;
  backoff?: BackoffStrategy;
  /** The server's heartbeat interval; the watchdog waits 2.5 times this. Default 15000. */
  heartbeatMs?: number;
  /** A connection open this long resets the backoff. Default 10000. */
  stableAfterMs?: number;
  /** How long the connection stays after its last subscription went, for one that comes right back (a re-render, a reload). Default 1000. */
  lingerMs?: number;
}

type Phase = 'waiting' | 'subscribing' | 'live' | 'ended' | 'failed';

interface Subscription {
  /** The id on the current connection; a new one on each connection (ids are never reused on one). */
  id: string | undefined;
  spec: MuxSpec;
  sink: MuxSink;
  phase: Phase;
  retryTimer?: unknown;
  retryAttempt: number;
}

type ConnectionPhase = 'idle' | 'connecting' | 'open' | 'waiting' | 'offline' | 'unsupported';

/** One multiplexed connection to `baseUrl` (an absolute origin, and a path prefix if any). */
export class MuxCore {
  readonly baseUrl: string;
  readonly #options: MuxCoreOptions;
  readonly #clock: Clock;
  readonly #backoff: BackoffStrategy;
  readonly #subs = new Set<Subscription>();
  readonly #byId = new Map<string, Subscription>();
  readonly #watchdog: Watchdog;
  readonly #network = new NetworkWatcher({ online: () => this.#onOnline(), offline: () => this.#onOffline() });
  #phase: ConnectionPhase = 'idle';
  #connectionId = '';
  #abort: AbortController | undefined;
  #generation = 0;
  #attempt = 0;
  #openedAt: number | undefined;
  #serverRetryMs: number | undefined;
  #retryTimer: unknown;
  #lingerTimer: unknown;
  #flushQueued = false;
  #unsubscribeQueue: string[] = [];
  /** Per-connection counters of subscription ids by prefix. */
  #counters = new Map<string, number>();
  /** The transport of the current attempt, and whether one attempt ever opened on it. */
  #transport: 'sse' | 'websocket';
  #socket: WebSocket | undefined;
  /** Control messages on the WebSocket waiting for their `result`. */
  #pending = new Map<number, (answer: ControlAnswer) => void>();
  #requests = 0;

  constructor(baseUrl: string, options: MuxCoreOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#backoff = options.backoff ?? exponentialBackoff();
    const watchdogMs = (options.heartbeatMs ?? 15_000) * 2.5;
    // Silence before the connection's first event: nothing answered, as when the server cannot be reached.
    this.#watchdog = new Watchdog(this.#clock, watchdogMs, () => this.#fail({ reason: 'watchdog', ...(this.#phase === 'connecting' && { failure: 'network' as const }) }));
    const transport = options.transport ?? 'sse';
    this.#transport = transport === 'auto' ? (remembered.get(this.baseUrl) ?? 'websocket') : transport;
  }

  /** The transport in use (for `auto`: the one it settled on). */
  get transport(): 'sse' | 'websocket' {
    return this.#transport;
  }

  /** Subscriptions held (for tests and for the worker's bookkeeping). */
  get size(): number {
    return this.#subs.size;
  }

  add(spec: MuxSpec, sink: MuxSink): MuxHandle {
    const sub: Subscription = { id: undefined, spec: { ...spec }, sink, phase: 'waiting', retryAttempt: 0 };
    this.#subs.add(sub);
    this.#cancelLinger();
    if (this.#phase === 'unsupported') {
      queueMicrotask(() => sink.status({ state: 'unsupported' }));
    } else if (this.#phase === 'open') {
      sink.status({ state: 'connecting' });
      this.#queueFlush();
    } else if (this.#phase === 'idle') {
      sink.status({ state: 'connecting' });
      this.#connect();
    } else {
      sink.status({ state: this.#phase === 'offline' ? 'offline' : 'connecting', ...(this.#phase === 'offline' && { detail: { reason: 'offline' } }) } as MuxStatus);
    }
    return { remove: () => this.#remove(sub) };
  }

  #remove(sub: Subscription): void {
    if (!this.#subs.delete(sub)) return;
    this.#clock.clearTimeout(sub.retryTimer);
    if (sub.id !== undefined) {
      this.#byId.delete(sub.id);
      if (this.#phase === 'open' && (sub.phase === 'subscribing' || sub.phase === 'live')) {
        this.#unsubscribeQueue.push(sub.id);
        this.#queueFlush();
      }
    }
    if (this.#subs.size === 0) this.#linger();
  }

  /** With no subscription left, the connection closes after a moment (unless one comes back). */
  #linger(): void {
    this.#cancelLinger();
    this.#lingerTimer = this.#clock.setTimeout(() => {
      this.#lingerTimer = undefined;
      if (this.#subs.size === 0) this.#shutdown();
    }, this.#options.lingerMs ?? 1000);
  }

  #cancelLinger(): void {
    if (this.#lingerTimer === undefined) return;
    this.#clock.clearTimeout(this.#lingerTimer);
    this.#lingerTimer = undefined;
  }

  #shutdown(): void {
    this.#endConnection();
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#network.stop();
    if (this.#phase !== 'unsupported') this.#phase = 'idle';
  }

  // ---- the connection ----

  #connect(): void {
    this.#network.start();
    void this.#open();
  }

  async #open(): Promise<void> {
    const generation = ++this.#generation;
    const current = () => generation === this.#generation;
    if (isOffline()) {
      this.#setOffline();
      return;
    }
    this.#phase = 'connecting';
    this.#connectionId = newConnectionId();
    this.#counters = new Map();
    this.#byId.clear();
    for (const sub of this.#subs) if (sub.phase !== 'failed') this.#resetSub(sub);
    if (this.#transport === 'websocket') return this.#openSocket(generation);
    const abort = new AbortController();
    this.#abort = abort;
    let response: Response;
    try {
      this.#watchdog.start();
      const fetch = this.#options.fetch ?? globalThis.fetch;
      response = await fetch(this.baseUrl + MUX_ROUTES.stream, {
        method: 'GET',
        headers: { Accept: 'text/event-stream', [MUX_CONNECTION_HEADER]: this.#connectionId },
        signal: abort.signal,
      });
    } catch (cause) {
      if (current()) this.#fail({ reason: 'network', cause: String(cause), failure: 'network' });
      return;
    }
    if (!current()) {
      void response.body?.cancel().catch(() => undefined);
      return;
    }
    if (response.status !== 200) {
      const failure = await readHttpFailure(response, this.#clock.now());
      if (!current()) return;
      if (response.status === 404 || response.status === 405) return this.#unsupported();
      const detail: MuxDetail = { reason: 'http_status', status: failure.status, ...(failure.error && { error: failure.error }) };
      if (failure.retry || isTakenConnectionId(failure.status, failure.error)) this.#fail(detail, failure.retryAfterMs);
      else this.#failAll(detail);
      return;
    }
    if (!isEventStream(response) || !response.body) {
      void response.body?.cancel().catch(() => undefined);
      this.#failAll({ reason: 'content_type' });
      return;
    }
    await this.#read(response.body, generation);
  }

  /**
   * The WebSocket transport: the same SSE text in its messages, the same events, the control requests as messages.
   * Under `auto`, a socket that never opens (blocked, refused by a proxy) falls back to SSE at once, and the
   * transport that worked is remembered for this server.
   */
  #openSocket(generation: number): void {
    const current = () => generation === this.#generation;
    const Socket = this.#options.WebSocket ?? globalThis.WebSocket;
    let opened = false;
    let socket: WebSocket;
    try {
      if (typeof Socket !== 'function') throw new Error('no WebSocket here');
      socket = new Socket(this.baseUrl.replace(/^http/, 'ws') + MUX_WS_ROUTE);
    } catch (cause) {
      return this.#socketFailed(false, { reason: 'network', cause: String(cause), failure: 'network' });
    }
    this.#socket = socket;
    this.#watchdog.start();
    const parser = this.#parser(current);
    socket.onopen = () => {
      opened = true;
    };
    socket.onmessage = (event: MessageEvent) => {
      if (!current()) return;
      this.#watchdog.feed();
      parser.feed(typeof event.data === 'string' ? event.data : '');
    };
    socket.onerror = () => {};
    socket.onclose = (event: CloseEvent) => {
      if (!current()) return;
      const detail = closeDetail(event);
      // Closed before it opened, without the server's refusal: the upgrade got no answer.
      if (!opened && detail.status === undefined) detail.failure = 'network';
      this.#socketFailed(opened, detail);
    };
  }

  #socketFailed(opened: boolean, detail: MuxDetail): void {
    if (!opened && this.#options.transport === 'auto' && this.#transport === 'websocket') {
      // Blocked or refused before it opened: SSE, at once, and from now on for this server.
      this.#transport = 'sse';
      remembered.set(this.baseUrl, 'sse');
      this.#endConnection();
      void this.#open();
      return;
    }
    if (detail.status !== undefined && !isRetriedFailure(detail.status, detail.error)) return this.#failAll(detail);
    this.#fail(detail);
  }

  #parser(current: () => boolean) {
    return createParser({
      onEvent: (event) => {
        if (current()) this.#dispatch(event);
      },
      onRetry: (ms) => {
        this.#serverRetryMs = ms;
      },
    });
  }

  async #read(body: ReadableStream<Uint8Array>, generation: number): Promise<void> {
    const current = () => generation === this.#generation;
    const parser = this.#parser(current);
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
      if (current()) this.#fail({ reason: 'network', cause: String(cause) });
      return;
    } finally {
      if (!current()) void reader.cancel().catch(() => undefined);
    }
    this.#fail({ reason: 'stream_ended' });
  }

  #dispatch(event: EventSourceMessage): void {
    const type = event.event ?? 'message';
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      return; // every event of the multiplexed stream is JSON
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return;
    const fields = data as Record<string, unknown>;
    const id = fields[MUX_SUBSCRIPTION_FIELD];
    if (id === undefined) {
      if (type === 'connection') this.#opened();
      if (type === 'result') this.#answered(fields as unknown as MuxResultMessage);
      return;
    }
    const sub = typeof id === 'string' ? this.#byId.get(id) : undefined;
    // An event of a subscription removed a moment ago (it was on the wire): nobody wants it.
    if (!sub || sub.phase === 'ended' || sub.phase === 'failed') return;
    delete fields[MUX_SUBSCRIPTION_FIELD];
    let payload: unknown = fields;
    if (type === 'message' && typeof fields.raw === 'string' && Object.keys(fields).length === 1) payload = fields.raw;
    if (type === 'unsubscribed') return;
    if (event.id !== undefined && event.id !== '') sub.spec.cursor = event.id;
    if (type === 'connected') {
      sub.phase = 'live';
      sub.retryAttempt = 0;
      sub.sink.status({ state: 'open' });
    }
    // The server ended it; the subscriber comes back with a fresh token (see SSEClient).
    if (type === 'token_expired') sub.phase = 'ended';
    sub.sink.event(type, event.id, payload);
  }

  /** The `connection` event: the connection is ours; subscribe everything that waits. */
  #opened(): void {
    if (this.#options.transport === 'auto') remembered.set(this.baseUrl, this.#transport);
    this.#phase = 'open';
    this.#openedAt = this.#clock.now();
    this.#queueFlush();
  }

  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      if (this.#phase !== 'open') return;
      void this.#flush();
    });
  }

  /** Sends the subscribes and unsubscribes that wait, each kind in one request. */
  async #flush(): Promise<void> {
    const generation = this.#generation;
    const leaving = this.#unsubscribeQueue;
    this.#unsubscribeQueue = [];
    if (leaving.length > 0) void this.#control('unsubscribe', { subscriptions: leaving }).catch(() => undefined);

    const joining = [...this.#subs].filter((sub) => sub.phase === 'waiting' && sub.retryTimer === undefined);
    if (joining.length === 0) return;
    for (const sub of joining) {
      sub.phase = 'subscribing';
      sub.id = this.#nextId(sub.spec);
      this.#byId.set(sub.id, sub);
    }
    const settled = await Promise.allSettled(joining.map((sub) => this.#request(sub)));
    if (generation !== this.#generation) return;
    const live: Subscription[] = [];
    const requests: MuxSubscribeRequest[] = [];
    settled.forEach((outcome, i) => {
      const sub = joining[i]!;
      if (!this.#subs.has(sub) || sub.phase !== 'subscribing') return;
      // A token source that threw: that subscriber's trouble, retried with backoff; the others go on.
      if (outcome.status === 'rejected') return this.#retrySub(sub, { reason: 'network', cause: String(outcome.reason), failure: 'token' });
      live.push(sub);
      requests.push(outcome.value);
    });
    if (live.length === 0) return;
    const body = { subscriptions: requests };
    let answer: ControlAnswer;
    try {
      answer = await this.#control('subscribe', body);
    } catch (cause) {
      if (generation === this.#generation) this.#fail({ reason: 'network', cause: String(cause), failure: 'network' });
      return;
    }
    if (generation !== this.#generation) return;
    if (answer.status !== 200) {
      const error = (answer.body as { error?: ServerError } | undefined)?.error;
      const detail: MuxDetail = { reason: 'http_status', status: answer.status, ...(error && { error }) };
      // The connection is unknown where the request landed (it ended, or a proxy sent the request elsewhere): start over.
      if (answer.status === 404) return this.#fail(detail);
      for (const sub of live) {
        if (isRetriedFailure(answer.status, error)) this.#retrySub(sub, detail, answer.retryAfterMs);
        else this.#failSub(sub, detail);
      }
      return;
    }
    for (const result of (answer.body as MuxSubscribeBatchAnswer).results ?? []) this.#settle(result, answer.retryAfterMs);
  }

  #settle(result: MuxSubscribeResult, retryAfterMs: number | undefined): void {
    const sub = this.#byId.get(result.subscription);
    if (!sub || !this.#subs.has(sub) || sub.phase !== 'subscribing') return;
    if (result.ok) return; // its `connected` event follows on the stream
    const detail: MuxDetail = { reason: 'http_status', status: result.status, error: result.error };
    if (result.status === 404) return this.#fail(detail);
    if (isRetriedFailure(result.status, result.error)) this.#retrySub(sub, detail, retryAfterMs);
    else this.#failSub(sub, detail);
  }

  async #request(sub: Subscription): Promise<MuxSubscribeRequest> {
    const { spec } = sub;
    const request: MuxSubscribeRequest = { subscription: sub.id!, project_id: spec.projectId, stage: spec.stage, compact: true, snapshot: spec.snapshot };
    if (spec.cursor) request.last_event_id = spec.cursor;
    if (spec.types) request.types = spec.types;
    if (spec.stages) request.stages = spec.stages;
    if (!spec.public) {
      const token = await sub.sink.token();
      if (token) request.token = token;
    }
    return request;
  }

  /**
   * A control request: a POST over SSE, a message over the WebSocket (answered by its `result` event). Rejects when
   * it could not be sent or answered (the connection is then in trouble anyway).
   */
  async #control(op: 'subscribe' | 'unsubscribe', body: Record<string, unknown>): Promise<ControlAnswer> {
    const socket = this.#socket;
    if (this.#transport === 'websocket') {
      if (!socket || socket.readyState !== socket.OPEN) throw new Error('the WebSocket is not open');
      const request = ++this.#requests;
      return new Promise<ControlAnswer>((resolve, reject) => {
        const timer = this.#clock.setTimeout(() => {
          this.#pending.delete(request);
          reject(new Error('no answer to a control message'));
        }, CONTROL_TIMEOUT_MS);
        this.#pending.set(request, (answer) => {
          this.#clock.clearTimeout(timer);
          resolve(answer);
        });
        socket.send(JSON.stringify({ op, request, ...body }));
      });
    }
    const fetch = this.#options.fetch ?? globalThis.fetch;
    const response = await fetch(this.baseUrl + (op === 'subscribe' ? MUX_ROUTES.subscribe : MUX_ROUTES.unsubscribe), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', [MUX_CONNECTION_HEADER]: this.#connectionId },
      body: JSON.stringify(body),
    });
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), this.#clock.now());
    if (response.status === 200) return { status: 200, body: await response.json(), retryAfterMs };
    const failure = await readHttpFailure(response, this.#clock.now());
    return { status: failure.status, body: failure.error ? { error: failure.error } : undefined, retryAfterMs };
  }

  #answered(result: MuxResultMessage): void {
    if (typeof result.request !== 'number') return;
    const resolve = this.#pending.get(result.request);
    this.#pending.delete(result.request);
    resolve?.({ status: result.status, body: result.body, retryAfterMs: undefined });
  }

  /** `p:<project>:<n>` or `s:<project>.<stage>:<n>`: the same for the first subscriber of a project in every browser, so the server shares its bytes. */
  #nextId(spec: MuxSpec): string {
    const prefix = spec.stage === null ? `p:${spec.projectId}` : `s:${spec.projectId}.${spec.stage}`;
    const n = (this.#counters.get(prefix) ?? 0) + 1;
    this.#counters.set(prefix, n);
    return `${prefix}:${n}`;
  }

  /** One subscription refused for now (429, 5xx): it alone retries, the others flow on. */
  #retrySub(sub: Subscription, detail: MuxDetail, retryAfterMs?: number): void {
    if (sub.id !== undefined) this.#byId.delete(sub.id);
    sub.id = undefined;
    sub.phase = 'waiting';
    const attempt = ++sub.retryAttempt;
    const delayMs = Math.max(0, retryAfterMs ?? this.#backoff({ attempt, baseMs: this.#serverRetryMs ?? 1000 }));
    sub.retryTimer = this.#clock.setTimeout(() => {
      sub.retryTimer = undefined;
      if (this.#subs.has(sub) && this.#phase === 'open') this.#queueFlush();
    }, delayMs);
    sub.sink.status({ state: 'reconnecting', attempt, delayMs, detail });
  }

  #failSub(sub: Subscription, detail: MuxDetail): void {
    if (sub.id !== undefined) this.#byId.delete(sub.id);
    sub.phase = 'failed';
    sub.sink.status({ state: 'failed', detail });
  }

  #resetSub(sub: Subscription): void {
    this.#clock.clearTimeout(sub.retryTimer);
    sub.retryTimer = undefined;
    sub.id = undefined;
    sub.phase = 'waiting';
  }

  /** The connection is lost: every subscription waits for the next one, which resumes each from its cursor. */
  #fail(detail: MuxDetail, retryAfterMs?: number): void {
    const stable = this.#openedAt !== undefined && this.#clock.now() - this.#openedAt >= (this.#options.stableAfterMs ?? 10_000);
    this.#endConnection();
    if (this.#subs.size === 0) return this.#shutdown();
    if (stable) this.#attempt = 0;
    const attempt = ++this.#attempt;
    if (isOffline()) return this.#setOffline();
    const delayMs = Math.max(0, retryAfterMs ?? this.#backoff({ attempt, baseMs: this.#serverRetryMs ?? 1000 }));
    this.#phase = 'waiting';
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      void this.#open();
    }, delayMs);
    for (const sub of [...this.#subs]) {
      if (sub.phase === 'failed') continue;
      this.#resetSub(sub);
      sub.sink.status({ state: 'reconnecting', attempt, delayMs, detail });
    }
  }

  /** The server refused the connection itself for good (e.g. 403, 421): nothing to retry. */
  #failAll(detail: MuxDetail): void {
    this.#endConnection();
    this.#phase = 'idle';
    for (const sub of [...this.#subs]) if (sub.phase !== 'failed') this.#failSub(sub, detail);
  }

  #unsupported(): void {
    this.#endConnection();
    this.#phase = 'unsupported';
    for (const sub of [...this.#subs]) sub.sink.status({ state: 'unsupported' });
  }

  #setOffline(): void {
    this.#phase = 'offline';
    for (const sub of this.#subs) {
      if (sub.phase === 'failed') continue;
      this.#resetSub(sub);
      sub.sink.status({ state: 'offline', detail: { reason: 'offline' } });
    }
  }

  #endConnection(): void {
    this.#generation++;
    this.#abort?.abort();
    this.#abort = undefined;
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket && socket.readyState <= 1) socket.close(1000);
    this.#pending.clear();
    this.#openedAt = undefined;
    this.#watchdog.stop();
    this.#unsubscribeQueue = [];
  }

  #onOnline(): void {
    if (this.#phase !== 'offline' && this.#phase !== 'waiting') return;
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    for (const sub of this.#subs) if (sub.phase !== 'failed') sub.sink.status({ state: 'connecting' });
    void this.#open();
  }

  #onOffline(): void {
    if (this.#phase === 'idle' || this.#phase === 'unsupported') return;
    this.#endConnection();
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#setOffline();
  }
}

/** A control request's answer, on either transport. */
interface ControlAnswer {
  status: number;
  body: unknown;
  retryAfterMs: number | undefined;
}

/** How long a control message on the WebSocket may wait for its `result`. */
const CONTROL_TIMEOUT_MS = 15_000;

/** Under `auto`: the transport that worked, per server, for this page or worker. */
const remembered = new Map<string, 'sse' | 'websocket'>();

/**
 * A WebSocket's close as the reason a subscription stopped: `4000 + status` is the HTTP transport's refusal (its
 * error code and message in the reason); every other code is a connection that ended, which a resume repairs.
 */
function closeDetail(event: CloseEvent): MuxDetail {
  const status = event.code - MUX_CLOSE.statusBase;
  if (event.code >= MUX_CLOSE.statusBase + 400 && event.code < MUX_CLOSE.statusBase + 600) {
    const at = event.reason.indexOf(': ');
    const error = at > 0 ? { code: event.reason.slice(0, at), message: event.reason.slice(at + 2) } : undefined;
    return { reason: 'http_status', status, ...(error && { error }) };
  }
  return { reason: event.code === 1000 || event.code === MUX_CLOSE.serverShutdown ? 'stream_ended' : 'network', cause: `WebSocket closed: ${event.code} ${event.reason}` };
}

/**
 * A 409 `connection_exists` to the stream's GET: the server holds a connection of this id already. The id is this
 * core's own random pick, new at each attempt, so the same GET reached the server twice (a browser sends a request
 * again when the reused keep-alive socket it went on closes before the answer: seen under load when a leader tab
 * hands over). Not the page's fault and not final: the next attempt picks a new id.
 */
function isTakenConnectionId(status: number, error: ServerError | undefined): boolean {
  return status === 409 && error?.code === 'connection_exists';
}
