/**
 * One browser's stream: where it writes (its own response, or a subscription's share of a multiplexed one), the
 * messages held back while it resumes, and its one cleanup path.
 */
import type { IdOrder } from '../broker/broker.js';
import { tagJson } from '../../../protocol/mux.js';
import { compactTokenFrame, formatEvent, HEARTBEAT_FRAME, originalFrame, taggedFrame, type BatchFrames, type ParsedPayload, type SSEEvent } from './sse-frame.js';
import { HeldMessages } from './held-messages.js';
import type { StreamSink } from './stream-sink.js';

export const StreamState = {
  /** Subscribed, replaying: live messages wait in `pending` so replay and live merge without gap or duplicate. */
  opening: 'opening',
  live: 'live',
  closed: 'closed',
} as const;
export type StreamState = (typeof StreamState)[keyof typeof StreamState];

/** Why a stream ended. `unsubscribed`: a subscription of a multiplexed connection removed by its client (the connection stays). */
export type CloseReason = 'client_gone' | 'slow_consumer' | 'server_shutdown' | 'cut' | 'broker_error' | 'token_expired' | 'unsubscribed';

/**
 * What a stream takes of its topic (`?types=`, `?stages=`, or a subscription's `types` / `stages`): the messages
 * of these types, of these stages. Unset: everything. The stream's own events (`connected`, `snapshot`, `reset`,
 * `token_expired`) always go out; a snapshot or reset holds only what the filter lets through.
 */
export interface StreamFilter {
  types?: ReadonlySet<string>;
  stages?: ReadonlySet<string>;
}

export interface ClientStreamOptions {
  projectId: string;
  stage: string | null;
  clientKey: string;
  /** An id for logs (the request's `X-Request-Id`). Default `''`. */
  requestId?: string | undefined;
  /** Bytes the socket may hold unsent before the client counts as too slow and is dropped. */
  maxBufferBytes: number;
  /** How many live messages may wait while a resume is being replayed. */
  maxPending: number;
  /** The broker's ids and their order (`Broker.isId`, `Broker.compareIds`): which live messages the replay has written. */
  ids: IdOrder;
  /** The client asked for compact token events (see compactTokenFrame). */
  compact?: boolean;
  /** The stream's token expires then (ms since the epoch): it sends `token_expired` and ends. */
  expiresAt?: number | undefined;
  /**
   * A subscription of a multiplexed connection: its id, the last member of every event's JSON data (tagJson).
   * Unset for a stream of its own, whose bytes stay exactly the single stream's.
   */
  subscription?: string | undefined;
  /** Only these messages (see StreamFilter). */
  filter?: StreamFilter | undefined;
  /**
   * The soft bound: while more unsent bytes than this wait in the socket, live messages are held and written in
   * priority once it drains (held-messages.ts); `maxBufferBytes` stays the hard bound. Default a quarter of it.
   */
  softBufferBytes?: number;
  onClose: (stream: ClientStream, reason: CloseReason) => void;
}

export class ClientStream {
  readonly projectId: string;
  readonly stage: string | null;
  readonly clientKey: string;
  /** An id for logs, the same on the lines of its opening and its closing. */
  readonly requestId: string;
  /** The subscription id, for a subscription of a multiplexed connection (see ClientStreamOptions). */
  readonly subscription: string | undefined;
  readonly openedAt = Date.now();
  state: StreamState = StreamState.opening;
  events = 0;
  #sink: StreamSink;
  #pending: ParsedPayload[] = [];
  #options: ClientStreamOptions;
  /**
   * The newest log id the replay has written: while opening, as the replay goes (see replayedThrough()); after
   * it, until the first live message past it (see deliver()).
   */
  #replayedUpTo: string | undefined;
  /** Wakes the replay waiting in drained(); the stream's end calls it too. */
  #wakeReplay: (() => void) | undefined;
  /** Compact mode: stages whose full text this connection has sent, so later tokens may go compact. */
  #synced: Set<string> | undefined;
  #expiry: NodeJS.Timeout | undefined;
  /** Live messages held while the client is slow (see softBufferBytes), and the undo of the drain that flushes them. */
  #held: HeldMessages | undefined;
  #undoDrain: (() => void) | undefined;

  constructor(sink: StreamSink, options: ClientStreamOptions) {
    this.#sink = sink;
    this.#options = options;
    this.projectId = options.projectId;
    this.stage = options.stage;
    this.clientKey = options.clientKey;
    this.subscription = options.subscription;
    if (options.compact) this.#synced = new Set();
    this.requestId = options.requestId ?? '';
    // The one cleanup path: whoever ends the stream, #finish runs once.
    sink.onceGone(() => this.#finish('client_gone'));
    if (options.expiresAt !== undefined) this.#armExpiry(options.expiresAt);
  }

  /**
   * A new expiry (a subscription renewed with a fresh token; undefined: none, a public one): the timer is
   * armed again from it.
   */
  renew(expiresAt: number | undefined): void {
    if (this.state === StreamState.closed) return;
    clearTimeout(this.#expiry);
    this.#expiry = undefined;
    if (expiresAt !== undefined) this.#armExpiry(expiresAt);
  }

  /** setTimeout caps its delay at 2^31-1 ms (24.8 days): a later expiry re-arms until it is due. */
  #armExpiry(at: number): void {
    const delay = Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1);
    this.#expiry = setTimeout(() => (Date.now() >= at ? this.#expire() : this.#armExpiry(at)), delay);
  }

  /** The token ran out: say so in-band (the id-less event leaves the client's Last-Event-ID as it was), then end. */
  #expire(): void {
    if (this.state === StreamState.closed) return;
    const data = JSON.stringify({ type: 'token_expired', project_id: this.projectId, stage: this.stage, timestamp: Date.now() / 1000 });
    if (this.#sink.started) this.writeEvent({ event: 'token_expired', data });
    this.close('token_expired');
  }

  /**
   * Writes an event the hub built (`connected`, `snapshot`, `reset`, …) whose data is the text of a JSON object:
   * a subscription's gets its id as the last member.
   */
  writeEvent(event: SSEEvent): void {
    const tag = this.subscription;
    this.write(formatEvent(tag === undefined ? event : { ...event, data: tagJson(event.data, tag) }));
  }

  /** Starts the response, for a stream of its own (its head and `retry:`); a subscription's connection did. */
  begin(retry: string): void {
    this.#sink.begin(retry);
  }

  /** The heartbeat of a stream of its own, once it is live (a subscription's connection sends its own). */
  heartbeat(): void {
    if (this.state === StreamState.live) this.write(HEARTBEAT_FRAME);
  }

  /** True when the stream's filter lets `message` through (always, without a filter). */
  wants(message: ParsedPayload): boolean {
    const filter = this.#options.filter;
    if (!filter) return true;
    return this.wantsType(message.type) && (filter.stages === undefined || (message.stage !== undefined && filter.stages.has(message.stage)));
  }

  wantsType(type: string): boolean {
    return this.#options.filter?.types?.has(type) ?? true;
  }

  wantsStage(stage: string): boolean {
    return this.#options.filter?.stages?.has(stage) ?? true;
  }

  /** A live message from the broker. */
  deliver(message: ParsedPayload): void {
    if (this.#options.filter && !this.wants(message)) return;
    if (this.state === StreamState.live) {
      // After a replay, a live copy of a replayed message may still be on its way: drop it. Log ids only grow,
      // so the first message past the replay ends the check and the hot path is back to a field test.
      if (this.#replayedUpTo !== undefined && this.#options.ids.isId(message.id)) {
        if (this.#options.ids.compareIds(message.id, this.#replayedUpTo) <= 0) return;
        this.#replayedUpTo = undefined;
      }
      if (this.#held || this.#pressed()) return this.#hold(message);
      this.send(message);
    } else if (this.state === StreamState.opening) {
      // The replay has written it already: holding it back would only count against maxPending.
      if (this.#isReplayed(message)) return;
      // A resume that takes so long that this many new messages pile up is dropped; the client resumes again.
      if (this.#pending.length >= this.#options.maxPending) this.close('slow_consumer');
      else this.#pending.push(message);
    }
  }

  /**
   * While opening: the replay has written the log up to `id`. Held-back live copies up to it are dropped, now
   * and as they arrive, so the messages held back (bounded by `maxPending`) are only those the replay has not
   * reached: a long replay of a busy project is not dropped for the duplicates it would drop at the end anyway.
   */
  replayedThrough(id: string): void {
    if (this.state !== StreamState.opening) return;
    this.#replayedUpTo = id;
    this.#pending = this.#pending.filter((message) => !this.#isReplayed(message));
  }

  /**
   * Resolves once the response has written out what it holds, if it is past its high-water mark (the socket's,
   * 16 KiB), or at once; and when the stream ends. The replay awaits it after each message, so it writes as fast
   * as the client reads and holds no more than one page of the log meanwhile.
   */
  drained(): Promise<void> {
    const sink = this.#sink;
    if (this.state === StreamState.closed || !sink.writableNeedDrain) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = () => {
        undo();
        this.#wakeReplay = undefined;
        resolve();
      };
      const undo = sink.onceDrained(wake);
      this.#wakeReplay = wake;
    });
  }

  /**
   * Ends the replay: goes live and writes the held-back messages newer than `replayedUpTo`, the newest
   * log id the replay covered (null when nothing was replayed).
   */
  goLive(replayedUpTo: string | null): void {
    if (this.state !== StreamState.opening) return;
    const pending = this.#pending;
    this.#pending = [];
    this.state = StreamState.live;
    this.#replayedUpTo = replayedUpTo ?? undefined;
    for (const message of pending) this.deliver(message);
  }

  /** While opening: the live messages held back so far, oldest first (a snapshot reads the tokens among them). */
  get held(): readonly ParsedPayload[] {
    return this.#pending;
  }

  /**
   * Compact mode: the client has been sent these stages' texts (a `snapshot`), so their next tokens may go compact.
   * Without compact mode, nothing to do.
   */
  markSynced(stages: Iterable<string>): void {
    if (this.#synced) for (const stage of stages) this.#synced.add(stage);
  }

  /** The client asked for compact token events. */
  get compact(): boolean {
    return this.#synced !== undefined;
  }

  /**
   * True when writing `message` needs its text so far: a linear token, to a client in the original format, or to
   * a compact client that has not been sent its stage's text yet.
   */
  needsFullText(message: ParsedPayload): boolean {
    if (!message.linear || !this.wants(message)) return false;
    return !this.#synced || message.stage === undefined || !this.#synced.has(message.stage);
  }

  /**
   * Writes one message. In the original format a linear token goes with its `full_text` rebuilt (originalFrame);
   * in compact mode a stage's first token goes out whole, so the client has its full text, and later ones compact.
   *
   * A linear token whose text is not known (a message was lost) is never written with a wrong text: a client in
   * the original format is ended (`broker_error`, as when live delivery is interrupted), and resumes from the log
   * with its Last-Event-ID, where the text is read again; a compact client gets the token compact, and its own
   * check of the offset (SSEClient reconnects when a piece does not continue its text) takes over.
   */
  send(message: ParsedPayload): void {
    const synced = this.#synced;
    if (synced && message.type === 'token' && message.stage !== undefined) {
      const compact = this.#compactFrame(message);
      if (compact !== null && synced.has(message.stage)) return this.#count(compact);
      if (compact !== null) {
        const whole = this.#originalFrame(message);
        if (whole === null) return this.#count(compact);
        synced.add(message.stage);
        return this.#count(whole);
      }
    }
    const frame = this.#originalFrame(message);
    if (frame === null) return this.close('broker_error');
    this.#count(frame);
  }

  /** originalFrame, tagged for a subscription. */
  #originalFrame(message: ParsedPayload): string | null {
    return this.subscription === undefined ? originalFrame(message) : taggedFrame(message, 'original', this.subscription);
  }

  /** compactTokenFrame, tagged for a subscription. */
  #compactFrame(message: ParsedPayload): string | null {
    return this.subscription === undefined ? compactTokenFrame(message) : taggedFrame(message, 'compact', this.subscription);
  }

  /**
   * Live messages that arrived together, as one write: `frames.full()` is their frames in the original format
   * joined once for every client (null when one of them has no such frame), `frames.compact()` the same with
   * compact token frames; a subscription's are tagged with its id, joined once per id. A stream still opening,
   * one still checking for replayed duplicates, and a compact client that has not yet been sent a stage's first
   * token whole take them one by one instead.
   */
  deliverBatch(messages: readonly ParsedPayload[], frames: BatchFrames): void {
    // A filtered stream takes its messages one by one: the shared bytes hold them all.
    if (this.state !== StreamState.live || this.#replayedUpTo !== undefined || this.#options.filter) {
      for (const message of messages) this.deliver(message);
      return;
    }
    if (this.#held || this.#pressed()) {
      for (const message of messages) this.deliver(message);
      return;
    }
    const synced = this.#synced;
    if (synced) {
      for (const message of messages) {
        if (message.type === 'token' && message.stage !== undefined && !synced.has(message.stage) && this.#compactFrame(message) !== null) {
          for (const each of messages) this.send(each);
          return;
        }
      }
    }
    const bytes = synced ? frames.compact(this.subscription) : frames.full(this.subscription);
    if (bytes === null) {
      // One of them is out of step: write those before it, then end (see send()).
      for (const message of messages) if ((this.state as StreamState) !== StreamState.closed) this.send(message);
      return;
    }
    this.events += messages.length;
    this.write(bytes);
  }

  /** Above the soft bound, and the socket will say when it drained. */
  #pressed(): boolean {
    const sink = this.#sink;
    return sink.writableNeedDrain && sink.writableLength > (this.#options.softBufferBytes ?? this.#options.maxBufferBytes / 4);
  }

  /** Holds a live message until the socket drains; what is held is bounded by the hard bound too. */
  #hold(message: ParsedPayload): void {
    if (!this.#held) {
      this.#held = new HeldMessages();
      this.#undoDrain = this.#sink.onceDrained(() => this.#flushHeld());
    }
    this.#held.add(message);
    if (this.#held.bytes > this.#options.maxBufferBytes) this.close('slow_consumer');
  }

  /** The socket drained: what was held goes out, merged and in priority, then the cursor if need be. */
  #flushHeld(): void {
    const held = this.#held;
    this.#held = undefined;
    this.#undoDrain = undefined;
    if (!held || this.state !== StreamState.live) return;
    const ids = this.#options.ids;
    const { messages, cursor } = held.drain(
      (a, b) => ids.compareIds(a, b),
      (id): id is string => ids.isId(id),
    );
    for (const message of messages) {
      if ((this.state as StreamState) === StreamState.closed) return;
      this.send(message);
    }
    if (cursor !== undefined && (this.state as StreamState) !== StreamState.closed) {
      // Everything up to `cursor` is out: the id-only event moves the client's Last-Event-ID there.
      this.writeEvent({ id: cursor, event: 'cursor', data: JSON.stringify({ type: 'cursor', project_id: this.projectId, stage: this.stage, id: cursor }) });
    }
  }

  #count(frame: string): void {
    this.events++;
    this.write(frame);
  }

  write(chunk: string | Buffer): void {
    const sink = this.#sink;
    if (sink.ended) return;
    // Mercure's rule: a client that cannot keep up is disconnected, never allowed to grow our memory.
    // It reconnects with Last-Event-ID and catches up from the replay log. The check comes before the
    // write, so one message larger than the bound still reaches a client that keeps up: the memory
    // held per client is at most maxBufferBytes plus one message.
    // A subscription's bound is its connection's: they share one socket, and so one buffer.
    if (sink.writableLength > this.#options.maxBufferBytes) {
      this.close('slow_consumer');
      return;
    }
    sink.write(chunk);
  }

  close(reason: CloseReason): void {
    if (this.state === StreamState.closed) return;
    this.#finish(reason);
    this.#sink.end(reason);
  }

  /** Releases the stream before it started, leaving the response to the caller (for an error answer). */
  abandon(reason: CloseReason): void {
    if (this.state === StreamState.closed) return;
    this.#finish(reason);
    this.#sink.abandon();
  }

  #isReplayed(message: ParsedPayload): boolean {
    const upTo = this.#replayedUpTo;
    const { ids } = this.#options;
    return upTo !== undefined && ids.isId(message.id) && ids.compareIds(message.id, upTo) <= 0;
  }

  #finish(reason: CloseReason): void {
    if (this.state === StreamState.closed) return;
    clearTimeout(this.#expiry);
    this.state = StreamState.closed;
    this.#pending = [];
    this.#held = undefined;
    this.#undoDrain?.();
    this.#undoDrain = undefined;
    // A replay waiting for a socket that will never drain (a stalled client, dropped) ends now, not never.
    this.#wakeReplay?.();
    this.#options.onClose(this, reason);
  }
}

