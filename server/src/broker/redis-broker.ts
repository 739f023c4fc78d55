/**
 * The Broker on Redis (ioredis): publish.lua logs and publishes in one atomic step, a stream per project
 * is the replay log, a hash per project the latest state, and PUBLISH/SUBSCRIBE carries the live messages.
 * Runs on one Redis or on a Redis Cluster (see {@link RedisBrokerOptions.cluster}).
 *
 * A facade over its parts: connection presets (redis-connections.ts), the command runner bounded in time
 * (command-runner.ts), the subscriber connection and its failover on a cluster (subscriber-connection.ts), the
 * listener table shared with the in-process broker (subscription-table.ts), and the replay fences (replay-fence.ts).
 */
import { randomUUID } from 'node:crypto';
import { Cluster, type ClusterOptions, type Redis, type RedisOptions } from 'ioredis';
import { checkPublishArguments, checkPublishControl, checkReplayLimit, checkTokenPiece, positiveInteger } from './arguments.js';
import type { ControlOp, ControlResult, LogEntry, MessageListener, PublishControl, ReplayOptions, ReplayResult, Snapshot, StageControlBroker, StageText, TokenPiece, Unsubscribe } from './broker.js';
import type { RedisClusterSettings } from './cluster-nodes.js';
import { CommandRunner } from './command-runner.js';
import { BrokerClosedError, InvalidArgumentError } from './errors.js';
import { compareLogIds, isLogId, withId } from './log-id.js';
import { controlArgument, publishScriptError, runPublishScript } from './publish-script.js';
import { CLUSTER_OPTIONS, CONNECTION_OPTIONS, openCluster, openRedis, quit, type CommandClient } from './redis-connections.js';
import { ReplayFence } from './replay-fence.js';
import { snapshotStages } from './state-field.js';
import { SubscriberConnection } from './subscriber-connection.js';
import { SubscriptionTable } from './subscription-table.js';
import { DEFAULT_PREFIX, checkPrefix, controlChannel, controlKey, isValidId, leaseIndexKey, logKey, stageChannel, stateKey, textKey, textsKey } from '../channels.js';
import { DEFAULTS } from '../defaults.js';

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
  /** Entries kept in each project's replay log (exact trimming). Default 1000 (`DEFAULTS.logMaxLen`). */
  logMaxLen?: number;
  /** Seconds the replay log and the state of a project live after its last message. Default 86400 (`DEFAULTS.logTtlSeconds`). */
  logTtlSeconds?: number;
  /**
   * The bound, in milliseconds, on every command: the time to wait for a connection that is down,
   * plus the time to wait for Redis's answer. Default 5000 (`DEFAULTS.commandTimeoutMs`).
   */
  commandTimeoutMs?: number;
  /** Called when a message listener throws; the other listeners still get the message. Default: `console.error`. */
  onListenerError?: (error: unknown) => void;
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
export class RedisBroker implements StageControlBroker {
  /** The options the broker's own connections use; give them to a `client` you pass in. */
  static readonly connectionOptions: RedisOptions = CONNECTION_OPTIONS;
  /** The options the broker's own `Cluster` uses; give them to a `Cluster` you pass in as `client`. */
  static readonly clusterOptions: ClusterOptions = CLUSTER_OPTIONS;

  readonly kind = 'redis' as const;
  readonly prefix: string;

  constructor(options: RedisBrokerOptions = {}) {
    this.prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
    this.#logMaxLen = positiveInteger('logMaxLen', options.logMaxLen ?? DEFAULTS.logMaxLen);
    this.#logTtlSeconds = positiveInteger('logTtlSeconds', options.logTtlSeconds ?? DEFAULTS.logTtlSeconds);
    this.#timeoutMs = positiveInteger('commandTimeoutMs', options.commandTimeoutMs ?? DEFAULTS.commandTimeoutMs);
    const onListenerError = options.onListenerError ?? ((error) => console.error('[broker] a message listener threw:', error));
    if (options.cluster && (options.url !== undefined || options.client)) {
      throw new InvalidArgumentError('cluster', 'give either cluster, url or client, not two of them');
    }
    if (options.cluster && options.cluster.nodes.length === 0) throw new InvalidArgumentError('cluster', 'nodes must list at least one node');
    this.#ownsClient = !options.client;
    const client = (this.#client = options.client ?? (options.cluster ? openCluster(options.cluster, this.#timeoutMs) : openRedis(options.url)));

    this.#runner = new CommandRunner({
      timeoutMs: this.#timeoutMs,
      current: (role) => (role === 'commands' ? client : this.#subscriber.current),
      open: (role) => (role === 'commands' ? client : this.#subscriber.open()),
    });
    this.#table = new SubscriptionTable({
      prefix: this.prefix,
      onListenerError,
      transport: {
        subscribe: async (name, pattern) => {
          await this.#runner.run('subscriber', (connection) =>
            pattern ? (connection as Redis).psubscribe(name) : (connection as Redis).subscribe(name),
          );
        },
        unsubscribe: async (name, pattern) => {
          // While the connection is down there is nothing to undo: Redis dropped the subscription with the
          // connection, and the reconnect only restores what the table holds. Commands on one connection run in
          // order, so an UNSUBSCRIBE sent now lands after a SUBSCRIBE still in flight.
          if (this.#runner.closed || this.#subscriber.current?.status !== 'ready') return;
          await this.#runner
            .run('subscriber', (connection) => (pattern ? (connection as Redis).punsubscribe(name) : (connection as Redis).unsubscribe(name)))
            .catch(() => {});
        },
      },
    });
    this.#subscriber = new SubscriberConnection({
      client,
      onError: this.#runner.onConnectionError,
      onMessage: (channel, payload) => {
        if (!this.#fence.echo(channel, payload)) this.#table.dispatch(channel, false, payload, channel);
      },
      onPatternMessage: (pattern, channel, payload) => this.#table.dispatch(pattern, true, payload, channel),
      onReady: (subscriber) => {
        this.#resubscribe(subscriber);
        this.#runner.wake('subscriber');
      },
      onDrop: () => {
        if (this.#table.size === 0) return;
        for (const listener of [...this.#interruptionListeners]) {
          try {
            listener();
          } catch (error) {
            onListenerError(error);
          }
        }
      },
      needed: () => this.#subscriberNeeded(),
    });
    this.#fence = new ReplayFence({
      runner: this.#runner,
      channel: client instanceof Cluster ? `${this.prefix}:fence:${randomUUID()}` : undefined,
      subscribed: () => this.#subscriber.subscribed,
      timeoutMs: this.#timeoutMs,
    });
    client.on('error', this.#runner.onConnectionError);
    client.on('ready', this.#onClientReady);
  }

  get healthy(): boolean {
    if (this.#runner.closed || this.#client.status !== 'ready') return false;
    // No subscriber connection is fine while nothing is subscribed (on a cluster, it can be missing between two nodes).
    const subscriber = this.#subscriber.current;
    return subscriber ? subscriber.status === 'ready' : this.#table.size === 0;
  }

  /**
   * Runs publish.lua: XADD to the log, HSET of the state, EXPIRE of both, PUBLISH of the id-ful text, atomically;
   * with `linear`, also the APPEND to the stage's text and the update of its length and last id.
   * Throws {@link InvalidArgumentError} before sending anything for a bad id, type, message or piece; rejects
   * with {@link TokenOffsetError} when the piece does not continue the stage's text (nothing written); rejects within
   * `commandTimeoutMs` with {@link BrokerUnavailableError} when Redis is down or silent: never queued, never lost silently.
   */
  async publish(projectId: string, stage: string, type: string, message: string, linear?: TokenPiece, control?: PublishControl): Promise<string> {
    checkPublishArguments(projectId, stage, type, message);
    if (control !== undefined) checkPublishControl(control);
    const keys = [logKey(this.prefix, projectId), stateKey(this.prefix, projectId)];
    const args: (string | number)[] = [stageChannel(this.prefix, projectId, stage), stage, type, message, this.#logMaxLen, this.#logTtlSeconds];
    if (linear !== undefined) {
      checkTokenPiece(linear);
      keys.push(textsKey(this.prefix, projectId), textKey(this.prefix, projectId, stage));
      args.push(linear.content, linear.offset);
      if (linear.wholeText || control !== undefined) args.push(linear.wholeText ?? '');
    }
    if (control !== undefined) {
      keys.push(controlKey(this.prefix, projectId));
      args.push(controlArgument(undefined, control));
    }
    try {
      return String(await this.#runner.run('commands', (client) => runPublishScript(client, keys, args)));
    } catch (error) {
      throw publishScriptError(error);
    }
  }

  /** See {@link StageControlBroker.control}: publish.lua with an `op`. */
  async control(projectId: string, stage: string, op: ControlOp, message: string, control: PublishControl = {}): Promise<ControlResult> {
    checkPublishArguments(projectId, stage, op === 'cancel' ? 'cancelled' : 'error', message);
    checkPublishControl(control);
    const keys = [logKey(this.prefix, projectId), stateKey(this.prefix, projectId), controlKey(this.prefix, projectId)];
    const type = op === 'cancel' ? 'cancelled' : op === 'reap' ? 'error' : 'heartbeat';
    const args = [stageChannel(this.prefix, projectId, stage), stage, type, message, this.#logMaxLen, this.#logTtlSeconds, controlArgument(op, control)];
    let reply: unknown;
    try {
      reply = await this.#runner.run('commands', (client) => runPublishScript(client, keys, args));
    } catch (error) {
      throw publishScriptError(error);
    }
    return controlResult(reply);
  }

  async indexLease(projectId: string, stage: string, deadline: number): Promise<void> {
    await this.#runner.run('commands', (client) => client.zadd(leaseIndexKey(this.prefix), deadline, `${projectId}|${stage}`));
  }

  async unindexLease(projectId: string, stage: string): Promise<void> {
    await this.#runner.run('commands', (client) => client.zrem(leaseIndexKey(this.prefix), `${projectId}|${stage}`));
  }

  async dueLeases(now: number, limit: number): Promise<{ projectId: string; stage: string }[]> {
    const members = (await this.#runner.run('commands', (client) => client.zrangebyscore(leaseIndexKey(this.prefix), '-inf', now, 'LIMIT', 0, limit))) as string[];
    return members.flatMap((member) => {
      const [projectId = '', stage = ''] = member.split('|');
      return isValidId(projectId) && isValidId(stage) ? [{ projectId, stage }] : [];
    });
  }

  async time(): Promise<number> {
    const [seconds, micros] = (await this.#runner.run('commands', (client) => client.time())) as [string | number, string | number];
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  controlChannel(projectId: string, stage: string): string {
    return controlChannel(this.prefix, projectId, stage);
  }

  /**
   * Reads the stages' names from the texts hash (HGETALL, or one stage as asked), then, in one transaction, each
   * stage's text and the id of its last token, so each text and its id agree even while others publish.
   */
  async texts(projectId: string, stage: string | null): Promise<Map<string, StageText>> {
    const texts = new Map<string, StageText>();
    // Garbage never reaches Redis: it has no text.
    if (!isValidId(projectId) || (stage !== null && !isValidId(stage))) return texts;
    const hash = textsKey(this.prefix, projectId);
    let stages: string[];
    if (stage === null) {
      const fields = (await this.#runner.run('commands', (client) => client.hgetall(hash))) as Record<string, string>;
      // A field without "|" is a stage's length; anyone who can write the hash chooses the names, so check them.
      stages = Object.keys(fields).filter((field) => !field.includes('|') && isValidId(field));
    } else {
      stages = [stage];
    }
    if (stages.length === 0) return texts;
    const results = await this.#runner.transaction((multi) => {
      for (const name of stages) multi.get(textKey(this.prefix, projectId, name)).hget(hash, `${name}|id`);
      return multi;
    });
    stages.forEach((name, i) => {
      const text = results[2 * i];
      const id = results[2 * i + 1];
      if (typeof text === 'string') texts.set(name, { text, id: typeof id === 'string' ? id : undefined });
    });
    return texts;
  }

  async replay(projectId: string, afterId: string, options: ReplayOptions = {}): Promise<ReplayResult> {
    const limit = checkReplayLimit(options.limit);
    // Garbage never reaches Redis: it simply is not in the log.
    if (!isValidId(projectId) || !isLogId(afterId)) return { covered: false, entries: [], more: false };
    const key = logKey(this.prefix, projectId);
    // One transaction, so the existence check and the range agree even while others publish or trim. Only a page
    // that is not full can end a replay, so only such a page waits for live delivery to catch up (see ReplayFence).
    const [found, after] = await this.#fence.readInStep(
      (multi) => multi.xrange(key, afterId, afterId).xrange(key, `(${afterId}`, '+', 'COUNT', limit),
      ([, page]) => !Array.isArray(page) || page.length < limit,
    );
    if (!Array.isArray(found) || found.length === 0) return { covered: false, entries: [], more: false };
    const entries = toEntries(after);
    return { covered: true, entries, more: entries.length === limit };
  }

  async snapshot(projectId: string): Promise<Snapshot> {
    if (!isValidId(projectId)) return { lastId: null, stages: Object.create(null) };
    const [hash, newest] = await this.#fence.readInStep((multi) =>
      multi.hgetall(stateKey(this.prefix, projectId)).xrevrange(logKey(this.prefix, projectId), '+', '-', 'COUNT', 1),
    );
    const stages = snapshotStages(Object.entries((hash ?? {}) as Record<string, string>));
    return { lastId: toEntries(newest)[0]?.id ?? null, stages };
  }

  /** See {@link SubscriptionTable.subscribe}: project patterns share one PSUBSCRIBE. */
  async subscribe(channelOrPattern: string, listener: MessageListener, pattern = false): Promise<Unsubscribe> {
    if (this.#runner.closed) throw new BrokerClosedError();
    return this.#table.subscribe(channelOrPattern, listener, pattern);
  }

  onInterruption(listener: () => void): () => void {
    this.#interruptionListeners.add(listener);
    return () => this.#interruptionListeners.delete(listener);
  }

  async ping(): Promise<void> {
    await this.#runner.run('commands', (client) => client.ping());
  }

  /** Quits the connections the broker opened (not a `client` it was given). Idempotent. */
  async close(): Promise<void> {
    if (this.#runner.closed) return this.#closing;
    this.#runner.close();
    this.#table.clear();
    this.#closing = Promise.all([
      this.#subscriber.close(this.#timeoutMs),
      this.#ownsClient ? quit(this.#client, this.#timeoutMs) : undefined,
    ]).then(() => {
      this.#client.off('error', this.#runner.onConnectionError);
      this.#client.off('ready', this.#onClientReady);
    });
    return this.#closing;
  }

  /** Redis stream ids, in their order (protocol/log-id.ts). */
  isId(value: unknown): value is string {
    return isLogId(value);
  }

  compareIds(a: string, b: string): number {
    return compareLogIds(a, b);
  }

  readonly #client: CommandClient;
  readonly #ownsClient: boolean;
  readonly #logMaxLen: number;
  readonly #logTtlSeconds: number;
  readonly #timeoutMs: number;
  readonly #runner: CommandRunner;
  readonly #table: SubscriptionTable;
  readonly #subscriber: SubscriberConnection;
  readonly #fence: ReplayFence;
  readonly #interruptionListeners = new Set<() => void>();
  #closing: Promise<void> = Promise.resolve();

  readonly #onClientReady = () => {
    this.#runner.wake('commands');
    // A cluster subscriber needs a node address, known once the cluster is ready: open it now if it is needed.
    if (!this.#subscriber.current && this.#subscriberNeeded()) this.#subscriber.open();
  };

  /** True while the subscriber connection is needed: something is subscribed, or a call waits for the connection. */
  #subscriberNeeded(): boolean {
    return this.#table.size > 0 || this.#runner.waiting('subscriber');
  }

  /** On every (re)connect: subscribe again to everything the table holds. SUBSCRIBE is idempotent in Redis. */
  #resubscribe(subscriber: Redis): void {
    const channels: string[] = [];
    const patterns: string[] = [];
    for (const { name, pattern } of this.#table.subscriptions()) (pattern ? patterns : channels).push(name);
    if (this.#fence.channel) channels.push(this.#fence.channel);
    // Failures need no handling: they mean the connection dropped again, and the next 'ready' retries.
    if (channels.length > 0) subscriber.subscribe(...channels).catch(() => {});
    if (patterns.length > 0) subscriber.psubscribe(...patterns).catch(() => {});
  }
}

/** publish.lua's `{outcome, value}` reply of an `op`. */
export function controlResult(reply: unknown): ControlResult {
  const [outcome, value] = Array.isArray(reply) ? (reply as unknown[]).map((part) => (part instanceof Buffer ? part.toString() : part)) : [String(reply)];
  const result: ControlResult = { outcome: String(outcome) };
  if (outcome === 'ok' || outcome === 'alive') result.deadline = Number(value);
  else if (outcome === 'finished') result.status = String(value);
  else if (value !== undefined && value !== '' && value !== 0) result.id = String(value);
  return result;
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
