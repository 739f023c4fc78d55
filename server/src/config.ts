/** The server's settings, read from the environment in one place (only the entry point calls this). */
import { DEFAULT_PREFIX, ID_RULE, isValidId } from './channels.js';
import { parseClusterNodes, type RedisClusterSettings } from './broker/cluster-nodes.js';
import { DEFAULTS } from './defaults.js';
import { TrustedProxies } from './http/client-address.js';
import { parseOriginList } from './http/cors.js';
import type { TokenKeySource } from './http/token-keys.js';

export interface ServerConfig {
  /** `NODE_ENV=production`: public streams and the demo default to off. */
  production: boolean;
  port: number;
  host: string;
  /** Unset: try redis://127.0.0.1:6379, else the embedded broker. Set: use it, never fall back. */
  redisUrl: string | undefined;
  /** `REDIS_CLUSTER_NODES`: a Redis Cluster instead of one Redis (not with `REDIS_URL`); never falls back either. */
  redisCluster: RedisClusterSettings | undefined;
  authSecret: string | undefined;
  /** `SSE_AUTH_ISSUER` / `SSE_AUTH_AUDIENCE`: when set, a token's `iss` / `aud` must match. */
  authIssuer: string | undefined;
  authAudience: string | undefined;
  /**
   * Where the public keys of asymmetric tokens come from (`SSE_AUTH_PUBLIC_KEY_FILE`, `SSE_AUTH_JWKS_FILE` or
   * `SSE_AUTH_JWKS_URL`, with `SSE_AUTH_ALGORITHMS`); loaded and checked by `loadTokenKeys` before the server listens.
   */
  authKeySource: TokenKeySource | undefined;
  /** `SSE_AUTH_CLOCK_TOLERANCE_SECONDS`: skew allowed on public-key tokens' `exp`, `nbf` and `iat`. */
  authClockToleranceSeconds: number;
  /** `SSE_TRUSTED_PROXIES`: the proxies whose `X-Forwarded-For` names the client; undefined: none (the socket's address). */
  trustedProxies: TrustedProxies | undefined;
  /**
   * `Host` names the server answers (DNS-rebinding guard), lower case, without port; null: any.
   * Default: the loopback names when bound to a loopback address, else any. The loopback names are always in a list.
   */
  allowedHosts: string[] | null;
  /**
   * `SSE_CORS_ORIGINS`: the exact origins (`scheme://host[:port]`) whose pages may call the endpoints from a browser;
   * undefined: none (same-origin only).
   */
  corsOrigins: string[] | undefined;
  /** `SSE_HEALTH_TIMEOUT_MS`: how long `/healthz` waits for the broker before it answers 503. */
  healthTimeoutMs: number;
  /** `SSE_METRICS_PORT`: serve `/metrics` on this port only (on `metricsHost`), not on the public one. */
  metricsPort: number | undefined;
  metricsHost: string;
  /** Mock tasks that may run at once; more get 429 (see mock/mount-demo.ts). */
  maxDemoTasks: number;
  heartbeatMs: number;
  retryMs: number;
  prefix: string;
  /** Serve the unauthenticated stream endpoints. */
  publicStreams: boolean;
  /** Serve `execute_stage` (the mock publisher), the demo-only endpoints and the demo (mounted by server.ts, not mountSse). */
  demoEnabled: boolean;
  maxStreams: number;
  maxStreamsPerClient: number;
  /** Subscriptions one multiplexed connection may hold. */
  maxSubscriptions: number;
  maxBufferBytes: number;
  /** A resume replays at most this many log entries / bytes; beyond, it gets the current state (`reset`, `too_long`). */
  maxReplayEntries: number;
  maxReplayBytes: number;
  logMaxLen: number;
  logTtlSeconds: number;
  /** `SSE_LEASE_MS`: the lease of the mock stages' publishers (workers set their own). */
  leaseMs: number;
  /** `SSE_LEASE_REAP_MS`: how often the hub looks for expired worker leases. */
  leaseReapMs: number;
  logLevel: string;
}

/** The shortest HS256 secret accepted: 32 bytes, the hash's own size (RFC 7518, section 3.2). */
export const MIN_SECRET_BYTES = 32;

/** Why `secret` is too short for HS256 (`"is N bytes; at least 32 are needed for HS256"`), or undefined when it is long enough. */
export function secretTooShort(secret: string): string | undefined {
  const bytes = Buffer.byteLength(secret);
  return bytes < MIN_SECRET_BYTES ? `is ${bytes} bytes; at least ${MIN_SECRET_BYTES} are needed for HS256` : undefined;
}

/** Names of a loopback bind, the default `SSE_ALLOWED_HOSTS` there. */
export const LOOPBACK_HOSTS = ['127.0.0.1', 'localhost', '::1'];

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
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

/** `SSE_ALLOWED_HOSTS`: `*` for any, else comma-separated names (ports are ignored: the check is on the name). */
function allowedHosts(env: Env, host: string): string[] | null {
  const raw = env.SSE_ALLOWED_HOSTS?.trim();
  if (raw === undefined || raw === '') return isLoopback(host) ? [...new Set([...LOOPBACK_HOSTS, host])] : null;
  if (raw === '*') return null;
  const names = raw.split(',').map((name) => name.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1')).filter(Boolean);
  for (const name of names) {
    if (!/^[a-z0-9.:_-]{1,253}$/.test(name)) throw new ConfigError(`SSE_ALLOWED_HOSTS: "${name}" is not a host name (give names without scheme or path, or * for any)`);
  }
  if (names.length === 0) throw new ConfigError('SSE_ALLOWED_HOSTS lists no host; give names, or * for any');
  // The loopback names always pass: a rebinding page's Host is its own name, and local health checks say 127.0.0.1.
  return [...new Set([...names, ...LOOPBACK_HOSTS])];
}

function secret(env: Env): string | undefined {
  const value = env.SSE_AUTH_SECRET || undefined;
  const tooShort = value === undefined ? undefined : secretTooShort(value);
  if (tooShort) throw new ConfigError(`SSE_AUTH_SECRET ${tooShort} (e.g. openssl rand -base64 48)`);
  return value;
}

/** The public-key settings, or undefined when none is set; with keys, `iss` and `aud` must be checked. */
function keySource(env: Env): TokenKeySource | undefined {
  const source: TokenKeySource = {
    publicKeyFile: env.SSE_AUTH_PUBLIC_KEY_FILE || undefined,
    jwksFile: env.SSE_AUTH_JWKS_FILE || undefined,
    jwksUrl: env.SSE_AUTH_JWKS_URL || undefined,
    algorithms: env.SSE_AUTH_ALGORITHMS?.split(',').map((alg) => alg.trim()).filter(Boolean),
    jwksCacheSeconds: int(env, 'SSE_AUTH_JWKS_CACHE_SECONDS', DEFAULTS.jwksCacheSeconds, 1),
    jwksCooldownSeconds: int(env, 'SSE_AUTH_JWKS_COOLDOWN_SECONDS', DEFAULTS.jwksCooldownSeconds, 0),
  };
  const keys = [source.publicKeyFile && 'SSE_AUTH_PUBLIC_KEY_FILE', source.jwksFile && 'SSE_AUTH_JWKS_FILE', source.jwksUrl && 'SSE_AUTH_JWKS_URL'].filter(Boolean);
  if (keys.length === 0) {
    if (source.algorithms?.length) throw new ConfigError('SSE_AUTH_ALGORITHMS is set, but no public key: set SSE_AUTH_PUBLIC_KEY_FILE, SSE_AUTH_JWKS_FILE or SSE_AUTH_JWKS_URL');
    return undefined;
  }
  if (keys.length > 1) throw new ConfigError(`set one of SSE_AUTH_PUBLIC_KEY_FILE, SSE_AUTH_JWKS_FILE and SSE_AUTH_JWKS_URL, not ${keys.join(' and ')}`);
  // An identity provider's keys sign tokens for every application it serves: only iss + aud make one ours.
  const missing = [!env.SSE_AUTH_ISSUER && 'SSE_AUTH_ISSUER', !env.SSE_AUTH_AUDIENCE && 'SSE_AUTH_AUDIENCE'].filter(Boolean);
  if (missing.length > 0) {
    throw new ConfigError(`${keys[0]} needs ${missing.join(' and ')}: tokens signed by a key must name their issuer and this server as audience`);
  }
  return source;
}

/** `SSE_CORS_ORIGINS`: exact origins, comma-separated; `*` and anything that is not an origin refuse to start. */
function corsOrigins(env: Env): string[] | undefined {
  const raw = env.SSE_CORS_ORIGINS?.trim();
  if (!raw) return undefined;
  try {
    return parseOriginList(raw);
  } catch (error) {
    throw new ConfigError(`SSE_CORS_ORIGINS: ${(error as Error).message}`);
  }
}

function trustedProxies(env: Env): TrustedProxies | undefined {
  const raw = env.SSE_TRUSTED_PROXIES?.trim();
  if (!raw) return undefined;
  try {
    return TrustedProxies.parse(raw);
  } catch (error) {
    throw new ConfigError(`SSE_TRUSTED_PROXIES: ${(error as Error).message}`);
  }
}

export function readConfig(env: Env = process.env): ServerConfig {
  const production = env.NODE_ENV === 'production';
  const host = env.HOST || DEFAULTS.host;
  const prefix = env.CHANNEL_PREFIX || DEFAULT_PREFIX;
  if (!isValidId(prefix)) throw new ConfigError(`CHANNEL_PREFIX must be ${ID_RULE}, got "${prefix}"`);
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
    production,
    port: int(env, 'PORT', DEFAULTS.port),
    host,
    redisUrl: env.REDIS_URL || undefined,
    redisCluster,
    authSecret: secret(env),
    authIssuer: env.SSE_AUTH_ISSUER || undefined,
    authAudience: env.SSE_AUTH_AUDIENCE || undefined,
    authKeySource: keySource(env),
    authClockToleranceSeconds: int(env, 'SSE_AUTH_CLOCK_TOLERANCE_SECONDS', DEFAULTS.clockToleranceSeconds, 0),
    trustedProxies: trustedProxies(env),
    allowedHosts: allowedHosts(env, host),
    corsOrigins: corsOrigins(env),
    healthTimeoutMs: int(env, 'SSE_HEALTH_TIMEOUT_MS', DEFAULTS.healthTimeoutMs, 1),
    metricsPort: env.SSE_METRICS_PORT ? int(env, 'SSE_METRICS_PORT', 0, 0) : undefined,
    metricsHost: env.SSE_METRICS_HOST || DEFAULTS.metricsHost,
    maxDemoTasks: int(env, 'SSE_MAX_DEMO_TASKS', DEFAULTS.maxDemoTasks, 1),
    heartbeatMs: int(env, 'SSE_HEARTBEAT_MS', DEFAULTS.heartbeatMs, 1),
    retryMs: int(env, 'SSE_RETRY_MS', DEFAULTS.retryMs),
    prefix,
    // Production serves nobody without a token unless told to: public streams and the demo are opt-in there.
    publicStreams: bool(env, 'SSE_PUBLIC_STREAMS', !production),
    demoEnabled: bool(env, 'SSE_ENABLE_DEMO', !production),
    maxStreams: int(env, 'SSE_MAX_STREAMS', DEFAULTS.maxStreams, 1),
    maxStreamsPerClient: int(env, 'SSE_MAX_STREAMS_PER_CLIENT', DEFAULTS.maxStreamsPerClient, 1),
    maxSubscriptions: int(env, 'SSE_MAX_SUBSCRIPTIONS', DEFAULTS.maxSubscriptions, 1),
    maxBufferBytes: int(env, 'SSE_MAX_BUFFER_BYTES', DEFAULTS.maxBufferBytes, 1024),
    maxReplayEntries: int(env, 'SSE_MAX_REPLAY_ENTRIES', DEFAULTS.maxReplayEntries, 1),
    maxReplayBytes: int(env, 'SSE_MAX_REPLAY_BYTES', DEFAULTS.maxReplayBytes, 1024),
    logMaxLen: int(env, 'SSE_LOG_MAX_LEN', DEFAULTS.logMaxLen, 1),
    logTtlSeconds: int(env, 'SSE_LOG_TTL_SECONDS', DEFAULTS.logTtlSeconds, 1),
    leaseMs: int(env, 'SSE_LEASE_MS', DEFAULTS.leaseMs, 1),
    leaseReapMs: int(env, 'SSE_LEASE_REAP_MS', DEFAULTS.leaseReapMs, 1),
    logLevel: env.LOG_LEVEL || DEFAULTS.logLevel,
  };
}
