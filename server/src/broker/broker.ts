/**
 * Everything the hub, the publisher and the subscriber need from a message broker.
 * Two implementations: Redis (ioredis) and an in-process twin used when no Redis answers.
 */

export type BrokerKind = 'redis' | 'memory';

/** One message of a project's replay log. */
export interface LogEntry {
  id: string;
  stage: string;
  /** The message JSON with its `id` field, byte-for-byte what the live channel carried. */
  data: string;
}

export interface ReplayResult {
  /**
   * True when `afterId` is still in the log, so `entries` is everything after it with no gap.
   * False when it was trimmed or expired, or never existed: the caller must reset the client.
   */
  covered: boolean;
  entries: LogEntry[];
}

export interface Snapshot {
  /** Id of the newest log entry, or null when the project has no log. */
  lastId: string | null;
  /** stage -> message type -> the latest message JSON of that type (with id). */
  stages: Record<string, Record<string, string>>;
}

/** Receives a payload exactly as published, and the channel it was published on. */
export type MessageListener = (payload: string, channel: string) => void;
export type Unsubscribe = () => Promise<void>;

export interface Broker {
  readonly kind: BrokerKind;
  /** The channel-name prefix (`CHANNEL_PREFIX`). */
  readonly prefix: string;

  /**
   * Appends `message` (a JSON object text without an `id` field) to the project's replay log and
   * publishes it, with `"id"` inserted as its first field, on the stage channel, in one atomic step.
   * Resolves to the new id. Rejects (never drops silently) when the broker is unreachable.
   */
  publish(projectId: string, stage: string, message: string): Promise<string>;

  /** A plain PUBLISH, as a foreign worker does it: no log, no id. */
  publishRaw(channel: string, payload: string): Promise<void>;

  /** Log entries after `afterId`, oldest first. See {@link ReplayResult.covered}. */
  replay(projectId: string, afterId: string): Promise<ReplayResult>;

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
}
