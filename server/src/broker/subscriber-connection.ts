/**
 * RedisBroker's connection for SUBSCRIBE, opened on first use. On one Redis, a duplicate of the command connection
 * that reconnects by itself. On a cluster, a connection to one node (any node hears every PUBLISH) that does not
 * reconnect: when it ends, the next one is opened on another node, so the subscriber fails over with the cluster.
 */
import { Cluster, Redis } from 'ioredis';
import { backoff, quit, subscriberOptions, type CommandClient } from './redis-connections.js';

export interface SubscriberConnectionOptions {
  /** The command connection: duplicated on one Redis; on a cluster, where the nodes and their credentials come from. */
  client: CommandClient;
  /** Every connection error, as the command connection's. */
  onError: (error: unknown) => void;
  /** A message on a subscribed channel. */
  onMessage: (channel: string, payload: string) => void;
  /** A message on a channel that a subscribed pattern matches. */
  onPatternMessage: (pattern: string, channel: string, payload: string) => void;
  /** The connection is ready, the first time or again, on the same node or a new one: subscribe everything now. */
  onReady: (subscriber: Redis) => void;
  /** The connection dropped while it was subscribed: messages published until it is back reach no listener. */
  onDrop: () => void;
  /** True while the connection is needed: something is subscribed, or a call waits for the connection. */
  needed: () => boolean;
}

export class SubscriberConnection {
  constructor(options: SubscriberConnectionOptions) {
    this.#options = options;
  }

  /** The connection as it is now, without opening one. */
  get current(): Redis | undefined {
    return this.#subscriber;
  }

  /** True while the connection is up with its subscriptions restored. */
  get subscribed(): boolean {
    return this.#subscribed;
  }

  /**
   * The connection, opened on first use. Undefined after close(), and on a cluster whose nodes are not known yet
   * (it is not ready): open it again once the cluster is.
   */
  open(): Redis | undefined {
    if (this.#subscriber || this.#closed) return this.#subscriber;
    const { client, onError, onMessage, onPatternMessage, onReady, onDrop } = this.#options;
    let subscriber: Redis;
    if (client instanceof Cluster) {
      const node = this.#nextNode(client);
      if (!node) return undefined;
      const { username, password, tls } = client.options.redisOptions ?? {};
      subscriber = new Redis({ ...subscriberOptions(), ...node, username, password, tls, retryStrategy: () => null });
      subscriber.on('end', () => this.#replace(subscriber));
    } else {
      subscriber = client.duplicate(subscriberOptions());
    }
    subscriber.on('error', onError);
    subscriber.on('message', onMessage);
    subscriber.on('pmessage', onPatternMessage);
    subscriber.on('ready', () => {
      this.#subscribed = true;
      this.#failures = 0;
      onReady(subscriber);
    });
    subscriber.on('close', () => {
      if (!this.#subscribed) return;
      this.#subscribed = false;
      if (!this.#closed) onDrop();
    });
    this.#subscriber = subscriber;
    return subscriber;
  }

  /** Quits the connection; no other is opened from now on. Idempotent. */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#replaceTimer);
    if (this.#subscriber) await quit(this.#subscriber, timeoutMs);
  }

  readonly #options: SubscriberConnectionOptions;
  #subscriber: Redis | undefined;
  #subscribed = false;
  /** Cluster only: how many connections in a row failed (the backoff), and which node is next. */
  #failures = 0;
  #node = 0;
  #replaceTimer: NodeJS.Timeout | undefined;
  #closed = false;

  /**
   * The cluster node the next connection goes to: every node hears every PUBLISH, so any will do. Round robin
   * over the nodes the cluster knows (masters and replicas), so a node that went away is not tried twice in a row.
   */
  #nextNode(cluster: Cluster): { host: string; port: number } | undefined {
    const nodes = cluster
      .nodes('all')
      .map(({ options: { host, port } }) => ({ host: host ?? '127.0.0.1', port: port ?? 6379 }))
      .sort((a, b) => `${a.host}:${a.port}`.localeCompare(`${b.host}:${b.port}`));
    if (nodes.length === 0) return undefined;
    return nodes[this.#node++ % nodes.length];
  }

  /**
   * Cluster only: the connection ended (its node went away, or refused it). Open the next one on another node,
   * after a backoff; its 'ready' restores the subscriptions. Its 'close' already reported the drop. While nothing
   * needs it, none is opened until something does.
   */
  #replace(ended: Redis): void {
    if (this.#closed || this.#subscriber !== ended) return;
    if (!this.#options.needed()) {
      this.#subscriber = undefined;
      return;
    }
    clearTimeout(this.#replaceTimer);
    this.#replaceTimer = setTimeout(() => {
      if (this.#closed || this.#subscriber !== ended) return;
      this.#subscriber = undefined;
      this.open();
    }, backoff(this.#failures++));
  }
}
