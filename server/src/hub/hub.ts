/**
 * The SSE hub: one broker subscription per channel (or project pattern) for the whole process,
 * shared by every browser watching it. Each message is framed once; the same bytes go to every client.
 */
import type { ServerResponse } from 'node:http';
import type { Broker, Unsubscribe } from '../broker/broker.js';
import { projectPattern, stageChannel } from '../channels.js';
import { DEFAULTS } from '../defaults.js';
import { ResponseWire, type ConnectionWire } from './connection-wire.js';
import { ClientStream, type CloseReason, type StreamFilter } from './client-stream.js';
import { CoalescedReads, type Listening } from './coalesced-reads.js';
import { HubEvents, type HubEventSource, type StreamOpening } from './hub-events.js';
import { LiveTexts, tokenForm } from './live-texts.js';
import { MuxConnection } from './mux-connection.js';
import { ReplayTexts } from './replay-texts.js';
import { BatchFrames, formatRetry, parsePayload, type ParsedPayload } from './sse-frame.js';
import { ResponseSink, type StreamSink } from './stream-sink.js';
import { TokenTexts } from '../../../protocol/compact.js';
import type { SnapshotMessage, StageState } from '../../../protocol/messages.js';

export type { StreamOpening } from './hub-events.js';

export interface HubOptions {
  broker: Broker;
  /** Interval of the `: ping` comment lines, in ms. Default 15000. */
  heartbeatMs?: number;
  /** The `retry:` the stream opens with, in ms. Default 3000. */
  retryMs?: number;
  /** Unsent bytes a client may hold before it is dropped as too slow. Default 1 MiB. */
  maxBufferBytes?: number;
  /**
   * Unsent bytes past which a client's live messages are held and sent in priority when its socket drains (tokens
   * merged per stage, the latest progress, every other message kept and first). Default a quarter of maxBufferBytes.
   */
  softBufferBytes?: number;
  /** Live messages held per client while its resume replays (those the replay has not reached yet). Default 10,000. */
  maxPending?: number;
  /**
   * Log entries one resume may read. A resume that needs more sends a `reset` (reason `too_long`) with the
   * current state instead of the rest, whose id the next resume continues from. Default 10,000.
   */
  maxReplayEntries?: number;
  /**
   * Bytes of log entries (their message JSON, `full_text` included whether the client is compact or not) one
   * resume may read; past it, as `maxReplayEntries`. Default 16 MiB: a 1,000-token answer of 30 KB fits.
   */
  maxReplayBytes?: number;
  /**
   * How long a log or state read waits, before it is sent, for other resumes of the same project and cursor to
   * share it, in ms (see coalesced-reads.ts). Default 0: sent at once; reads in flight and results kept are still
   * shared wherever that is exact.
   */
  readWindowMs?: number;
  /** How long a read's result may still serve the resumes that come after it, where that is exact, in ms. Default 5000. */
  readKeepMs?: number;
}

export interface OpenRequest {
  projectId: string;
  /** null: every stage of the project. */
  stage: string | null;
  /** The `Last-Event-ID` to resume after. */
  lastEventId?: string | undefined;
  /** Who is asking (the remote address), for per-client limits. */
  clientKey?: string;
  /** An id for logs, carried by the stream as `requestId`. */
  requestId?: string;
  /** Token events without `full_text` (the client rebuilds it). */
  compact?: boolean;
  /**
   * Without `lastEventId`: start with a `snapshot` event, the current state of what the stream watches, when the
   * project has history. Default true (`?snapshot=0` turns it off).
   */
  snapshot?: boolean;
  /**
   * When the stream's token expires (ms since the epoch): the stream then sends `token_expired` and ends, and the
   * client resumes with a fresh token. Unset: no end (public streams).
   */
  expiresAt?: number | undefined;
  /** Only the messages of these types and stages (`?types=`, `?stages=`; see StreamFilter). Unset: everything. */
  filter?: StreamFilter | undefined;
}

/** What a multiplexed connection is opened with (see Hub.openConnection). */
export interface OpenConnectionRequest {
  /** Its id: the client's (checked by the caller, and not held by another live connection), or a new one. */
  connection: string;
  /** Who is asking (the remote address), for per-client limits and for who may add subscriptions. */
  clientKey?: string;
  /** An id for logs. */
  requestId?: string;
  /** Subscriptions it may hold at once. */
  maxSubscriptions: number;
}

/** One subscription to add to a connection: what a single stream opens with, and the subscription's id. */
export interface SubscribeRequest extends Omit<OpenRequest, 'clientKey'> {
  subscription: string;
}

/** What the hub writes heartbeats to: each HTTP response once, a stream of its own or a multiplexed connection. */
type HttpStream = ClientStream | MuxConnection;

interface Topic {
  clients: Set<ClientStream>;
  /** Resolves once the broker acknowledged the subscription and the stages' texts were read. */
  ready: Promise<Unsubscribe>;
  /** Messages that arrived in this tick, written together when it ends; until `texts` is primed, all of them. */
  batch: ParsedPayload[];
  /** Each watched stage's text so far, which gives linear tokens their `full_text` back. */
  texts: LiveTexts;
  /** CoalescedReads.now() once subscribed, and the newest log id written to its clients (see Listening). */
  since: number;
  newest: string | undefined;
}

export class Hub {
  readonly #broker: Broker;
  readonly #heartbeatMs: number;
  readonly #retryMs: number;
  readonly #maxBufferBytes: number;
  readonly #softBufferBytes: number | undefined;
  readonly #maxPending: number;
  readonly #maxReplayEntries: number;
  readonly #maxReplayBytes: number;
  readonly #events = new HubEvents();
  readonly #topics = new Map<string, Topic>();
  /** Every stream: those of their own and the subscriptions of multiplexed connections. */
  readonly #streams = new Set<ClientStream>();
  /** The HTTP streams: the streams of their own and the multiplexed connections (what `size` and the limits count). */
  readonly #responses = new Set<HttpStream>();
  readonly #connections = new Map<string, MuxConnection>();
  readonly #perClient = new Map<string, number>();
  /**
   * Streams that will send a snapshot: their topic's texts as of the moment they joined it, before any message
   * they hold was tracked (null until the topic is primed). See #snapshot.
   */
  readonly #textsAtJoin = new WeakMap<ClientStream, Map<string, string> | null>();
  /** Resumes and snapshots of many streams share their broker reads (coalesced-reads.ts). */
  readonly #reads: CoalescedReads;
  /** Since when each stream gets every message logged (set when it joined its topic): which shared reads fit it. */
  readonly #listening = new WeakMap<ClientStream, Listening>();
  /** Unsubscribes under way, so close() can wait for them before the broker goes. */
  readonly #unsubscribing = new Set<Promise<void>>();
  #heartbeat: NodeJS.Timeout | undefined;
  readonly #stopListening: () => void;

  constructor(options: HubOptions) {
    this.#broker = options.broker;
    this.#heartbeatMs = options.heartbeatMs ?? DEFAULTS.heartbeatMs;
    this.#retryMs = options.retryMs ?? DEFAULTS.retryMs;
    this.#maxBufferBytes = options.maxBufferBytes ?? DEFAULTS.maxBufferBytes;
    this.#softBufferBytes = options.softBufferBytes;
    this.#maxPending = options.maxPending ?? DEFAULTS.maxPending;
    this.#maxReplayEntries = options.maxReplayEntries ?? DEFAULTS.maxReplayEntries;
    this.#maxReplayBytes = options.maxReplayBytes ?? DEFAULTS.maxReplayBytes;
    this.#reads = new CoalescedReads({
      broker: this.#broker,
      windowMs: options.readWindowMs,
      keepMs: options.readKeepMs,
      onRead: (kind, shared) => this.#events.emit('log-read', kind, shared),
    });
    // Messages published while the broker's subscriber was down were logged but not delivered live:
    // end every stream, and each client resumes from the log with its Last-Event-ID.
    this.#stopListening = this.#broker.onInterruption(() => {
      for (const stream of [...this.#streams]) stream.close('broker_error');
    });
  }

  /**
   * What the hub announces: `stream-opened`, `stream-live`, `stream-closed` and `message` (see HubEventMap).
   * Metrics and logs listen here.
   */
  get events(): HubEventSource {
    return this.#events;
  }

  /** Open HTTP streams in this process: a multiplexed connection is one, whatever its subscriptions. */
  get size(): number {
    return this.#responses.size;
  }

  /** Open HTTP streams of one client (remote address), counted as `size` is. */
  streamsOf(clientKey: string): number {
    return this.#perClient.get(clientKey) ?? 0;
  }

  /** Subscriptions held by the multiplexed connections (those still joining their topic included). */
  get subscriptionCount(): number {
    let count = 0;
    for (const connection of this.#connections.values()) count += connection.size;
    return count;
  }

  /** True when the hub holds nothing: no stream, no connection, no subscription, no timer. */
  get idle(): boolean {
    return this.#streams.size === 0 && this.#responses.size === 0 && this.#topics.size === 0 && this.#heartbeat === undefined;
  }

  /**
   * Topics this hub listens to on the broker: one per stage channel and one per project watched project-wide,
   * each shared by all of its streams. Not the count of Redis subscriptions: the Redis broker folds every
   * project pattern into one PSUBSCRIBE (see RedisBroker.subscribe).
   */
  get topicCount(): number {
    return this.#topics.size;
  }

  /**
   * Streams the project (or one stage) to `res`: subscribes, sends `connected`, replays after
   * `lastEventId` (or sends `reset` when the log no longer covers it), or without one sends a `snapshot` of the
   * current state (unless `snapshot: false`, or the project has no history), then goes live.
   * Rejects, before any byte is written, when the broker cannot subscribe. Announces `stream-opened` when done.
   */
  async open(res: ServerResponse, request: OpenRequest): Promise<ClientStream> {
    const stream = this.#createStream(new ResponseSink(res, request.requestId), request);
    this.#addResponse(stream);
    await this.#start(stream, request);
    this.#events.emit('stream-opened', stream, request.lastEventId !== undefined);
    return stream;
  }

  /**
   * Opens a multiplexed connection on `res`: its head, `retry:` and `connection` event, and no subscription yet
   * (see subscribe()). It counts as one stream in `size` and `streamsOf`, and gets one heartbeat per interval.
   * Announces `connection-opened`.
   */
  openConnection(target: ServerResponse | ConnectionWire, request: OpenConnectionRequest): MuxConnection {
    const wire = 'writeHead' in target ? new ResponseWire(target, request.requestId) : target;
    const connection = new MuxConnection(wire, {
      id: request.connection,
      clientKey: request.clientKey ?? '',
      requestId: request.requestId ?? '',
      maxSubscriptions: request.maxSubscriptions,
      maxBufferBytes: this.#maxBufferBytes,
      onClose: (closed, reason) => this.#releaseConnection(closed, reason),
    });
    this.#connections.set(connection.id, connection);
    this.#addResponse(connection);
    connection.start(formatRetry(this.#retryMs));
    this.#events.emit('connection-opened', connection);
    return connection;
  }

  /** The live multiplexed connection with this id, if any. */
  connection(id: string): MuxConnection | undefined {
    return this.#connections.get(id);
  }

  /**
   * Adds a subscription to a live connection (the caller checked that its id is free and that the connection has
   * room): it is held at once, synchronously, then opens exactly as a stream of its own does (open()), its events
   * tagged with its id. Resolves once it joined its topic, so that whatever is published from then on reaches it
   * (or once it ended before that); `connected`, then the snapshot or the replay, then live messages follow on the
   * connection. Rejects when the broker cannot subscribe: the subscription is then gone, nothing of it written.
   * Announces `stream-opened` once its opening (the replay) is written, as open() does.
   */
  subscribe(connection: MuxConnection, request: SubscribeRequest): Promise<ClientStream> {
    const sink = connection.add(request.subscription, request.projectId, request.stage);
    const stream = this.#createStream(sink, { ...request, clientKey: connection.clientKey }, request.subscription);
    sink.stream = stream;
    const joined = new Promise<ClientStream>((resolve, reject) => {
      this.#start(stream, request, () => resolve(stream)).then(
        () => {
          resolve(stream);
          this.#events.emit('stream-opened', stream, request.lastEventId !== undefined);
        },
        reject,
      );
    });
    sink.joined = joined.then(() => {});
    // Whoever waits for it (a renew) sees the failure; nobody else needs to.
    sink.joined.catch(() => {});
    return joined;
  }

  /** A ClientStream on `sink`, known to the hub (cutProject, close) until it closes. */
  #createStream(sink: StreamSink, request: OpenRequest, subscription?: string): ClientStream {
    const { projectId, stage } = request;
    const topicKey = this.#topicKey(projectId, stage);
    const stream = new ClientStream(sink, {
      projectId,
      stage,
      clientKey: request.clientKey ?? '',
      requestId: request.requestId,
      maxBufferBytes: this.#maxBufferBytes,
      maxPending: this.#maxPending,
      ids: this.#broker,
      compact: request.compact ?? false,
      expiresAt: request.expiresAt,
      subscription,
      filter: request.filter,
      softBufferBytes: this.#softBufferBytes,
      onClose: (closed, reason) => this.#release(closed, topicKey, reason),
    });
    this.#streams.add(stream);
    return stream;
  }

  #topicKey(projectId: string, stage: string | null): string {
    return stage === null ? projectPattern(this.#broker.prefix, projectId) : stageChannel(this.#broker.prefix, projectId, stage);
  }

  /** An HTTP stream more: counted for the limits, and heartbeats run. */
  #addResponse(response: HttpStream): void {
    this.#responses.add(response);
    this.#perClient.set(response.clientKey, (this.#perClient.get(response.clientKey) ?? 0) + 1);
    this.#startHeartbeat();
  }

  #removeResponse(response: HttpStream): void {
    if (!this.#responses.delete(response)) return;
    const left = (this.#perClient.get(response.clientKey) ?? 1) - 1;
    if (left > 0) this.#perClient.set(response.clientKey, left);
    else this.#perClient.delete(response.clientKey);
    if (this.#responses.size === 0) this.#stopHeartbeat();
  }

  /**
   * The one opening of every stream, of its own or a subscription: joins the topic, writes `connected` (then
   * calls `joined`), then the snapshot or the replay, then goes live. Rejects, before any byte is written, when
   * the broker cannot subscribe.
   */
  async #start(stream: ClientStream, request: OpenRequest, joined?: () => void): Promise<void> {
    const { projectId, stage, lastEventId } = request;
    const wantsSnapshot = lastEventId === undefined && request.snapshot !== false;
    try {
      await this.#join(this.#topicKey(projectId, stage), projectId, stage, stream, wantsSnapshot);
    } catch (error) {
      stream.abandon('broker_error');
      throw error;
    }
    if (stream.state === 'closed') return;

    stream.begin(formatRetry(this.#retryMs));
    const connected = { type: 'connected', project_id: projectId, stage, resumed: lastEventId !== undefined, timestamp: Date.now() / 1000 };
    stream.writeEvent({ event: 'connected', data: JSON.stringify(connected) });
    joined?.();

    if (lastEventId === undefined) {
      let upTo: string | null = null;
      if (wantsSnapshot) {
        try {
          upTo = await this.#snapshot(stream, projectId, stage);
        } catch {
          // The broker failed mid-read: end the stream, never a half state; the client reconnects.
          stream.close('broker_error');
          return;
        }
      }
      stream.goLive(upTo);
      this.#wentLive(stream, { resumed: false, replayed: 0, reset: undefined });
      return;
    }
    try {
      const { coveredUpTo, replayed, reset } = await this.#catchUp(stream, projectId, stage, lastEventId);
      stream.goLive(coveredUpTo);
      this.#wentLive(stream, { resumed: true, replayed, reset });
    } catch {
      // The broker failed mid-resume: end the stream; the client reconnects with the same Last-Event-ID.
      stream.close('broker_error');
    }
  }

  /**
   * Ends every open stream of a project (the demo's "cut the connection"): the streams of their own, and every
   * multiplexed connection holding a subscription of it (whole: see MuxConnection). Returns how many HTTP streams.
   */
  cutProject(projectId: string): number {
    let count = 0;
    for (const stream of [...this.#streams]) {
      // Closed already: a subscription of a connection that an earlier one of the project ended.
      if (stream.projectId !== projectId || stream.state === 'closed') continue;
      stream.close('cut');
      count++;
    }
    return count;
  }

  /** Ends every stream and connection so clients reconnect elsewhere, and drops every subscription. */
  async close(): Promise<void> {
    this.#stopListening();
    // Closing the last stream of each topic unsubscribes it (see #release); wait for those to finish.
    for (const stream of [...this.#streams]) stream.close('server_shutdown');
    for (const connection of [...this.#connections.values()]) connection.close('server_shutdown');
    await Promise.allSettled([...this.#unsubscribing]);
    this.#reads.clear();
  }

  #wentLive(stream: ClientStream, opening: Omit<StreamOpening, 'events'>): void {
    if (stream.state === 'live') this.#events.emit('stream-live', stream, { events: stream.events, ...opening });
  }

  /**
   * Writes what the client missed and returns the id up to which the log was read (live messages
   * at or before it are duplicates), or null when nothing was read; and, for metrics, what it wrote.
   */
  async #catchUp(
    stream: ClientStream,
    projectId: string,
    stage: string | null,
    lastEventId: string,
  ): Promise<{ coveredUpTo: string | null; replayed: number; reset: StreamOpening['reset'] }> {
    const { upTo, replayed, short } = await this.#replay(stream, projectId, stage, lastEventId);
    if (short === undefined || stream.state !== 'opening') return { coveredUpTo: upTo, replayed, reset: undefined };
    // The id is gone from the log (or never was), or what follows it is too long to replay: say so in-band with
    // the latest state of each stage.
    // The texts first: a token that the snapshot holds and the texts do not yet was published after them, so it
    // continues them (or starts over), and its text is exact (see wholeToken).
    const texts = new TokenTexts((a, b) => this.#broker.compareIds(a, b));
    for (const [name, kept] of await this.#broker.texts(projectId, stage)) texts.set(name, kept.text, kept.id);
    const snapshot = await this.#broker.snapshot(projectId);
    // Prototype-less, so a stage named "__proto__" stays data instead of replacing the object's prototype.
    const stages: Record<string, Record<string, unknown>> = Object.create(null);
    for (const [stageName, byType] of Object.entries(snapshot.stages)) {
      if ((stage !== null && stageName !== stage) || !stream.wantsStage(stageName)) continue;
      const latest: Record<string, unknown> = Object.create(null);
      for (const [type, json] of Object.entries(byType)) {
        if (!stream.wantsType(type)) continue;
        const message = type === 'token' ? this.#wholeToken(texts, stageName, json) : safeParse(json);
        if (message !== undefined) latest[type] = message;
      }
      stages[stageName] = latest;
    }
    const reason = short === 'too_long' ? 'too_long' : snapshot.lastId === null ? 'unknown_id' : 'expired';
    const reset = {
      type: 'reset',
      project_id: projectId,
      stage,
      reason,
      stages,
      timestamp: Date.now() / 1000,
    };
    stream.writeEvent({ id: snapshot.lastId ?? undefined, event: 'reset', data: JSON.stringify(reset) });
    return { coveredUpTo: snapshot.lastId, replayed, reset: reason };
  }

  /**
   * Writes the `snapshot` event of a fresh stream and returns its id L, the newest log id (null, and nothing
   * written, when the project has no log or the stream closed meanwhile). Exact as of L, with no gap or duplicate
   * against what follows:
   * - broker.snapshot() is in step with live delivery: every message logged up to L is held by the stream when it
   *   resolves (it joined the topic first), and goLive(L) drops those, as after a replay;
   * - the latest message of each kind per stage is the state hash's, read with L in one atomic step;
   * - a stage's text is its last held token up to L (whose text the topic's LiveTexts gave it in #fanOut), or
   *   else the topic's text when the stream joined, before any held message was tracked (#textsAtJoin).
   *   A text that cannot be known exactly is left out (see #fallbackTexts), never sent wrong.
   */
  async #snapshot(stream: ClientStream, projectId: string, stage: string | null): Promise<string | null> {
    const joined = this.#textsAtJoin.get(stream) ?? new Map<string, string>();
    this.#textsAtJoin.delete(stream);
    const snapshot = await this.#reads.snapshot(projectId, this.#listeningOf(stream));
    const upTo = snapshot.lastId;
    if (upTo === null || stream.state !== 'opening') return null;

    // Each stage's text as of L; null: not known.
    const texts = new Map<string, string | null>(joined);
    for (const message of stream.held) {
      if (!this.#broker.isId(message.id) || this.#broker.compareIds(message.id, upTo) > 0) continue;
      const form = tokenForm(message.fields);
      if (form) texts.set(message.stage ?? '', 'linear' in form ? (message.fullText ?? null) : form.fullText);
    }

    const stages: Record<string, StageState> = Object.create(null);
    const unknown = new Map<string, Record<string, unknown>>();
    for (const [stageName, byType] of Object.entries(snapshot.stages)) {
      if ((stage !== null && stageName !== stage) || !stream.wantsStage(stageName)) continue;
      const state: StageState = {};
      for (const type of STATE_TYPES) {
        if (!stream.wantsType(type)) continue;
        const message = byType[type] === undefined ? undefined : safeParse(byType[type]);
        if (isObject(message)) Object.assign(state, { [type]: message });
      }
      // The text is the tokens' state: only for a stream that takes tokens.
      if (!state.done && stream.wantsType('token')) {
        const text = texts.get(stageName);
        const token = byType.token === undefined ? undefined : safeParse(byType.token);
        const form = isObject(token) ? tokenForm(token) : undefined;
        if (typeof text === 'string') state.text = text;
        // The state's token is the stage's latest up to L: a whole one carries the text as of L.
        else if (form && 'fullText' in form) state.text = form.fullText;
        else if (form && isObject(token)) unknown.set(stageName, token);
      }
      stages[stageName] = state;
    }
    if (unknown.size > 0) {
      for (const [stageName, text] of await this.#fallbackTexts(projectId, stage, unknown)) stages[stageName]!.text = text;
      if (stream.state !== 'opening') return null;
    }
    for (const [stageName, state] of Object.entries(stages)) if (Object.keys(state).length === 0) delete stages[stageName];

    const message: SnapshotMessage = { type: 'snapshot', project_id: projectId, stage, stages, timestamp: Date.now() / 1000 };
    stream.writeEvent({ id: upTo, event: 'snapshot', data: JSON.stringify(message) });
    stream.markSynced(Object.entries(stages).flatMap(([name, state]) => (state.text === undefined ? [] : [name])));
    this.#events.emit('snapshot', stream, upTo);
    return upTo;
  }

  /**
   * The texts the topic does not know (it lost them, or never read them), from the broker, kept only where exact:
   * the kept text's last token is the state's latest token up to L (same id) and ends with its piece.
   */
  async #fallbackTexts(projectId: string, stage: string | null, latest: ReadonlyMap<string, Record<string, unknown>>): Promise<Map<string, string>> {
    const exact = new Map<string, string>();
    const kept = await this.#broker.texts(projectId, stage);
    for (const [stageName, token] of latest) {
      const read = kept.get(stageName);
      const form = tokenForm(token);
      if (!read || read.id === undefined || token.id !== read.id || !form || !('linear' in form)) continue;
      const { content, offset } = form.linear;
      if (read.text.length === offset + content.length && read.text.endsWith(content)) exact.set(stageName, read.text);
    }
    return exact;
  }

  /**
   * The latest token of a stage, as the state holds it, in the original format: a linear token gets its
   * `full_text` from the stage's text (and loses `offset`); one whose text is not known (the stage's text expired,
   * or was overwritten by a publisher that joined mid-run after the read) is left out rather than sent wrong.
   */
  #wholeToken(texts: TokenTexts, stage: string, json: string): unknown {
    const message = safeParse(json);
    const form = isObject(message) ? tokenForm(message) : undefined;
    if (!isObject(message) || !form || !('linear' in form)) return message;
    // Parsed once: `offset` out, `full_text` last, the fields withFullText gives (without a second JSON.parse).
    const { offset: _offset, ...fields } = message;
    const fullText = texts.apply(stage, { ...form.linear, id: this.#broker.isId(fields.id) ? fields.id : undefined });
    return fullText === null ? undefined : { ...fields, full_text: fullText };
  }

  /**
   * Writes the log after `lastEventId`, page by page: a page is written out to the socket before the next is
   * read, so a resume holds one page of the log at a time and reads it from the broker no faster than its
   * client takes it. Returns the newest id read, how many entries were written, and why it stopped before the
   * end of the log, if it did: `not_covered` (the id it read after was not in the log: on the first page the
   * client's, on a later one an entry trimmed since the page before) or `too_long` (the caps).
   *
   * Only the last page, not full, is in step with live delivery (see Broker.replay): live copies of what the
   * replay wrote are dropped up to each page (see ClientStream.replayedThrough), and at the end up to the last.
   *
   * Linear tokens get their text from a ReplayTexts. One whose text it cannot know (a token of an earlier run of
   * the stage, whose start is before the resume point and whose text a later run overwrote) stops the replay
   * there with `not_covered`: the client gets a `reset` with the latest state, as for a log that no longer holds
   * what it missed (ending the stream instead would only bring the same resume back).
   */
  async #replay(
    stream: ClientStream,
    projectId: string,
    stage: string | null,
    lastEventId: string,
  ): Promise<{ upTo: string; replayed: number; short: 'not_covered' | 'too_long' | undefined }> {
    let upTo = lastEventId;
    let read = 0;
    let bytes = 0;
    let replayed = 0;
    let limit = FIRST_PAGE_ENTRIES;
    const texts = new ReplayTexts({ broker: this.#reads.view(), projectId, stage, maxEntries: this.#maxReplayEntries });
    const listening = this.#listeningOf(stream);
    for (;;) {
      // One entry past the cap is enough to know the resume is too long.
      const page = await this.#reads.replay(projectId, upTo, Math.min(limit, this.#maxReplayEntries - read + 1), listening, read === 0 ? 'replay' : 'replay_page');
      if (stream.state !== 'opening') return { upTo, replayed, short: undefined };
      if (!page.covered) return { upTo, replayed, short: 'not_covered' };
      let largest = 0;
      for (const entry of page.entries) {
        const size = Buffer.byteLength(entry.data);
        largest = Math.max(largest, size);
        bytes += size;
        if (++read > this.#maxReplayEntries || bytes > this.#maxReplayBytes) return { upTo, replayed, short: 'too_long' };
        const before = upTo;
        upTo = entry.id;
        if (stage !== null && entry.stage !== stage) continue;
        const message = parsePayload(entry.data);
        if (message.linear) {
          const need = stream.needsFullText(message);
          message.fullText = await texts.track(message, before, need);
          if (stream.state !== 'opening') return { upTo, replayed, short: undefined };
          if (message.fullText === null && need && !stream.compact) return { upTo: before, replayed, short: 'not_covered' };
        } else {
          texts.note(message);
        }
        // Read and tracked like the others (the texts must see every entry), but not the stream's to get.
        if (!stream.wants(message)) continue;
        replayed++;
        stream.send(message);
        await stream.drained();
        if (stream.state !== 'opening') return { upTo, replayed, short: undefined };
      }
      stream.replayedThrough(upTo);
      if (!page.more) return { upTo, replayed, short: undefined };
      limit = nextPageEntries(page.entries.length, largest);
    }
  }

  /**
   * Adds the stream to its topic, creating the topic if need be: subscribes, then reads the stages' texts, so
   * that every linear token heard from then on gets its text (messages heard before the read is back wait for it,
   * see LiveTexts.prime). A failed read fails the join as a failed subscribe does.
   */
  async #join(key: string, projectId: string, stage: string | null, stream: ClientStream, keepTexts: boolean): Promise<void> {
    let topic = this.#topics.get(key);
    if (!topic) {
      // The listener runs only after subscribe() returned, so `created` is set by then.
      let created: Topic | undefined;
      const subscribed = this.#broker.subscribe(key, (payload) => this.#enqueue(created!, parsePayload(payload)), stage === null);
      const ready = subscribed.then(async (unsubscribe) => {
        try {
          const texts = await this.#broker.texts(projectId, stage);
          created!.texts.prime(texts, created!.batch);
          created!.since = this.#reads.now();
          // Streams that joined while this ran hold every message since the subscription: their texts start here.
          for (const client of created!.clients) if (this.#textsAtJoin.get(client) === null) this.#textsAtJoin.set(client, created!.texts.current());
        } catch (error) {
          await unsubscribe().catch(() => {});
          throw error;
        }
        if (created!.batch.length > 0) this.#fanOut(created!);
        return unsubscribe;
      });
      created = { clients: new Set(), ready, batch: [], texts: new LiveTexts(this.#broker), since: 0, newest: undefined };
      topic = created;
      this.#topics.set(key, topic);
      ready.catch(() => {
        if (this.#topics.get(key) === topic) this.#topics.delete(key);
      });
    }
    topic.clients.add(stream);
    const newest = topic.newest;
    const added = this.#reads.now();
    // Synchronously with joining: the texts as of every message fanned out before this stream holds any.
    if (keepTexts) this.#textsAtJoin.set(stream, topic.texts.primed ? topic.texts.current() : null);
    await topic.ready;
    this.#listening.set(stream, { since: Math.max(added, topic.since), topicSince: topic.since, newest });
  }

  /**
   * Messages that arrive together (one read from the broker's socket holds many under load) are written
   * together: at the end of the tick, each client gets one write with all of them, from one buffer shared
   * by every client. The flush runs before any other I/O callback, so no resume can go live in between.
   */
  #enqueue(topic: Topic, message: ParsedPayload): void {
    if (topic.batch.push(message) === 1 && topic.texts.primed) process.nextTick(() => this.#fanOut(topic));
  }

  #fanOut(topic: Topic): void {
    const messages = topic.batch;
    topic.batch = [];
    for (const message of messages) {
      const fullText = topic.texts.track(message);
      if (message.linear) message.fullText = fullText;
    }
    // Built once, and only if some client wants them: a linear token's frame in the original format costs its
    // whole text, which is what compact clients never pay. A subscription's are built once per id (see BatchFrames).
    const frames = new BatchFrames(messages);
    let written = 0;
    for (const client of topic.clients) {
      if (client.state === 'live') written++;
      client.deliverBatch(messages, frames);
    }
    // The newest log id its clients got: which shared reads still fit a stream that joins from now on.
    for (let i = messages.length - 1; i >= 0; i--) {
      const id = messages[i]!.id;
      if (this.#broker.isId(id)) {
        topic.newest = id;
        break;
      }
    }
    if (this.#events.has('message')) for (const message of messages) this.#events.emit('message', message, written);
  }

  /** Since when the stream gets every message logged; a stream that never joined a topic shares only reads not sent yet. */
  #listeningOf(stream: ClientStream): Listening {
    return this.#listening.get(stream) ?? this.#reads.fresh();
  }

  #release(stream: ClientStream, topicKey: string, reason: CloseReason): void {
    this.#streams.delete(stream);
    this.#removeResponse(stream);

    const topic = this.#topics.get(topicKey);
    if (topic && topic.clients.delete(stream) && topic.clients.size === 0) {
      this.#topics.delete(topicKey);
      const unsubscribing: Promise<void> = topic.ready
        .then((unsubscribe) => unsubscribe())
        .catch(() => {})
        .finally(() => this.#unsubscribing.delete(unsubscribing));
      this.#unsubscribing.add(unsubscribing);
    }
    this.#events.emit('stream-closed', stream, reason);
  }

  /** A multiplexed connection ended, after each of its subscriptions did. */
  #releaseConnection(connection: MuxConnection, reason: CloseReason): void {
    if (this.#connections.get(connection.id) === connection) this.#connections.delete(connection.id);
    this.#removeResponse(connection);
    this.#events.emit('connection-closed', connection, reason);
  }

  /** One timer for all clients, running only while there are any: one heartbeat per HTTP response. */
  #startHeartbeat(): void {
    if (this.#heartbeat) return;
    this.#heartbeat = setInterval(() => {
      for (const response of this.#responses) response.heartbeat();
    }, this.#heartbeatMs);
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }
}

/** Entries in the first page of a resume, before it knows how large they are. */
const FIRST_PAGE_ENTRIES = 16;
/** The most entries in a page of a resume. */
const MAX_PAGE_ENTRIES = 1000;
/** What a page of a resume aims to hold: the log a resume holds in memory, at most, while its client reads. */
const PAGE_BYTES = 256 * 1024;

/**
 * Entries of a resume's next page: about PAGE_BYTES at the size of the largest entry of the page before (a
 * token's `full_text` grows along the log, so the mean so far would underestimate), at most twice its length.
 */
function nextPageEntries(previous: number, largestBytes: number): number {
  const bySize = Math.floor(PAGE_BYTES / Math.max(1, largestBytes));
  return Math.max(1, Math.min(bySize, 2 * previous, MAX_PAGE_ENTRIES));
}

/** The kinds of message a snapshot holds per stage, besides the text (tokens are in it once, not one by one). */
const STATE_TYPES = ['stage_update', 'progress', 'done', 'error', 'cancelled'] as const;

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function safeParse(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    return json;
  }
}
