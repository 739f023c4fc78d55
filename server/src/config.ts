/** The server's settings, read from the environment in one place (only the entry point calls this). */
import { DEFAULT_PREFIX, ID_PATTERN } from './channels.js';
import { parseClusterNodes, type RedisClusterSettings } from './broker/redis-broker.js';

export interface ServerConfig {
  port: number;
  host: string;
  /** Unset: try redis://127.0.0.1:6379, else the embedded broker. Set: use it, never fall back. */
  redisUrl: string | undefined;
  /** `REDIS_CLUSTER_NODES`: a Redis Cluster instead of one Redis (not with `REDIS_URL`); never falls back either. */
  redisCluster: RedisClusterSettings | undefined;
  authSecret: string | undefined;
  heartbeatMs: number;
  retryMs: number;
  prefix: string;
  /** Serve the unauthenticated stream endpoints. */
  publicStreams: boolean;
  /** Serve `execute_stage` (the mock publisher) and the demo-only endpoints. */
  demoEnabled: boolean;
  maxStreams: number;
  maxStreamsPerClient: number;
  maxBufferBytes: number;
  logMaxLen: number;
  logTtlSeconds: number;
  logLevel: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new ConfigError(`${name} must be an integer >= ${min}, got "${raw}"`);
  return value;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}

export function readConfig(env: Env = process.env): ServerConfig {
  const production = env.NODE_ENV === 'production';
  const prefix = env.CHANNEL_PREFIX || DEFAULT_PREFIX;
  if (!ID_PATTERN.test(prefix)) throw new ConfigError(`CHANNEL_PREFIX must match ${ID_PATTERN}, got "${prefix}"`);
  let redisCluster: RedisClusterSettings | undefined;
  if (env.REDIS_CLUSTER_NODES) {
    if (env.REDIS_URL) throw new ConfigError('set REDIS_URL (one Redis) or REDIS_CLUSTER_NODES (a cluster), not both');
    try {
      redisCluster = parseClusterNodes(env.REDIS_CLUSTER_NODES);
    } catch (error) {
      throw new ConfigError(`REDIS_CLUSTER_NODES: ${(error as Error).message}`);
    }
  }
  return {
    port: int(env, 'PORT', 8000),
    host: env.HOST || '127.0.0.1',
    redisUrl: env.REDIS_URL || undefined,
    redisCluster,
    authSecret: env.SSE_AUTH_SECRET || undefined,
    heartbeatMs: int(env, 'SSE_HEARTBEAT_MS', 15_000, 1),
    retryMs: int(env, 'SSE_RETRY_MS', 3_000),
    prefix,
    publicStreams: bool(env, 'SSE_PUBLIC_STREAMS', true),
    demoEnabled: bool(env, 'SSE_ENABLE_DEMO', !production),
    maxStreams: int(env, 'SSE_MAX_STREAMS', 20_000, 1),
    maxStreamsPerClient: int(env, 'SSE_MAX_STREAMS_PER_CLIENT', 64, 1),
    maxBufferBytes: int(env, 'SSE_MAX_BUFFER_BYTES', 1024 * 1024, 1024),
    logMaxLen: int(env, 'SSE_LOG_MAX_LEN', 1000, 1),
    logTtlSeconds: int(env, 'SSE_LOG_TTL_SECONDS', 86_400, 1),
    logLevel: env.LOG_LEVEL || 'info',
  };
}
