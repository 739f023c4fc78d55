/**
 * The in-process twin of RedisBroker, used when no Redis answers and in tests: the same ids, the same
 * capped and expiring replay log, the same state, glob patterns; only this process's publishers reach it.
 */
import type { Broker, LogEntry, MessageListener, ReplayOptions, ReplayResult, Snapshot, Unsubscribe } from './broker.js';
import { BrokerClosedError, InvalidArgumentError } from './errors.js';
import { checkPublishArguments, checkReplayLimit, isLogId, nextLogId, withId } from './log-id.js';
import { DEFAULT_PREFIX, checkPrefix, stageChannel } from '../channels.js';

export interface MemoryBrokerOptions {
  /** First part of every channel name; follows the id rule (`ID_RULE` in channels.ts). Default `ai_story`. */
  prefix?: string;
  /** Entries kept in each project's replay log. Default 1000. */
  logMaxLen?: number;
  /** Seconds the replay log and the state of a project live after its last message. Default 86400. */
  logTtlSeconds?: number;
  /** The clock, in milliseconds since the epoch; inject one to test expiry. Default `Date.now`. */
  now?: () => number;
  /** Called when a message listener throws; the other listeners still get the message. Default: `console.error`. */
  onListenerError?: (error: unknown) => void;
}

interface ProjectLog {
  /** Oldest first; `data` without its id, as in the Redis stream. */
  entries: LogEntry[];
  /** `<stage>|<type>` -> the latest message of that type, with its id. */
  state: Map<string, string>;
  expiresAt: number;
}

interface Subscription {
  readonly match: (channel: string) => boolean;
  readonly listeners: Set<MessageListener>;
}

/** A {@link Broker} inside this process. Listeners are called asynchronously, in publish order. */
export class MemoryBroker implements Broker {
  readonly kind = 'memory' as const;
  readonly prefix: string;

  constructor(options: MemoryBrokerOptions = {}) {
    this.prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
    this.#logMaxLen = positiveInteger('logMaxLen', options.logMaxLen ?? 1000);
    this.#ttlMs = positiveInteger('logTtlSeconds', options.logTtlSeconds ?? 86_400) * 1000;
    this.#now = options.now ?? Date.now;
    this.#onListenerError = options.onListenerError ?? ((error) => console.error('[broker] a message listener threw:', error));
  }

  /** In process, live delivery is never interrupted. */
  onInterruption(_listener: () => void): () => void {
    return () => {};
  }

  get healthy(): boolean {
    return !this.#closed;
  }

  async publish(projectId: string, stage: string, message: string): Promise<string> {
    this.#assertOpen();
    const type = checkPublishArguments(projectId, stage, message);
    const now = this.#now();
    this.#sweep(now);
    let log = this.#log(projectId, now);
    if (!log) this.#projects.set(projectId, (log = { entries: [], state: new Map(), expiresAt: 0 }));
    // One id space for the whole broker: monotonic per project a fortiori, even if the clock goes back.
    const id = (this.#lastId = nextLogId(this.#lastId, now));
    log.entries.push({ id, stage, data: message });
    if (log.entries.length > this.#logMaxLen) log.entries.splice(0, log.entries.length - this.#logMaxLen);
    const live = withId(message, id);
    log.state.set(`${stage}|${type}`, live);
    log.expiresAt = now + this.#ttlMs;
    this.#deliver(stageChannel(this.prefix, projectId, stage), live);
    return id;
  }

  async publishRaw(channel: string, payload: string): Promise<void> {
    this.#assertOpen();
    this.#deliver(channel, payload);
  }

  async replay(projectId: string, afterId: string, options: ReplayOptions = {}): Promise<ReplayResult> {
    this.#assertOpen();
    const limit = checkReplayLimit(options.limit);
    const entries = isLogId(afterId) ? this.#log(projectId, this.#now())?.entries : undefined;
    const index = entries ? entries.findIndex((entry) => entry.id === afterId) : -1;
    if (!entries || index < 0) return { covered: false, entries: [], more: false };
    const page = entries.slice(index + 1, index + 1 + limit).map(({ id, stage, data }) => ({ id, stage, data: withId(data, id) }));
    // "Full", as RedisBroker says it: its XRANGE ... COUNT cannot tell a page that ends the log from one that does not.
    return { covered: true, entries: page, more: page.length === limit };
  }

  async snapshot(projectId: string): Promise<Snapshot> {
    this.#assertOpen();
    const log = this.#log(projectId, this.#now());
    // Prototype-less, as RedisBroker's: a map keyed by names must not reach an object's internals.
    const stages: Snapshot['stages'] = Object.create(null);
    for (const [field, data] of log?.state ?? []) {
      const bar = field.indexOf('|');
      (stages[field.slice(0, bar)] ??= Object.create(null))[field.slice(bar + 1)] = data;
    }
    return { lastId: log?.entries.at(-1)?.id ?? null, stages };
  }

  async subscribe(channelOrPattern: string, listener: MessageListener, pattern = false): Promise<Unsubscribe> {
    this.#assertOpen();
    const key = `${pattern ? 'p' : 'c'}:${channelOrPattern}`;
    let subscription = this.#subscriptions.get(key);
    if (!subscription) {
      const regExp = pattern ? globToRegExp(channelOrPattern) : undefined;
      subscription = {
        match: regExp ? (channel) => regExp.test(channel) : (channel) => channel === channelOrPattern,
        listeners: new Set(),
      };
      this.#subscriptions.set(key, subscription);
    }
    // One entry per call, so one function subscribed twice is called twice and left once per call.
    const entry: MessageListener = (payload, channel) => listener(payload, channel);
    subscription.listeners.add(entry);
    this.#live.add(entry);
    const held = subscription;
    return async () => {
      this.#live.delete(entry);
      held.listeners.delete(entry);
      if (held.listeners.size === 0 && this.#subscriptions.get(key) === held) this.#subscriptions.delete(key);
    };
  }

  async ping(): Promise<void> {
    this.#assertOpen();
  }

  /** Drops every listener, log and undelivered message. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#subscriptions.clear();
    this.#live.clear();
    this.#projects.clear();
    this.#queue.length = 0;
  }

  readonly #logMaxLen: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #onListenerError: (error: unknown) => void;
  readonly #projects = new Map<string, ProjectLog>();
  readonly #subscriptions = new Map<string, Subscription>();
  /** Every listener entry still subscribed. */
  readonly #live = new Set<MessageListener>();
  /** Messages awaiting delivery, each with the listeners subscribed when it was published. */
  readonly #queue: { payload: string; channel: string; listeners: MessageListener[] }[] = [];
  #lastId: string | null = null;
  #lastSweep = 0;
  #closed = false;

  #assertOpen(): void {
    if (this.#closed) throw new BrokerClosedError();
  }

  /** The project's log, or undefined when it has none or it expired. */
  #log(projectId: string, now: number): ProjectLog | undefined {
    const log = this.#projects.get(projectId);
    if (log && now >= log.expiresAt) {
      this.#projects.delete(projectId);
      return undefined;
    }
    return log;
  }

  /** Forgets expired projects now and then, as Redis's active expiry does, so idle projects do not pile up. */
  #sweep(now: number): void {
    if (now - this.#lastSweep < 1000) return;
    this.#lastSweep = now;
    for (const [projectId, log] of this.#projects) if (now >= log.expiresAt) this.#projects.delete(projectId);
  }

  #deliver(channel: string, payload: string): void {
    const listeners: MessageListener[] = [];
    for (const subscription of this.#subscriptions.values()) {
      if (subscription.match(channel)) listeners.push(...subscription.listeners);
    }
    if (listeners.length === 0) return;
    this.#queue.push({ payload, channel, listeners });
    // One drain for everything queued in this turn keeps publish order across channels.
    if (this.#queue.length === 1) queueMicrotask(() => this.#drain());
  }

  #drain(): void {
    for (let message = this.#queue.shift(); message; message = this.#queue.shift()) {
      for (const listener of message.listeners) {
        // A listener that left after the publish must not hear it, as with Redis once UNSUBSCRIBE is acknowledged.
        if (!this.#live.has(listener)) continue;
        try {
          listener(message.payload, message.channel);
        } catch (error) {
          this.#onListenerError(error);
        }
      }
    }
  }
}

/** A Redis glob (`*`, `?`, `[abc]`, `[^a-z]`, `\x`) as an anchored RegExp. */
export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i]!;
    if (char === '*') source += '[\\s\\S]*';
    else if (char === '?') source += '[\\s\\S]';
    else if (char === '\\' && i + 1 < glob.length) source += escapeRegExp(glob[++i]!);
    else if (char === '[' && glob.indexOf(']', i + 1) > i + 1) {
      const end = glob.indexOf(']', i + 1);
      let body = glob.slice(i + 1, end);
      const negate = body.startsWith('^');
      if (negate) body = body.slice(1);
      source += `[${negate ? '^' : ''}${body.replace(/[\\\]\[^]/g, '\\$&')}]`;
      i = end;
    } else source += escapeRegExp(char);
  }
  return new RegExp(`^${source}$`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(name, `${value} must be a positive integer`);
  return value;
}
