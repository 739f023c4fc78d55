/**
 * Picks the broker as the contract says: REDIS_URL when set (never falling back), else a local Redis if one answers,
 * else the embedded one. REDIS_CLUSTER_NODES, when set, comes first, and never falls back either.
 */
import type { Broker } from './broker.js';
import type { RedisClusterSettings } from './cluster-nodes.js';
import { MemoryBroker } from './memory-broker.js';
import { RedisBroker } from './redis-broker.js';

export const LOCAL_REDIS_URL = 'redis://127.0.0.1:6379';

export interface BrokerChoice {
  broker: Broker;
  /** One line that says which broker runs and why. */
  reason: string;
}

export interface BrokerSettings {
  redisUrl: string | undefined;
  redisCluster?: RedisClusterSettings | undefined;
  prefix: string;
  logMaxLen: number;
  logTtlSeconds: number;
}

export async function chooseBroker(settings: BrokerSettings, probeTimeoutMs = 1000, localUrl = LOCAL_REDIS_URL): Promise<BrokerChoice> {
  const options = { prefix: settings.prefix, logMaxLen: settings.logMaxLen, logTtlSeconds: settings.logTtlSeconds };
  if (settings.redisCluster) {
    const broker = new RedisBroker({ ...options, cluster: settings.redisCluster });
    const reachable = await withTimeout(broker.ping(), probeTimeoutMs);
    const nodes = settings.redisCluster.nodes.map(({ host, port }) => `${host}:${port}`).join(',');
    return { broker, reason: `broker: redis cluster at ${nodes} (REDIS_CLUSTER_NODES)${reachable ? '' : ' — not answering yet; /healthz reports 503 until it does'}` };
  }
  if (settings.redisUrl) {
    const broker = new RedisBroker({ ...options, url: settings.redisUrl });
    const reachable = await withTimeout(broker.ping(), probeTimeoutMs);
    return { broker, reason: `broker: redis at ${redact(settings.redisUrl)} (REDIS_URL)${reachable ? '' : ' — not answering yet; /healthz reports 503 until it does'}` };
  }
  const local = new RedisBroker({ ...options, url: localUrl });
  if (await withTimeout(local.ping(), probeTimeoutMs)) return { broker: local, reason: `broker: redis at ${localUrl} (REDIS_URL unset, a local Redis answered)` };
  await local.close().catch(() => {});
  return {
    broker: new MemoryBroker(options),
    reason: `broker: embedded in-process broker (REDIS_URL unset and nothing answered at ${localUrl}); only this process's publishers reach its streams`,
  };
}

async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Hides the password of a Redis URL in logs. */
function redact(url: string): string {
  return url.replace(/\/\/([^@/]*):([^@/]*)@/, '//$1:***@');
}
