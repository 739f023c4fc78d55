/**
 * The Broker on Redis (ioredis): publish.lua logs and publishes in one atomic step, a stream per project
 * is the replay log, a hash per project the latest state, and PUBLISH/SUBSCRIBE carries the live messages.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import type { Broker, LogEntry, MessageListener, ReplayResult, Snapshot, Unsubscribe } from './broker.js';
import { BrokerClosedError, BrokerUnavailableError, InvalidArgumentError } from './errors.js';
import { checkPublishArguments, isLogId, withId } from './log-id.js';
import { DEFAULT_PREFIX, isValidId, logKey, stageChannel, stateKey } from '../channels.js';

export interface RedisBrokerOptions {
  /** Redis to connect to, e.g. `redis://127.0.0.1:6379`. Ignored when `client` is given. Default: ioredis's default (localhost:6379). */
  url?: string;
  /**
   * A connection to use for commands instead of opening one. It stays the caller's: `close()` does not quit it.
   * The broker's guarantees about unsent commands need it to be created with {@link RedisBroker.connectionOptions}.
   */
  client?: Redis;
  /** First part of every key and channel name. Default `ai_story`. */
  prefix?: string;
  /** Entries kept in each project's replay log (exact trimming). Default 1000. */
  logMaxLen?: number;
  /** Seconds the replay log and the state of a project live after its last message. Default 86400. */
  logTtlSeconds?: number;
  /**
   * The bound, in milliseconds, on every command: the time to wait for a connection that is down,
   * plus the time to wait for Redis's answer. Default 5000.
   */
  commandTimeoutMs?: number;
  /** Called when a message listener throws; the other listeners still get the message. Default: `console.error`. */
  onListenerError?: (error: unknown) => void;
}

/** The publish step, loaded from disk once: Node and Python run the very same file. */
const PUBLISH_LUA = readFileSync(new URL('./publish.lua', import.meta.url), 'utf8');
const PUBLISH_SHA = createHash('sha1').update(PUBLISH_LUA).digest('hex');

interface Subscription {
  readonly name: string;
  readonly pattern: boolean;
  /** One entry per `subscribe()` call, so one function subscribed twice is called twice. */
  readonly listeners: Set<MessageListener>;
  /** Settles when Redis has acknowledged the subscription. */
  active: Promise<void>;
}

/**
 * A {@link Broker} on Redis.
 *
 * Connections: one for commands, opened at construction; a second for SUBSCRIBE, opened on the first
 * `subscribe()`, so a publisher-only process holds one connection.
 *
 * Outages: ioredis reconnects forever (backoff capped at 2 s); `healthy` is false meanwhile. Subscriptions are
 * restored from the broker's own table on every reconnect, so a channel whose last listener left during the
 * outage is not resurrected. Messages published while the subscriber connection was down are not redelivered
 * live; they are in the replay log.
 *
 * Never queues: no command waits in an offline queue. Every call either completes or rejects within
 * `commandTimeoutMs` with {@link BrokerUnavailableError} (`sent: false` when the command never left the
 * process, `true` when Redis may have executed it but no answer arrived), or {@link BrokerClosedError} after `close()`.
 */
export class RedisBroker implements Broker {
  /** The options the broker's own connections use; give them to a `client` you pass in. */
  static readonly connectionOptions: RedisOptions = {
    // Commands never wait in a queue that could send them after the caller was told they failed...
    enableOfflineQueue: false,
    // ...and commands in flight when the connection drops are failed at once, never resent.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000) + Math.floor(Math.random() * 100),
  };

  readonly kind = 'redis' as const;
  readonly prefix: string;

  constructor(options: RedisBrokerOptions = {}) {
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.#logMaxLen = positiveInteger('logMaxLen', options.logMaxLen ?? 1000);
    this.#logTtlSeconds = positiveInteger('logTtlSeconds', options.logTtlSeconds ?? 86_400);
    this.#timeoutMs = positiveInteger('commandTimeoutMs', options.commandTimeoutMs ?? 5000);
    this.#onListenerError = options.onListenerError ?? ((error) => console.error('[broker] a message listener threw:', error));
    this.#ownsClient = !options.client;
    this.#client =
      options.client ??
      new Redis(options.url ?? 'redis://127.0.0.1:6379', { ...RedisBroker.connectionOptions, connectionName: 'ai-story-sse:commands' });
    this.#client.on('error', this.#onConnectionError);
    this.#client.on('ready', this.#onClientReady);
  }

  get healthy(): boolean {
    return !this.#closed && this.#client.status === 'ready' && (!this.#subscriber || this.#subscriber.status === 'ready');
  }

  /**
   * Runs publish.lua: XADD to the log, HSET of the state, EXPIRE of both, PUBLISH of the id-ful text, atomically.
   * Throws {@link InvalidArgumentError} before sending anything for a bad id or message; rejects within
   * `commandTimeoutMs` with {@link BrokerUnavailableError} when Redis is down or silent: never queued, never lost silently.
   */
  async publish(projectId: string, stage: string, message: string): Promise<string> {
    const type = checkPublishArguments(projectId, stage, message);
    const keys = [logKey(this.prefix, projectId), stateKey(this.prefix, projectId)];
    const args = [stageChannel(this.prefix, projectId, stage), stage, type, message, this.#logMaxLen, this.#logTtlSeconds];
    const id = await this.#run(this.#client, async (client) => {
      try {
        return await client.evalsha(PUBLISH_SHA, keys.length, ...keys, ...args);
      } catch (error) {
        // The script cache is empty after a Redis restart or SCRIPT FLUSH: send the script itself once.
        if (error instanceof ReplyError && String((error as Error).message).startsWith('NOSCRIPT')) {
          return await client.eval(PUBLISH_LUA, keys.length, ...keys, ...args);
        }
        throw error;
      }
    });
    return String(id);
  }

  async publishRaw(channel: string, payload: string): Promise<void> {
    await this.#run(this.#client, (client) => client.publish(channel, payload));
  }

  async replay(projectId: string, afterId: string): Promise<ReplayResult> {
    // Garbage never reaches Redis: it simply is not in the log.
    if (!isValidId(projectId) || !isLogId(afterId)) return { covered: false, entries: [] };
    const key = logKey(this.prefix, projectId);
    // One transaction, so the existence check and the range agree even while others publish or trim.
    const [found, after] = await this.#transaction((multi) => multi.xrange(key, afterId, afterId).xrange(key, `(${afterId}`, '+'));
    if (!Array.isArray(found) || found.length === 0) return { covered: false, entries: [] };
    return { covered: true, entries: toEntries(after) };
  }

  async snapshot(projectId: string): Promise<Snapshot> {
    if (!isValidId(projectId)) return { lastId: null, stages: {} };
    const [hash, newest] = await this.#transaction((multi) =>
      multi.hgetall(stateKey(this.prefix, projectId)).xrevrange(logKey(this.prefix, projectId), '+', '-', 'COUNT', 1),
    );
    const stages: Snapshot['stages'] = {};
    for (const [field, data] of Object.entries((hash ?? {}) as Record<string, string>)) {
      // Stage names never contain "|", so the first one separates the stage from the type.
      const bar = field.indexOf('|');
      if (bar < 0) continue;
      (stages[field.slice(0, bar)] ??= {})[field.slice(bar + 1)] = data;
    }
    return { lastId: toEntries(newest)[0]?.id ?? null, stages };
  }

  async subscribe(channelOrPattern: string, listener: MessageListener, pattern = false): Promise<Unsubscribe> {
    if (this.#closed) throw new BrokerClosedError();
    const key = subscriptionKey(channelOrPattern, pattern);
    let subscription = this.#subscriptions.get(key);
    if (!subscription) {
      const created: Subscription = { name: channelOrPattern, pattern, listeners: new Set(), active: Promise.resolve() };
      created.active = this.#run(this.#subscriberConnection(), (connection) =>
        pattern ? connection.psubscribe(channelOrPattern) : connection.subscribe(channelOrPattern),
      ).then(() => {});
      this.#subscriptions.set(key, created);
      subscription = created;
    }
    const entry: MessageListener = (payload, channel) => listener(payload, channel);
    subscription.listeners.add(entry);
    try {
      await subscription.active;
    } catch (error) {
      void this.#leave(key, subscription, entry);
      throw error;
    }
    let left = false;
    return async () => {
      if (left) return;
      left = true;
      await this.#leave(key, subscription, entry);
    };
  }

  async ping(): Promise<void> {
    await this.#run(this.#client, (client) => client.ping());
  }

  /** Quits the connections the broker opened (not a `client` it was given). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return this.#closing;
    this.#closed = true;
    this.#subscriptions.clear();
    for (const waiter of [...this.#waiters]) waiter.settle(new BrokerClosedError());
    const connections = [this.#subscriber, this.#ownsClient ? this.#client : undefined].filter((c): c is Redis => !!c);
    this.#closing = Promise.all(connections.map((connection) => quit(connection, this.#timeoutMs))).then(() => {
      this.#client.off('error', this.#onConnectionError);
      this.#client.off('ready', this.#onClientReady);
    });
    return this.#closing;
  }

  readonly #client: Redis;
  readonly #ownsClient: boolean;
  readonly #logMaxLen: number;
  readonly #logTtlSeconds: number;
  readonly #timeoutMs: number;
  readonly #onListenerError: (error: unknown) => void;
  readonly #subscriptions = new Map<string, Subscription>();
  /** Calls waiting for a connection to be ready. */
  readonly #waiters = new Set<Waiter>();
  readonly #interruptionListeners = new Set<() => void>();
  #subscriber: Redis | undefined;
  /** True while the subscriber connection is up with its subscriptions restored. */
  #subscribed = false;
  #lastError: unknown;
  #closed = false;
  #closing: Promise<void> = Promise.resolve();

  readonly #onClientReady = () => this.#wake(this.#client);

  readonly #onConnectionError = (error: unknown) => {
    // ioredis reports every failed reconnect here; keep the latest as the cause of BrokerUnavailableError.
    this.#lastError = error;
  };

  onInterruption(listener: () => void): () => void {
    this.#interruptionListeners.add(listener);
    return () => this.#interruptionListeners.delete(listener);
  }

  #subscriberConnection(): Redis {
    if (this.#subscriber) return this.#subscriber;
    const subscriber = this.#client.duplicate({
      ...RedisBroker.connectionOptions,
      // The broker restores subscriptions from its own table: ioredis's would resurrect channels left during an outage.
      autoResubscribe: false,
      connectionName: 'ai-story-sse:subscriber',
      lazyConnect: false,
    });
    subscriber.on('error', this.#onConnectionError);
    subscriber.on('message', (channel: string, payload: string) => this.#dispatch(subscriptionKey(channel, false), payload, channel));
    subscriber.on('pmessage', (pattern: string, channel: string, payload: string) =>
      this.#dispatch(subscriptionKey(pattern, true), payload, channel),
    );
    subscriber.on('ready', () => {
      this.#resubscribe(subscriber);
      this.#subscribed = true;
      this.#wake(subscriber);
    });
    subscriber.on('close', () => {
      if (!this.#subscribed) return;
      this.#subscribed = false;
      if (this.#closed || this.#subscriptions.size === 0) return;
      for (const listener of [...this.#interruptionListeners]) {
        try {
          listener();
        } catch (error) {
          this.#onListenerError(error);
        }
      }
    });
    this.#subscriber = subscriber;
    return subscriber;
  }

  #dispatch(key: string, payload: string, channel: string): void {
    const subscription = this.#subscriptions.get(key);
    if (!subscription) return;
    // A copy: a listener may unsubscribe (itself or another) while we iterate.
    for (const listener of [...subscription.listeners]) {
      try {
        listener(payload, channel);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  }

  /** On every (re)connect: subscribe again to everything the table holds. SUBSCRIBE is idempotent in Redis. */
  #resubscribe(subscriber: Redis): void {
    const channels: string[] = [];
    const patterns: string[] = [];
    for (const { name, pattern } of this.#subscriptions.values()) (pattern ? patterns : channels).push(name);
    // Failures need no handling: they mean the connection dropped again, and the next 'ready' retries.
    if (channels.length > 0) subscriber.subscribe(...channels).catch(() => {});
    if (patterns.length > 0) subscriber.psubscribe(...patterns).catch(() => {});
  }

  async #leave(key: string, subscription: Subscription, listener: MessageListener): Promise<void> {
    subscription.listeners.delete(listener);
    if (subscription.listeners.size > 0 || this.#subscriptions.get(key) !== subscription) return;
    this.#subscriptions.delete(key);
    const subscriber = this.#subscriber;
    // While the connection is down there is nothing to undo: Redis dropped the subscription with the connection,
    // and the reconnect only restores what the table holds. Commands on one connection run in order, so an
    // UNSUBSCRIBE sent now lands after a SUBSCRIBE still in flight.
    if (this.#closed || !subscriber || subscriber.status !== 'ready') return;
    const { name, pattern } = subscription;
    await this.#run(subscriber, (connection) => (pattern ? connection.punsubscribe(name) : connection.unsubscribe(name))).catch(() => {});
  }

  async #transaction(build: (multi: ReturnType<Redis['multi']>) => ReturnType<Redis['multi']>): Promise<unknown[]> {
    const results = await this.#run(this.#client, (client) => build(client.multi()).exec());
    if (!results) throw new BrokerUnavailableError('the transaction was aborted', { sent: true });
    return results.map(([error, value]) => {
      if (error) throw error;
      return value;
    });
  }

  /**
   * Runs one command (or transaction) within the time bound: waits for the connection to be ready,
   * then for the answer. Redis's own error replies pass through unchanged.
   */
  async #run<T>(connection: Redis, command: (connection: Redis) => Promise<T>): Promise<T> {
    if (this.#closed) throw new BrokerClosedError();
    const deadline = Date.now() + this.#timeoutMs;
    await this.#ready(connection, deadline);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new BrokerUnavailableError(`Redis did not answer within ${this.#timeoutMs} ms`, { sent: true })),
        Math.max(0, deadline - Date.now()),
      );
    });
    try {
      return await Promise.race([command(connection), timeout]);
    } catch (error) {
      if (error instanceof ReplyError || error instanceof BrokerUnavailableError) throw error;
      if (this.#closed) throw new BrokerClosedError();
      // ioredis fails a command in flight when the connection drops (maxRetriesPerRequest: 0).
      throw new BrokerUnavailableError(`the connection to Redis was lost: ${(error as Error).message}`, { sent: true, cause: error });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves when `connection` is ready; rejects at `deadline`, or at once on `close()`. */
  #ready(connection: Redis, deadline: number): Promise<void> {
    if (connection.status === 'ready') return Promise.resolve();
    if (connection.status === 'wait') connection.connect().catch(() => {});
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        connection,
        settle: (error) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          if (error) reject(error);
          else resolve();
        },
      };
      const timer = setTimeout(
        () =>
          waiter.settle(
            new BrokerUnavailableError(`Redis was unreachable for ${this.#timeoutMs} ms (connection ${connection.status}); nothing was sent`, {
              sent: false,
              cause: this.#lastError,
            }),
          ),
        Math.max(0, deadline - Date.now()),
      );
      this.#waiters.add(waiter);
    });
  }

  /** Called by the one 'ready' listener of each connection: wakes every call waiting for it. */
  #wake(connection: Redis): void {
    for (const waiter of [...this.#waiters]) if (waiter.connection === connection) waiter.settle();
  }
}

interface Waiter {
  readonly connection: Redis;
  settle(error?: Error): void;
}

function subscriptionKey(name: string, pattern: boolean): string {
  return `${pattern ? 'p' : 'c'}:${name}`;
}

/** XRANGE replies (`[id, [field, value, ...]][]`) to log entries, the data rebuilt as the live channel carried it. */
function toEntries(reply: unknown): LogEntry[] {
  if (!Array.isArray(reply)) return [];
  return (reply as [string, string[]][]).map(([id, fields]) => {
    let stage = '';
    let data = '{}';
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (fields[i] === 'stage') stage = fields[i + 1]!;
      else if (fields[i] === 'data') data = fields[i + 1]!;
    }
    return { id, stage, data: withId(data, id) };
  });
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(name, `${value} must be a positive integer`);
  return value;
}

/** QUIT when connected (pending replies still arrive), else drop the connection; resolves once the socket is gone. */
async function quit(connection: Redis, timeoutMs: number): Promise<void> {
  if (connection.status === 'ready') {
    await connection.quit().catch(() => connection.disconnect());
  } else {
    connection.disconnect();
  }
  // Between two reconnect attempts there is no socket to wait for, and ioredis emits no 'end' then.
  if (connection.status === 'end' || connection.status === 'reconnecting') return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      connection.off('end', done);
      resolve();
    }
    connection.once('end', done);
  });
}
