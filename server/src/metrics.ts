/**
 * Prometheus metrics of one SSE hub (prom-client): what operators watch, in the spirit of Mercure's
 * and Centrifugo's. Fed by the hub's events (`hub.events`, see watch()); read at each scrape of `GET /metrics`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CloseReason } from './hub/client-stream.js';
import type { ReadKind } from './hub/coalesced-reads.js';
import type { HubEventSource, StreamOpening } from './hub/hub-events.js';

export interface SseMetricsOptions {
  /**
   * The registry the metrics go in. Default: a new one, so that two hubs in one process never clash.
   * Pass prom-client's global `register` to serve them from your own `/metrics`.
   */
  registry?: Registry;
  /** First part of every metric name. Default `sse_`. */
  prefix?: string;
  /** Buckets of the publish-to-write lag histogram, in seconds. Default 1 ms to 10 s. */
  lagBuckets?: number[];
  /** The clock the lag is measured with, in milliseconds since the epoch. Default `Date.now`. */
  now?: () => number;
}

/** What the gauges read at each scrape, and the events the counters count. */
export interface MetricsSource {
  /** A `Hub`; without `events` (a stand-in), only the gauges are fed. */
  hub: { readonly size: number; readonly topicCount: number; readonly subscriptionCount?: number; readonly events?: HubEventSource };
  broker: { readonly kind: string; readonly healthy: boolean };
}

/**
 * Every close reason of an HTTP stream, so each counter series exists (at 0) before its first close. `unsubscribed`
 * ends only a subscription of a multiplexed connection, never an HTTP stream.
 */
const CLOSE_REASONS = Object.keys({
  client_gone: 1,
  slow_consumer: 1,
  server_shutdown: 1,
  cut: 1,
  broker_error: 1,
  token_expired: 1,
} satisfies Record<Exclude<CloseReason, 'unsubscribed'>, 1>) as CloseReason[];

/** Every close reason of a subscription: its own end (`unsubscribed`, `token_expired`) or its connection's. */
const SUBSCRIPTION_CLOSE_REASONS: CloseReason[] = [...CLOSE_REASONS, 'unsubscribed'];

const RESET_REASONS = ['expired', 'unknown_id', 'too_long'] as const satisfies ReadonlyArray<NonNullable<StreamOpening['reset']>>;

const READ_KINDS = Object.keys({ replay: 1, replay_page: 1, snapshot: 1, texts: 1 } satisfies Record<ReadKind, 1>) as ReadKind[];

const DEFAULT_LAG_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The hub's metrics. One instance per hub: `watch()` tells it which hub and broker the gauges read, and
 * listens to the hub's events for the counters.
 *
 * | metric | type | what |
 * | --- | --- | --- |
 * | `sse_streams_open` | gauge | HTTP streams open now: a multiplexed connection is one, whatever its subscriptions |
 * | `sse_streams_opened_total{resumed}` | counter | streams opened; `resumed="true"` when they came with a `Last-Event-ID` (a multiplexed connection counts once, `false`) |
 * | `sse_streams_closed_total{reason}` | counter | streams closed, by reason (`client_gone`, `slow_consumer`, `server_shutdown`, `cut`, `broker_error`, `token_expired`) |
 * | `sse_mux_subscriptions_open` | gauge | subscriptions held by the multiplexed connections now |
 * | `sse_mux_subscriptions_total{resumed}` | counter | subscriptions opened on multiplexed connections; `resumed="true"` with a `last_event_id` |
 * | `sse_mux_subscriptions_closed_total{reason}` | counter | subscriptions ended, by reason: the stream reasons, and `unsubscribed` (removed by the client) |
 * | `sse_events_delivered_total` | counter | events written to clients: live, replayed and held back during a replay (subscriptions' included) |
 * | `sse_messages_received_total` | counter | messages the hub received from the broker (each written once per watching client) |
 * | `sse_replays_served_total` | counter | resumes answered from the replay log |
 * | `sse_replayed_events_total` | counter | events written by those replays |
 * | `sse_resets_sent_total{reason}` | counter | resumes answered with a `reset` (`expired`: trimmed from the log; `unknown_id`: never in it; `too_long`: more to replay than a resume may read) |
 * | `sse_snapshots_sent_total` | counter | fresh streams (no `Last-Event-ID`) that were sent a `snapshot` of the current state first |
 * | `sse_slow_clients_dropped_total` | counter | clients dropped because they could not keep up |
 * | `sse_log_reads_total{kind}` | counter | log and state reads sent to the broker by resumes and snapshots (`replay`: a resume's first page, `replay_page`: the pages after it, `snapshot`, `texts`) |
 * | `sse_log_reads_coalesced_total{kind}` | counter | reads of those kinds answered from a read another stream's opening made (coalesced-reads.ts) |
 * | `sse_broker_up{broker}` | gauge | 1 while the broker (`redis` or `memory`) is connected, else 0 |
 * | `sse_broker_subscriptions` | gauge | topics the hub listens to: stage channels, plus projects watched project-wide (on Redis these share one pattern) |
 * | `sse_publish_to_write_lag_seconds` | histogram | from a message's `timestamp` to its write to the clients (clocks of other hosts included) |
 */
export class SseMetrics {
  readonly registry: Registry;

  constructor(options: SseMetricsOptions = {}) {
    const registry = (this.registry = options.registry ?? new Registry());
    const prefix = options.prefix ?? 'sse_';
    const registers = [registry];
    this.#now = options.now ?? Date.now;

    const source = () => this.#source;
    new Gauge({
      name: `${prefix}streams_open`,
      help: 'HTTP streams open now (a multiplexed connection is one).',
      registers,
      collect() {
        this.set(source()?.hub.size ?? 0);
      },
    });
    new Gauge({
      name: `${prefix}mux_subscriptions_open`,
      help: 'Subscriptions held by the multiplexed connections now.',
      registers,
      collect() {
        this.set(source()?.hub.subscriptionCount ?? 0);
      },
    });
    new Gauge({
      name: `${prefix}broker_subscriptions`,
      help: 'Topics the hub listens to on the broker: stage channels, plus projects watched on all stages.',
      registers,
      collect() {
        this.set(source()?.hub.topicCount ?? 0);
      },
    });
    new Gauge({
      name: `${prefix}broker_up`,
      help: '1 while the broker is connected, else 0.',
      labelNames: ['broker'] as const,
      registers,
      collect() {
        const broker = source()?.broker;
        this.reset();
        if (broker) this.set({ broker: broker.kind }, broker.healthy ? 1 : 0);
      },
    });
    this.#opened = new Counter({
      name: `${prefix}streams_opened_total`,
      help: 'Streams opened; resumed="true" when they came with a Last-Event-ID.',
      labelNames: ['resumed'] as const,
      registers,
    });
    this.#closed = new Counter({ name: `${prefix}streams_closed_total`, help: 'Streams closed, by reason.', labelNames: ['reason'] as const, registers });
    this.#subscriptions = new Counter({
      name: `${prefix}mux_subscriptions_total`,
      help: 'Subscriptions opened on multiplexed connections; resumed="true" when they came with a last_event_id.',
      labelNames: ['resumed'] as const,
      registers,
    });
    this.#subscriptionsClosed = new Counter({
      name: `${prefix}mux_subscriptions_closed_total`,
      help: 'Subscriptions of multiplexed connections ended, by reason.',
      labelNames: ['reason'] as const,
      registers,
    });
    this.#delivered = new Counter({
      name: `${prefix}events_delivered_total`,
      help: 'Events written to clients: live, replayed, and held back during a replay.',
      registers,
    });
    this.#received = new Counter({ name: `${prefix}messages_received_total`, help: 'Messages the hub received from the broker.', registers });
    this.#replays = new Counter({ name: `${prefix}replays_served_total`, help: 'Resumes answered from the replay log.', registers });
    this.#replayed = new Counter({ name: `${prefix}replayed_events_total`, help: 'Events written by replays.', registers });
    this.#resets = new Counter({
      name: `${prefix}resets_sent_total`,
      help: 'Resumes answered with a reset: expired (trimmed from the log), unknown_id (never in it) or too_long (more than a resume may replay).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.#snapshots = new Counter({ name: `${prefix}snapshots_sent_total`, help: 'Fresh streams sent a snapshot of the current state first.', registers });
    this.#slow = new Counter({ name: `${prefix}slow_clients_dropped_total`, help: 'Clients dropped because they could not keep up.', registers });
    this.#logReads = new Counter({
      name: `${prefix}log_reads_total`,
      help: 'Log and state reads sent to the broker by resumes and snapshots, by kind.',
      labelNames: ['kind'] as const,
      registers,
    });
    this.#logReadsShared = new Counter({
      name: `${prefix}log_reads_coalesced_total`,
      help: "Log and state reads answered from another stream's read of the same key, by kind.",
      labelNames: ['kind'] as const,
      registers,
    });
    this.#lag = new Histogram({
      name: `${prefix}publish_to_write_lag_seconds`,
      help: "From a message's timestamp (set by its publisher) to its write to the clients.",
      buckets: options.lagBuckets ?? DEFAULT_LAG_BUCKETS,
      registers,
    });

    // Every labelled series starts at 0, so rate() and alerts see it before its first event.
    for (const resumed of ['true', 'false']) this.#opened.inc({ resumed }, 0);
    for (const reason of CLOSE_REASONS) this.#closed.inc({ reason }, 0);
    for (const resumed of ['true', 'false']) this.#subscriptions.inc({ resumed }, 0);
    for (const reason of SUBSCRIPTION_CLOSE_REASONS) this.#subscriptionsClosed.inc({ reason }, 0);
    for (const reason of RESET_REASONS) this.#resets.inc({ reason }, 0);
    for (const kind of READ_KINDS) {
      this.#logReads.inc({ kind }, 0);
      this.#logReadsShared.inc({ kind }, 0);
    }
  }

  /**
   * The hub and broker the gauges read at each scrape; the counters follow the hub's events from now on. A second
   * call moves both to the new source.
   */
  watch(source: MetricsSource): void {
    this.unwatch();
    this.#source = source;
    const events = source.hub.events;
    if (!events) return;
    // A subscription of a multiplexed connection is counted as a subscription; its connection as the stream.
    const off = [
      events.on('stream-opened', (stream, resumed) => (stream.subscription === undefined ? this.streamOpened(resumed) : this.subscriptionOpened(resumed))),
      events.on('stream-live', (_stream, opening) => this.streamLive(opening)),
      events.on('snapshot', () => this.snapshotSent()),
      events.on('message', (message, written) => this.messageWritten(message, written)),
      events.on('stream-closed', (stream, reason) => (stream.subscription === undefined ? this.streamClosed(reason) : this.subscriptionClosed(reason))),
      events.on('connection-opened', () => this.streamOpened(false)),
      events.on('connection-closed', (_connection, reason) => this.streamClosed(reason)),
      events.on('log-read', (kind, shared) => this.logRead(kind, shared)),
    ];
    this.#unlisten = () => off.forEach((unsubscribe) => unsubscribe());
  }

  /** Stops following the hub's events (the counters keep their values; the gauges still read the source). */
  unwatch(): void {
    this.#unlisten();
    this.#unlisten = () => {};
  }

  /** A stream was opened (its `connected` was sent). */
  streamOpened(resumed: boolean): void {
    this.#opened.inc({ resumed: String(resumed) });
  }

  /** A subscription was added to a multiplexed connection (its opening written). */
  subscriptionOpened(resumed: boolean): void {
    this.#subscriptions.inc({ resumed: String(resumed) });
  }

  /** A subscription of a multiplexed connection ended (a slow client is counted once, by its connection). */
  subscriptionClosed(reason: CloseReason): void {
    this.#subscriptionsClosed.inc({ reason });
  }

  /** A stream went live: what it was sent while opening. */
  streamLive(opening: StreamOpening): void {
    this.#delivered.inc(opening.events);
    if (!opening.resumed) return;
    if (opening.reset) {
      this.#resets.inc({ reason: opening.reset });
    } else {
      this.#replays.inc();
      this.#replayed.inc(opening.replayed);
    }
  }

  /** A fresh stream was sent a `snapshot`. */
  snapshotSent(): void {
    this.#snapshots.inc();
  }

  /** A broker message was written to `written` live streams. */
  messageWritten(message: { timestamp: number | undefined }, written: number): void {
    this.#received.inc();
    if (written === 0) return;
    this.#delivered.inc(written);
    // A publisher's clock ahead of ours would give a negative lag: count it as none.
    if (message.timestamp !== undefined) this.#lag.observe(Math.max(0, this.#now() / 1000 - message.timestamp));
  }

  /** A resume or snapshot read the log or the state: from the broker, or `shared` from another's read. */
  logRead(kind: ReadKind, shared: boolean): void {
    (shared ? this.#logReadsShared : this.#logReads).inc({ kind });
  }

  /** A stream closed. */
  streamClosed(reason: CloseReason): void {
    this.#closed.inc({ reason });
    if (reason === 'slow_consumer') this.#slow.inc();
  }

  /** The metrics in Prometheus's text format. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Serves `text()`: mount it as `GET /metrics`. */
  readonly handler = async (_req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      const body = await this.text();
      res.writeHead(200, { 'Content-Type': this.registry.contentType, 'Cache-Control': 'no-store' }).end(body);
    } catch (error) {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`metrics failed: ${(error as Error).message}\n`);
    }
  };

  readonly #now: () => number;
  #source: MetricsSource | undefined;
  #unlisten: () => void = () => {};
  readonly #opened: Counter<'resumed'>;
  readonly #closed: Counter<'reason'>;
  readonly #subscriptions: Counter<'resumed'>;
  readonly #subscriptionsClosed: Counter<'reason'>;
  readonly #delivered: Counter;
  readonly #received: Counter;
  readonly #replays: Counter;
  readonly #replayed: Counter;
  readonly #resets: Counter<'reason'>;
  readonly #snapshots: Counter;
  readonly #slow: Counter;
  readonly #logReads: Counter<'kind'>;
  readonly #logReadsShared: Counter<'kind'>;
  readonly #lag: Histogram;
}
