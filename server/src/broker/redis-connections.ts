/**
 * How RedisBroker's connections are made and ended: the ioredis options that keep a command from being queued
 * or resent behind the caller's back, the reconnect backoff, and opening and quitting one.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisClusterSettings } from './cluster-nodes.js';

/** The connection that runs commands: one Redis, or a Cluster that routes each command to the master of its slot. */
export type CommandClient = Redis | Cluster;

/** Reconnect delays: exponential from 100 ms, capped at 2 s, with jitter. */
export function backoff(attempt: number): number {
  return Math.min(50 * 2 ** attempt, 2000) + Math.floor(Math.random() * 100);
}

/** The options of every plain connection the broker opens (`RedisBroker.connectionOptions`). */
export const CONNECTION_OPTIONS: RedisOptions = {
  // Commands never wait in a queue that could send them after the caller was told they failed...
  enableOfflineQueue: false,
  // ...and commands in flight when the connection drops are failed at once, never resent.
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
  retryStrategy: (attempt) => backoff(attempt),
};

/** The options of the broker's own `Cluster` (`RedisBroker.clusterOptions`). */
export const CLUSTER_OPTIONS: ClusterOptions = {
  // The cluster opens its connection to each master on first use; commands sent meanwhile must wait for it
  // (with `false`, all but the first would fail at once). The broker's time bound still applies to the call.
  enableOfflineQueue: true,
  // A command whose connection dropped may have run: never resend it. Redirections (MOVED, ASK) and
  // TRYAGAIN or CLUSTERDOWN answers are still followed: those commands did not run.
  retryDelayOnFailover: 0,
  clusterRetryStrategy: (attempt) => backoff(attempt),
  redisOptions: { maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false },
};

/** The options of the subscriber connection: {@link CONNECTION_OPTIONS} as they are now, and its own. */
export function subscriberOptions(): RedisOptions {
  return {
    ...CONNECTION_OPTIONS,
    // The broker restores subscriptions from its own table: ioredis's would resurrect channels left during an outage.
    autoResubscribe: false,
    connectionName: 'ai-story-sse:subscriber',
    lazyConnect: false,
  };
}

export function openRedis(url = 'redis://127.0.0.1:6379'): Redis {
  return new Redis(url, { ...CONNECTION_OPTIONS, connectionName: 'ai-story-sse:commands' });
}

export function openCluster({ nodes, username, password, tls }: RedisClusterSettings, timeoutMs: number): Cluster {
  const { redisOptions } = CLUSTER_OPTIONS;
  return new Cluster(
    nodes.map(({ host, port }) => ({ host, port })),
    {
      ...CLUSTER_OPTIONS,
      redisOptions: {
        ...redisOptions,
        username,
        password,
        tls: tls ? {} : undefined,
        connectionName: 'ai-story-sse:commands',
        // A command waiting for its node's connection (see CLUSTER_OPTIONS) waits no longer than a call does.
        connectTimeout: timeoutMs,
      },
    },
  );
}

/** QUIT when connected (pending replies still arrive), else drop the connection; resolves once the socket is gone. */
export async function quit(connection: CommandClient, timeoutMs: number): Promise<void> {
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
