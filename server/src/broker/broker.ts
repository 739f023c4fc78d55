/**
 * Everything the hub, the publisher and the subscriber need from a message broker, and nothing more: Mercure's
 * `Transport` is the model, a small core that every broker has. Two implementations: Redis (redis-broker.ts, made
 * of the parts beside it) and an in-process twin used when no Redis answers (memory-broker.ts). A capability only
 * some brokers have would be an interface of its own that extends this one, found with a type guard, so that the
 * core stays what every broker can do.
 */

export type BrokerKind = 'redis' | 'memory';

/** One message of a project's replay log. */
export interface LogEntry {
  id: string;
  stage: string;
  /** The message JSON with its `id` field, byte-for-byte what the live channel carried. */
  data: string;
}

/** What one {@link Broker.replay} call reads. */
export interface ReplayOptions {
  /** The most entries to return: one page of the log. A positive integer; default 1000. */
  limit?: number;
}

export interface ReplayResult {
  /**
   * True when `afterId` is still in the log, so `entries` is what follows it with no gap.
   * False when it was trimmed or expired, or never existed: the caller must reset the client.
   */
  covered: boolean;
  /** The entries after `afterId`, oldest first: at most `limit`. Empty when not covered. */
  entries: LogEntry[];
  /**
   * True when the page is full (`limit` entries): the log may hold more, read them with the last entry's id as
   * `afterId`. False when the page reached the end of the log as it was when read.
   */
  more: boolean;
}

export interface Snapshot {
  /** Id of the newest log entry, or null when the project has no log. */
  lastId: string | null;
  /**
   * stage -> message type -> the latest message JSON of that type (with id). Both levels are prototype-less
   * objects (`Object.create(null)`): the names come from the broker, so no name reaches an object's internals.
   */
  stages: Record<string, Record<string, string>>;
}

/**
 * A token published in linear form ({@link Broker.publish}): its piece and where the piece starts in the stage's
 * text, so the broker keeps the text once per stage instead of once per token.
 */
export interface TokenPiece {
  /** The piece, the message's `content`. */
  content: string;
  /**
   * Where the piece starts in the stage's text so far, in UTF-16 code units (JavaScript's `length`): the message's
   * `offset`. 0 starts a new run of the stage; any other offset must be the text's length.
   */
  offset: number;
  /**
   * The whole text including the piece, when a publisher joins a stage mid-run (a retried task, or a worker of an
   * older version wrote the text before): the kept text becomes it, whatever it was. Must end with `content`, at
   * `offset`. An empty string counts as absent.
   */
  wholeText?: string;
}

/** One stage's text so far, as {@link Broker.texts} reads it. */
export interface StageText {
  /** Every piece of the stage's current run, in order. */
  text: string;
  /** The log id of the last token in `text`; undefined when the broker holds none (a partly expired project). */
  id: string | undefined;
}

/**
 * What a publisher adds to a message so that retries, leases and cancel work (publish.lua's control options):
 * a producer id and sequence number make a retried publish return the original id instead of a duplicate; a run
 * (default: the producer) with `leaseMs` holds the stage's lease; `final` is a cancelled run's last word.
 */
export interface PublishControl {
  /** The publisher's id (1-128 bytes), e.g. a random UUID per publisher. */
  producer?: string;
  /** 1, 2, 3, ... per producer: a sequence already logged is not logged again. */
  seq?: number;
  /** The run of the stage this publisher is (1-128 bytes). Default: `producer`. */
  run?: string;
  /** Hold (renew) the stage's lease for this long, in ms, with this publish. */
  leaseMs?: number;
  /** Allowed after the run was cancelled: the closing message of a cancelled stage. */
  final?: boolean;
}

/** The stage operations of {@link StageControlBroker.control}. */
export type ControlOp = 'renew' | 'cancel' | 'reap';

/** What a {@link StageControlBroker.control} call answers (publish.lua's reply). */
export interface ControlResult {
  /**
   * renew: `ok`, `cancelled`, `lost`, `superseded`, `finished`; cancel: `cancelled`, `already_cancelled`, `finished`,
   * `not_running`; reap: `reaped`, `alive`, `gone`.
   */
  outcome: string;
  /** The id of the message logged (cancel, reap), or of the earlier cancel (`already_cancelled`). */
  id?: string;
  /** renew / alive: the lease's deadline, ms since the epoch on the broker's clock. */
  deadline?: number;
  /** finished: how the stage ended (`done`, `error`, `lost`). */
  status?: string;
}

/**
 * The capability behind cancel and worker leases (both brokers have it; found with {@link hasStageControl}).
 * Lease deadlines are the broker's clock (Redis TIME), so workers' and hubs' clocks need not agree.
 */
export interface StageControlBroker extends Broker {
  /**
   * One stage operation, atomically (see publish.lua): `renew` a run's lease (`control.run`, `control.leaseMs`;
   * `message` is ignored), `cancel` the stage (logs and publishes `message`, a `cancelled` message, once), or `reap`
   * an expired lease (logs and publishes `message`, the worker-lost `error`, once however many callers race).
   */
  control(projectId: string, stage: string, op: ControlOp, message: string, control?: PublishControl): Promise<ControlResult>;
  /** Adds or moves a lease in the index the reaper reads (`deadline`: ms, the broker's clock). */
  indexLease(projectId: string, stage: string, deadline: number): Promise<void>;
  /** Leases of the index due by `now` (ms), at most `limit`, oldest first; and the removal of one. */
  dueLeases(now: number, limit: number): Promise<{ projectId: string; stage: string }[]>;
  unindexLease(projectId: string, stage: string): Promise<void>;
  /** The broker's clock, in ms since the epoch (Redis TIME). */
  time(): Promise<number>;
  /** The channel a stage's worker listens on for its cancel and worker-lost messages. */
  controlChannel(projectId: string, stage: string): string;
}

export function hasStageControl(broker: Broker): broker is StageControlBroker {
  return typeof (broker as Partial<StageControlBroker>).control === 'function';
}

/** Receives a payload exactly as published, and the channel it was published on. */
export type MessageListener = (payload: string, channel: string) => void;
export type Unsubscribe = () => Promise<void>;

export interface Broker {
  readonly kind: BrokerKind;
  /** The channel-name prefix (`CHANNEL_PREFIX`). */
  readonly prefix: string;

  /**
   * Appends `message` to the project's replay log, sets it as the latest of its `type` in the project's state,
   * and publishes it, with `"id"` inserted as its first field, on the stage channel, in one atomic step.
   * Resolves to the new id. Rejects (never drops silently) when the broker is unreachable.
   *
   * `type` is the message's `type` field (`message` when it has none): the broker does not parse the message to
   * learn it. `message` is a JSON object text without an `id` field, starting with `{`. Throws
   * InvalidArgumentError (errors.ts) before anything is sent for an id, stage or type that breaks the id rule,
   * and for a message that is no such text (see checkPublishArguments in arguments.ts for what is checked).
   *
   * With `linear`, `message` is a token in linear form: its `content` and `offset` (the last field) are `linear`'s,
   * and it has no `full_text`. The broker also appends the piece to the stage's text (see {@link Broker.texts}),
   * in the same atomic step. A piece whose offset is neither 0 nor the text's length is refused with
   * {@link TokenOffsetError} (errors.ts), and nothing is logged or published: a lost or repeated token never
   * becomes a silently wrong text. Without `linear` the message is logged and published as it is.
   */
  publish(projectId: string, stage: string, type: string, message: string, linear?: TokenPiece, control?: PublishControl): Promise<string>;

  /**
   * Each stage's text so far, from the linear tokens published, with the id of its last token: of `stage`, or of
   * every stage of the project when `stage` is null. Each stage's text and id are read in one atomic step, so
   * they agree. Stages without linear tokens (or whose text expired) are absent; so is everything for an id or
   * stage that breaks the id rule.
   */
  texts(projectId: string, stage: string | null): Promise<Map<string, StageText>>;

  /**
   * One page of the log entries after `afterId`, oldest first, read in one atomic step with the check that
   * `afterId` is still there (see {@link ReplayResult}). A long log is read page by page, each page after the
   * last id of the one before: a page whose `afterId` was trimmed meanwhile is not covered, so no gap goes unseen.
   *
   * A page that is not full (`more: false`) is in step with live delivery: by the time it resolves, every
   * message logged before it was read has been handed to the listeners subscribed then. So a caller that
   * subscribed first, then read up to such a page, holds every message once, from the log or live.
   * Throws InvalidArgumentError (errors.ts) for a `limit` that is not a positive integer.
   */
  replay(projectId: string, afterId: string, options?: ReplayOptions): Promise<ReplayResult>;

  /** The latest state of each stage, read in one atomic step with the newest id. */
  snapshot(projectId: string): Promise<Snapshot>;

  /**
   * Listens on one channel, or on a glob pattern when `pattern` is true. Reference-counted:
   * the broker subscribes for the first listener of a channel and unsubscribes after the last.
   * Resolves once the subscription is active, so nothing published afterwards is missed.
   */
  subscribe(channelOrPattern: string, listener: MessageListener, pattern?: boolean): Promise<Unsubscribe>;

  /**
   * Calls `listener` when live delivery was interrupted (the subscriber connection dropped while it had
   * subscriptions): messages published meanwhile reached the replay log but no listener. The hub ends its
   * streams then, so clients resume from the log instead of silently missing them. Returns the remover.
   */
  onInterruption(listener: () => void): () => void;

  /** True while the broker is reachable. */
  readonly healthy: boolean;
  /** Round trip to the broker; rejects when it is down. */
  ping(): Promise<void>;

  close(): Promise<void>;

  /** True for an id this broker could have assigned; anything else (a foreign message's `id`) has no place in its order. */
  isId(value: unknown): value is string;
  /**
   * Negative, zero or positive as id `a` was assigned before, with or after `b` within one project: the order
   * of its log. Throws a TypeError unless both are ids of this broker ({@link Broker.isId}).
   */
  compareIds(a: string, b: string): number;
}

/** The broker's id syntax and order, for code that compares ids and needs nothing else of the broker. */
export type IdOrder = Pick<Broker, 'isId' | 'compareIds'>;
