/**
 * The Broker on Redis (ioredis): publish.lua logs and publishes in one atomic step, a stream per project
 * is the replay log, a hash per project the latest state, and PUBLISH/SUBSCRIBE carries the live messages.
 * Runs on one Redis or on a Redis Cluster (see {@link RedisBrokerOptions.cluster}).
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Cluster, Redis, ReplyError, type ChainableCommander, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Broker, LogEntry, MessageListener, ReplayOptions, ReplayResult, Snapshot, Unsubscribe } from './broker.js';
import { BrokerClosedError, BrokerUnavailableError, InvalidArgumentError } from './errors.js';
import { checkPublishArguments, checkReplayLimit, isLogId, withId } from './log-id.js';
import { DEFAULT_PREFIX, checkPrefix, isValidId, logKey, projectPattern, stageChannel, stateKey } from '../channels.js';

/** A Redis Cluster to connect to. */
export interface RedisClusterSettings {
  /** Startup nodes: any reachable node is enough, the others are discovered. */
  nodes: readonly { host: string; port: number }[];
  /** ACL user and password of every node. */
  username?: string;
  password?: string;
  /** Connect to every node with TLS. Default false. */
  tls?: boolean;
}

/**
 * Reads `REDIS_CLUSTER_NODES`: comma-separated startup nodes, each `host:port` or a `redis://` / `rediss://` URL.
 * Credentials and TLS of URL entries apply to every node (a cluster has one password). Throws a TypeError
 * that says what is wrong.
 */
export function parseClusterNodes(text: string): RedisClusterSettings {
  const settings: RedisClusterSettings = { nodes: [] };
  const nodes: { host: string; port: number }[] = [];
  for (const entry of text.split(',').map((part) => part.trim()).filter(Boolean)) {
    let url: URL;
    try {
      url = new URL(/^rediss?:\/\//.test(entry) ? entry : `redis://${entry}`);
    } catch {
      throw new TypeError(`"${entry}" is neither host:port nor a redis:// URL`);
    }
    const port = Number(url.port || 6379);
    if (!url.hostname || !Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`"${entry}" has no valid host and port`);
    // URL keeps the brackets of an IPv6 literal; ioredis wants the bare address.
    nodes.push({ host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port });
    if (url.username) settings.username = decodeURIComponent(url.username);
    if (url.password) settings.password = decodeURIComponent(url.password);
    if (url.protocol === 'rediss:') settings.tls = true;
  }
  if (nodes.length === 0) throw new TypeError('lists no node; give host:port[,host:port...]');
  return { ...settings, nodes };
}

export interface RedisBrokerOptions {
  /** Redis to connect to, e.g. `redis://127.0.0.1:6379`. Ignored when `client` is given. Default: ioredis's default (localhost:6379). */
  url?: string;
  /**
   * A Redis Cluster instead of one Redis (not with `url` or `client`). A project's log and state share a hash
   * slot (see `logKey` in channels.ts), so publish.lua runs on the master that owns it; live messages use
   * classic PUBLISH/SUBSCRIBE, which the cluster forwards to every node, on a connection of the broker's own.
   */
  cluster?: RedisClusterSettings;
  /**
   * A connection (a `Redis`, or a `Cluster`) to use for commands instead of opening one. It stays the caller's:
   * `close()` does not quit it. The broker's guarantees about unsent commands need it to be created with
   * {@link RedisBroker.connectionOptions} (a `Redis`) or {@link RedisBroker.clusterOptions} (a `Cluster`).
   */
  client?: Redis | Cluster;
  /** First part of every key and channel name; follows the id rule (`ID_RULE` in channels.ts). Default `ai_story`. */
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

/** The connection that runs commands: one Redis, or a Cluster that routes each command to the master of its slot. */
type CommandClient = Redis | Cluster;

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

/** One `subscribe()` call's place among the listeners of a subscription. */
interface Membership {
  /** Settles when Redis has acknowledged the subscription the listener belongs to. */
  readonly active: Promise<void>;
  /** Removes the listener; unsubscribes (and resolves once Redis has answered) when it was the last. */
  leave(): Promise<void>;
}

/**
 * A {@link Broker} on Redis.
 *
 * Connections: one for commands, opened at construction; a second for SUBSCRIBE, opened on the first
 * `subscribe()`, so a publisher-only process holds one connection. On a cluster, commands go through an
 * ioredis `Cluster` (one connection per master), and the subscriber is one plain connection to one node of the
 * cluster (any node hears every PUBLISH); when that node goes away, the broker moves it to another node.
 *
 * Subscriptions: one SUBSCRIBE per channel, and at most one PSUBSCRIBE for all project patterns (routed to
 * each project's listeners in the process), so what a PUBLISH costs Redis does not grow with watched projects.
 *
 * Outages: ioredis reconnects forever (backoff capped at 2 s); `healthy` is false meanwhile. Subscriptions are
 * restored from the broker's own table on every reconnect, so a channel whose last listener left during the
 * outage is not resurrected. Messages published while the subscriber connection was down are not redelivered
 * live; they are in the replay log.
 *
 * Never queues: no command waits in an offline queue. Every call either completes or rejects within
 * `commandTimeoutMs` with {@link BrokerUnavailableError} (`sent: false` when the command never left the
 * process, `true` when Redis may have executed it but no answer arrived), or {@link BrokerClosedError} after `close()`.
 * On a cluster one exception: a command whose master's connection is still being opened waits for it in
 * ioredis (at most `commandTimeoutMs` more); a call that timed out meanwhile says `sent: true`, as it may still run.
 * A command whose connection dropped is never resent there either.
 */
export class RedisBroker implements Broker {
  /** The options the broker's own connections use; give them to a `client` you pass in. */
  static readonly connectionOptions: RedisOptions = {
    // Commands never wait in a queue that could send them after the caller was told they failed...
    enableOfflineQueue: false,
    // ...and commands in flight when the connection drops are failed at once, never resent.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (attempt) => backoff(attempt),
  };

  /** The options the broker's own `Cluster` uses; give them to a `Cluster` you pass in as `client`. */
  static readonly clusterOptions: ClusterOptions = {
    // The cluster opens its connection to each master on first use; commands sent meanwhile must wait for it
    // (with `false`, all but the first would fail at once). The broker's time bound still applies to the call.
    enableOfflineQueue: true,
    // A command whose connection dropped may have run: never resend it. Redirections (MOVED, ASK) and
    // TRYAGAIN or CLUSTERDOWN answers are still followed: those commands did not run.
    retryDelayOnFailover: 0,
    clusterRetryStrategy: (attempt) => backoff(attempt),
    redisOptions: { maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false },
  };

  readonly kind = 'redis' as const;
  readonly prefix: string;

  constructor(options: RedisBrokerOptions = {}) {
    this.prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
    this.#logMaxLen = positiveInteger('logMaxLen', options.logMaxLen ?? 1000);
    this.#logTtlSeconds = positiveInteger('logTtlSeconds', options.logTtlSeconds ?? 86_400);
    this.#timeoutMs = positiveInteger('commandTimeoutMs', options.commandTimeoutMs ?? 5000);
    this.#onListenerError = options.onListenerError ?? ((error) => console.error('[broker] a message listener threw:', error));
    if (options.cluster && (options.url !== undefined || options.client)) {
      throw new InvalidArgumentError('cluster', 'give either cluster, url or client, not two of them');
    }
    if (options.cluster && options.cluster.nodes.length === 0) throw new InvalidArgumentError('cluster', 'nodes must list at least one node');
    this.#ownsClient = !options.client;
    this.#client = options.client ?? (options.cluster ? openCluster(options.cluster, this.#timeoutMs) : openRedis(options.url));
    if (this.#client instanceof Cluster) this.#fenceChannel = `${this.prefix}:fence:${randomUUID()}`;
    this.#client.on('error', this.#onConnectionError);
    this.#client.on('ready', this.#onClientReady);
  }

  get healthy(): boolean {
    if (this.#closed || this.#client.status !== 'ready') return false;
    // No subscriber connection is fine while nothing is subscribed (on a cluster, it can be missing between two nodes).
    return this.#subscriber ? this.#subscriber.status === 'ready' : this.#subscriptions.size === 0;
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
    const id = await this.#run('commands', async (client) => {
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
    await this.#run('commands', (client) => client.publish(channel, payload));
  }

  async replay(projectId: string, afterId: string, options: ReplayOptions = {}): Promise<ReplayResult> {
    const limit = checkReplayLimit(options.limit);
    // Garbage never reaches Redis: it simply is not in the log.
    if (!isValidId(projectId) || !isLogId(afterId)) return { covered: false, entries: [], more: false };
    const key = logKey(this.prefix, projectId);
    // One transaction, so the existence check and the range agree even while others publish or trim. Only a page
    // that is not full can end a replay, so only such a page waits for live delivery to catch up (see #readInStep).
    const [found, after] = await this.#readInStep(
      (multi) => multi.xrange(key, afterId, afterId).xrange(key, `(${afterId}`, '+', 'COUNT', limit),
      ([, page]) => !Array.isArray(page) || page.length < limit,
    );
    if (!Array.isArray(found) || found.length === 0) return { covered: false, entries: [], more: false };
    const entries = toEntries(after);
    return { covered: true, entries, more: entries.length === limit };
  }

  async snapshot(projectId: string): Promise<Snapshot> {
    if (!isValidId(projectId)) return { lastId: null, stages: Object.create(null) };
    const [hash, newest] = await this.#readInStep((multi) =>
      multi.hgetall(stateKey(this.prefix, projectId)).xrevrange(logKey(this.prefix, projectId), '+', '-', 'COUNT', 1),
    );
    // Prototype-less: the names come from Redis, and anyone who can write the hash chooses them.
    const stages: Snapshot['stages'] = Object.create(null);
    for (const [field, data] of Object.entries((hash ?? {}) as Record<string, string>)) {
      // Stage names never contain "|", so the first one separates the stage from the type.
      const bar = field.indexOf('|');
      if (bar < 0) continue;
      (stages[field.slice(0, bar)] ??= Object.create(null))[field.slice(bar + 1)] = data;
    }
    return { lastId: toEntries(newest)[0]?.id ?? null, stages };
  }

  /**
   * A project pattern of this broker's prefix (exactly `projectPattern(prefix, id)` for a valid id) gets no
   * PSUBSCRIBE of its own: all of them share one, `{prefix}:project:*:stage:*`, and the broker hands each message
   * to the listeners of its project. Any other channel or pattern is subscribed as given.
   */
  async subscribe(channelOrPattern: string, listener: MessageListener, pattern = false): Promise<Unsubscribe> {
    if (this.#closed) throw new BrokerClosedError();
    // One entry per call, so one function subscribed twice is called twice.
    const entry: MessageListener = (payload, channel) => listener(payload, channel);
    const projectId = pattern ? projectOfPattern(this.prefix, channelOrPattern) : undefined;
    const membership = projectId === undefined ? this.#join(channelOrPattern, pattern, entry) : this.#joinProject(projectId, entry);
    try {
      await membership.active;
    } catch (error) {
      void membership.leave();
      throw error;
    }
    let left = false;
    return async () => {
      if (left) return;
      left = true;
      await membership.leave();
    };
  }

  async ping(): Promise<void> {
    await this.#run('commands', (client) => client.ping());
  }

  /** Quits the connections the broker opened (not a `client` it was given). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return this.#closing;
    this.#closed = true;
    clearTimeout(this.#replaceTimer);
    this.#subscriptions.clear();
    this.#projectListeners.clear();
    this.#router = undefined;
    for (const waiter of [...this.#waiters]) waiter.settle(new BrokerClosedError());
    const connections = [this.#subscriber, this.#ownsClient ? this.#client : undefined].filter((c): c is CommandClient => !!c);
    this.#closing = Promise.all(connections.map((connection) => quit(connection, this.#timeoutMs))).then(() => {
      this.#client.off('error', this.#onConnectionError);
      this.#client.off('ready', this.#onClientReady);
    });
    return this.#closing;
  }

  readonly #client: CommandClient;
  readonly #ownsClient: boolean;
  readonly #logMaxLen: number;
  readonly #logTtlSeconds: number;
  readonly #timeoutMs: number;
  readonly #onListenerError: (error: unknown) => void;
  readonly #subscriptions = new Map<string, Subscription>();
  /** Project id -> the listeners of its project pattern, routed from the one shared pattern (see #joinProject). */
  readonly #projectListeners = new Map<string, Set<MessageListener>>();
  /** #route's place on the shared pattern's subscription, while any project has a listener. */
  #router: Membership | undefined;
  /** Calls waiting for a connection to be ready. */
  readonly #waiters = new Set<Waiter>();
  readonly #interruptionListeners = new Set<() => void>();
  #subscriber: Redis | undefined;
  /** True while the subscriber connection is up with its subscriptions restored. */
  #subscribed = false;
  /** Cluster only: how many subscriber connections in a row failed (the backoff), and which node is next. */
  #subscriberFailures = 0;
  #nextNode = 0;
  #replaceTimer: NodeJS.Timeout | undefined;
  /** Cluster only: the channel of this broker's fences (see #readInStep), and the fences waiting for their echo. */
  readonly #fenceChannel: string | undefined;
  readonly #fences = new Map<string, () => void>();
  #fenceCount = 0;
  #lastError: unknown;
  #closed = false;
  #closing: Promise<void> = Promise.resolve();

  readonly #onClientReady = () => {
    this.#wake('commands');
    // A cluster subscriber needs a node address, known once the cluster is ready: open it now if it is needed.
    if (!this.#subscriber && (this.#subscriptions.size > 0 || [...this.#waiters].some((waiter) => waiter.role === 'subscriber'))) {
      this.#subscriberConnection();
    }
  };

  readonly #onConnectionError = (error: unknown) => {
    // ioredis reports every failed reconnect here; keep the latest as the cause of BrokerUnavailableError.
    this.#lastError = error;
  };

  onInterruption(listener: () => void): () => void {
    this.#interruptionListeners.add(listener);
    return () => this.#interruptionListeners.delete(listener);
  }

  /**
   * The subscriber connection, opened on first use. On one Redis, a duplicate of the command connection that
   * reconnects by itself. On a cluster, a connection to one node that does not reconnect: when it ends, the
   * broker opens the next one on another node (see #replaceSubscriber). Undefined only on a cluster whose
   * nodes are not known yet (it is not ready); it is opened when the cluster gets ready.
   */
  #subscriberConnection(): Redis | undefined {
    if (this.#subscriber || this.#closed) return this.#subscriber;
    const options: RedisOptions = {
      ...RedisBroker.connectionOptions,
      // The broker restores subscriptions from its own table: ioredis's would resurrect channels left during an outage.
      autoResubscribe: false,
      connectionName: 'ai-story-sse:subscriber',
      lazyConnect: false,
    };
    let subscriber: Redis;
    if (this.#client instanceof Cluster) {
      const node = this.#nextSubscriberNode(this.#client);
      if (!node) return undefined;
      const { username, password, tls } = this.#client.options.redisOptions ?? {};
      subscriber = new Redis({ ...options, ...node, username, password, tls, retryStrategy: () => null });
      subscriber.on('end', () => this.#replaceSubscriber(subscriber));
    } else {
      subscriber = this.#client.duplicate(options);
    }
    subscriber.on('error', this.#onConnectionError);
    subscriber.on('message', (channel: string, payload: string) => {
      if (channel === this.#fenceChannel) this.#fences.get(payload)?.();
      else this.#dispatch(subscriptionKey(channel, false), payload, channel);
    });
    subscriber.on('pmessage', (pattern: string, channel: string, payload: string) =>
      this.#dispatch(subscriptionKey(pattern, true), payload, channel),
    );
    subscriber.on('ready', () => {
      this.#resubscribe(subscriber);
      this.#subscribed = true;
      this.#subscriberFailures = 0;
      this.#wake('subscriber');
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

  /**
   * The cluster node the next subscriber connection goes to: every node hears every PUBLISH, so any will do.
   * Round robin over the nodes the cluster knows (masters and replicas), so a node that went away is not tried
   * twice in a row.
   */
  #nextSubscriberNode(cluster: Cluster): { host: string; port: number } | undefined {
    const nodes = cluster
      .nodes('all')
      .map(({ options: { host, port } }) => ({ host: host ?? '127.0.0.1', port: port ?? 6379 }))
      .sort((a, b) => `${a.host}:${a.port}`.localeCompare(`${b.host}:${b.port}`));
    if (nodes.length === 0) return undefined;
    return nodes[this.#nextNode++ % nodes.length];
  }

  /**
   * Cluster only: the subscriber connection ended (its node went away, or refused it). Open the next one on
   * another node, after a backoff; its 'ready' restores the subscriptions. Its 'close' already reported the
   * interruption. Without subscriptions, the next `subscribe()` opens it.
   */
  #replaceSubscriber(ended: Redis): void {
    if (this.#closed || this.#subscriber !== ended) return;
    if (this.#subscriptions.size === 0 && ![...this.#waiters].some((waiter) => waiter.role === 'subscriber')) {
      this.#subscriber = undefined;
      return;
    }
    clearTimeout(this.#replaceTimer);
    this.#replaceTimer = setTimeout(() => {
      if (this.#closed || this.#subscriber !== ended) return;
      this.#subscriber = undefined;
      this.#subscriberConnection();
    }, backoff(this.#subscriberFailures++));
  }

  /** Adds `entry` to the table's subscription of `name`, creating it (and sending its SUBSCRIBE) for the first one. */
  #join(name: string, pattern: boolean, entry: MessageListener): Membership {
    const key = subscriptionKey(name, pattern);
    let subscription = this.#subscriptions.get(key);
    if (!subscription) {
      const created: Subscription = { name, pattern, listeners: new Set(), active: Promise.resolve() };
      created.active = this.#run('subscriber', (connection) =>
        pattern ? (connection as Redis).psubscribe(name) : (connection as Redis).subscribe(name),
      ).then(() => {});
      this.#subscriptions.set(key, created);
      subscription = created;
    }
    const held = subscription;
    held.listeners.add(entry);
    return { active: held.active, leave: () => this.#leave(key, held, entry) };
  }

  /**
   * A listener of one project's pattern. Redis matches every PUBLISH against every pattern of every client, so
   * a pattern per watched project made each PUBLISH cost O(watched projects), and anyone may open public
   * project-wide streams to made-up ids. Instead, all projects share one table entry, `{prefix}:project:*:stage:*`,
   * held by #route while any project has a listener: each PUBLISH costs Redis one pattern per process.
   * The entry is an ordinary one, so its acknowledgement (shared by every listener that joins while it is in
   * flight), its restoration on reconnect, the cluster's subscriber moves and the PUNSUBSCRIBE after the last
   * listener are those of any subscription.
   *
   * Trade-off: while any project-wide stream is open, this process receives every message of every project
   * under its prefix, and drops those of unwatched projects after parsing the channel name. A stage stream
   * (exact SUBSCRIBE) of a watched project still has its own channel, so its messages arrive twice, once for
   * each kind of listener, as they did with a pattern per project.
   */
  #joinProject(projectId: string, entry: MessageListener): Membership {
    let listeners = this.#projectListeners.get(projectId);
    if (!listeners) this.#projectListeners.set(projectId, (listeners = new Set()));
    listeners.add(entry);
    const router = (this.#router ??= this.#join(allProjectsPattern(this.prefix), true, this.#route));
    const held = listeners;
    return {
      active: router.active,
      leave: async () => {
        held.delete(entry);
        if (held.size === 0 && this.#projectListeners.get(projectId) === held) this.#projectListeners.delete(projectId);
        if (this.#projectListeners.size > 0 || this.#router !== router) return;
        this.#router = undefined;
        await router.leave();
      },
    };
  }

  /** The shared pattern's one listener: hands a message to the listeners of its channel's project, if any. */
  readonly #route: MessageListener = (payload, channel) => {
    const projectId = projectOfChannel(this.prefix, channel);
    const listeners = projectId === undefined ? undefined : this.#projectListeners.get(projectId);
    if (!listeners) return;
    // A copy: a listener may unsubscribe (itself or another) while we iterate.
    for (const listener of [...listeners]) {
      try {
        listener(payload, channel);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  };

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
    if (this.#fenceChannel) channels.push(this.#fenceChannel);
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
    await this.#run('subscriber', (connection) =>
      pattern ? (connection as Redis).punsubscribe(name) : (connection as Redis).unsubscribe(name),
    ).catch(() => {});
  }

  /**
   * A read of the log (one transaction) that resolves only once live delivery has caught up with it: every
   * message logged before the read has been dispatched to the listeners by then.
   *
   * Why: the hub holds live messages back while it replays, then drops those the replay covered. A message
   * that reaches the subscriber connection after the read returned would reach its client twice. On one Redis
   * that happens when Redis writes the read's reply before the subscriber's pending messages (both served in one
   * turn of its event loop): a PING sent on the subscriber connection after the read is answered after them.
   * On a cluster, the subscriber usually sits on another node than the project's master, and the messages travel
   * there over the cluster bus: a PUBLISH of a fence on this broker's own channel, in the same transaction on the
   * same master, travels the same ordered link after all of them. Rejects with {@link BrokerUnavailableError}
   * when the fence is not back within `commandTimeoutMs` (the hub then ends the stream; the client resumes again).
   *
   * `needsStep` says from the read's results whether to wait: a full replay page does not end a replay, and the
   * page that does (not full) waits, which covers every message logged before it, those of earlier pages included.
   */
  async #readInStep(
    build: (multi: ChainableCommander) => ChainableCommander,
    needsStep: (results: unknown[]) => boolean = () => true,
  ): Promise<unknown[]> {
    // Without a live subscription there is nothing to be in step with.
    if (!this.#subscribed) return this.#transaction(build);
    const channel = this.#fenceChannel;
    if (channel === undefined) {
      const results = await this.#transaction(build);
      if (needsStep(results)) await this.#run('subscriber', (subscriber) => subscriber.ping());
      return results;
    }
    const token = String(++this.#fenceCount);
    let timer: NodeJS.Timeout | undefined;
    const back = new Promise<void>((resolve, reject) => {
      this.#fences.set(token, resolve);
      timer = setTimeout(
        () => reject(new BrokerUnavailableError(`live delivery did not catch up with the log within ${this.#timeoutMs} ms`, { sent: true })),
        this.#timeoutMs,
      );
    });
    back.catch(() => {}); // awaited below, unless the read itself fails first
    try {
      const results = await this.#transaction((multi) => build(multi).publish(channel, token));
      // The fence went out with the read; when it is not waited for, its echo finds no waiter and is ignored.
      if (needsStep(results)) await back;
      return results;
    } finally {
      clearTimeout(timer);
      this.#fences.delete(token);
    }
  }

  async #transaction(build: (multi: ChainableCommander) => ChainableCommander): Promise<unknown[]> {
    // On a cluster every key of one transaction must be in one slot: the log and the state of a project are.
    const results = await this.#run('commands', (client) => build(client.multi()).exec());
    if (!results) throw new BrokerUnavailableError('the transaction was aborted', { sent: true });
    return results.map(([error, value]) => {
      if (error) throw error;
      return value;
    });
  }

  /**
   * Runs one command (or transaction) on the connection of `role` within the time bound: waits for the
   * connection to be ready, then for the answer. Redis's own error replies pass through unchanged.
   */
  async #run<T>(role: Role, command: (connection: CommandClient) => Promise<T>): Promise<T> {
    if (this.#closed) throw new BrokerClosedError();
    const deadline = Date.now() + this.#timeoutMs;
    const connection = await this.#ready(role, deadline);
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

  /** The connection of `role` as it is now, without opening one. */
  #current(role: Role): CommandClient | undefined {
    return role === 'commands' ? this.#client : this.#subscriber;
  }

  /**
   * Resolves with the connection of `role` once it is ready; rejects at `deadline`, or at once on `close()`.
   * By role, not by connection: on a cluster the subscriber connection that gets ready may be a new one.
   */
  #ready(role: Role, deadline: number): Promise<CommandClient> {
    const connection = role === 'commands' ? this.#client : this.#subscriberConnection();
    if (connection?.status === 'ready') return Promise.resolve(connection);
    if (connection?.status === 'wait') connection.connect().catch(() => {});
    return new Promise<CommandClient>((resolve, reject) => {
      const waiter: Waiter = {
        role,
        settle: (error) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          const ready = this.#current(role);
          if (error) reject(error);
          else if (ready) resolve(ready);
          else reject(new BrokerClosedError());
        },
      };
      const timer = setTimeout(() => {
        const status = this.#current(role)?.status ?? 'not opened';
        waiter.settle(
          new BrokerUnavailableError(`Redis was unreachable for ${this.#timeoutMs} ms (connection ${status}); nothing was sent`, {
            sent: false,
            cause: this.#lastError,
          }),
        );
      }, Math.max(0, deadline - Date.now()));
      this.#waiters.add(waiter);
    });
  }

  /** Called by the one 'ready' listener of each connection: wakes every call waiting for a connection of that role. */
  #wake(role: Role): void {
    for (const waiter of [...this.#waiters]) if (waiter.role === role) waiter.settle();
  }
}

type Role = 'commands' | 'subscriber';

interface Waiter {
  readonly role: Role;
  settle(error?: Error): void;
}

/** Reconnect delays: exponential from 100 ms, capped at 2 s, with jitter. */
function backoff(attempt: number): number {
  return Math.min(50 * 2 ** attempt, 2000) + Math.floor(Math.random() * 100);
}

function openRedis(url = 'redis://127.0.0.1:6379'): Redis {
  return new Redis(url, { ...RedisBroker.connectionOptions, connectionName: 'ai-story-sse:commands' });
}

function openCluster({ nodes, username, password, tls }: RedisClusterSettings, timeoutMs: number): Cluster {
  const { redisOptions } = RedisBroker.clusterOptions;
  return new Cluster(
    nodes.map(({ host, port }) => ({ host, port })),
    {
      ...RedisBroker.clusterOptions,
      redisOptions: {
        ...redisOptions,
        username,
        password,
        tls: tls ? {} : undefined,
        connectionName: 'ai-story-sse:commands',
        // A command waiting for its node's connection (see clusterOptions) waits no longer than a call does.
        connectTimeout: timeoutMs,
      },
    },
  );
}

function subscriptionKey(name: string, pattern: boolean): string {
  return `${pattern ? 'p' : 'c'}:${name}`;
}

/** The one pattern every project pattern of `prefix` is folded into: every stage channel of every project. */
function allProjectsPattern(prefix: string): string {
  return `${prefix}:project:*:stage:*`;
}

/** The project id when `pattern` is exactly `projectPattern(prefix, id)` for a valid id, else undefined. */
function projectOfPattern(prefix: string, pattern: string): string | undefined {
  const head = `${prefix}:project:`;
  const tail = ':stage:*';
  if (!pattern.startsWith(head) || !pattern.endsWith(tail)) return undefined;
  const id = pattern.slice(head.length, pattern.length - tail.length);
  return isValidId(id) && projectPattern(prefix, id) === pattern ? id : undefined;
}

/**
 * The project id of a channel `{prefix}:project:<id>:stage:<rest>`, else undefined. Ids hold no `:`, so the id
 * ends at the first `:` after the head. A channel matches `projectPattern(prefix, id)` exactly when this returns
 * `id`: the same messages reach a project's listeners as with a pattern of its own. The prefix is compared as a
 * string, so channels of another prefix that the shared glob may match are dropped here.
 */
function projectOfChannel(prefix: string, channel: string): string | undefined {
  const head = `${prefix}:project:`;
  if (!channel.startsWith(head)) return undefined;
  const end = channel.indexOf(':', head.length);
  return end > head.length && channel.startsWith(':stage:', end) ? channel.slice(head.length, end) : undefined;
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
async function quit(connection: CommandClient, timeoutMs: number): Promise<void> {
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
