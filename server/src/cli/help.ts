/** `ai-story-sse --help`: the command's usage and every environment variable the server reads, with its default. */
import { DEFAULT_PREFIX } from '../channels.js';
import { DEFAULTS } from '../defaults.js';

/** One environment variable: its name, its default as shown, and what it does in a line. */
export interface Setting {
  name: string;
  default: string;
  meaning: string;
}

/** Every variable config.ts reads (server/test/cli.test.ts checks that none is missing here or in the README). */
export const SETTINGS: readonly Setting[] = [
  { name: 'PORT', default: String(DEFAULTS.port), meaning: 'the port to listen on' },
  { name: 'HOST', default: DEFAULTS.host, meaning: 'the address to listen on (keep it private behind a proxy)' },
  { name: 'REDIS_URL', default: 'unset', meaning: 'the Redis to use; unset: redis://127.0.0.1:6379 if it answers, else an embedded broker' },
  { name: 'REDIS_CLUSTER_NODES', default: 'unset', meaning: 'a Redis Cluster instead: host:port,host:port (not with REDIS_URL)' },
  { name: 'NODE_ENV', default: 'unset', meaning: '"production" turns public streams and the demo off unless enabled explicitly' },
  { name: 'SSE_AUTH_SECRET', default: 'unset', meaning: 'HS256 secret of the stream tokens, at least 32 bytes (openssl rand -base64 48)' },
  { name: 'SSE_AUTH_PUBLIC_KEY_FILE', default: 'unset', meaning: 'a PEM public key or certificate that verifies RS256/ES256/EdDSA tokens' },
  { name: 'SSE_AUTH_JWKS_FILE', default: 'unset', meaning: 'a JWKS file of public keys, chosen by the token\'s kid' },
  { name: 'SSE_AUTH_JWKS_URL', default: 'unset', meaning: 'a JWKS URL (https), fetched at start and cached, for providers that rotate keys' },
  { name: 'SSE_AUTH_ALGORITHMS', default: "the keys' own", meaning: 'the asymmetric algorithms accepted, e.g. RS256,ES256,EdDSA' },
  { name: 'SSE_AUTH_ISSUER', default: 'unset', meaning: "a token's iss must equal it (required with a public key)" },
  { name: 'SSE_AUTH_AUDIENCE', default: 'unset', meaning: "a token's aud must include it (required with a public key)" },
  { name: 'SSE_AUTH_CLOCK_TOLERANCE_SECONDS', default: String(DEFAULTS.clockToleranceSeconds), meaning: 'clock skew allowed on exp/nbf/iat of public-key tokens' },
  { name: 'SSE_AUTH_JWKS_CACHE_SECONDS', default: String(DEFAULTS.jwksCacheSeconds), meaning: 'how long keys from SSE_AUTH_JWKS_URL are used before a new fetch' },
  { name: 'SSE_AUTH_JWKS_COOLDOWN_SECONDS', default: String(DEFAULTS.jwksCooldownSeconds), meaning: 'an unknown kid fetches SSE_AUTH_JWKS_URL again at most this often' },
  { name: 'SSE_TRUSTED_PROXIES', default: 'unset', meaning: 'proxies (addresses, CIDRs, loopback, private) whose X-Forwarded-For names the client' },
  { name: 'SSE_PUBLIC_STREAMS', default: 'true (false in production)', meaning: 'serve the unauthenticated stream endpoints' },
  { name: 'SSE_ENABLE_DEMO', default: 'true (false in production)', meaning: '/sse-demo, execute_stage, cut and demo/token (never on a server users reach)' },
  { name: 'SSE_MAX_DEMO_TASKS', default: String(DEFAULTS.maxDemoTasks), meaning: 'mock stages running at once' },
  { name: 'SSE_ALLOWED_HOSTS', default: 'loopback names on a loopback HOST, else any', meaning: 'Host names answered, comma-separated, or *' },
  { name: 'SSE_CORS_ORIGINS', default: 'unset (same-origin only)', meaning: 'origins whose pages may call the hub from a browser: exact scheme://host[:port], comma-separated, no *' },
  { name: 'SSE_HEALTH_TIMEOUT_MS', default: String(DEFAULTS.healthTimeoutMs), meaning: '/healthz answers 503 when the broker has not answered within this' },
  { name: 'SSE_METRICS_PORT', default: 'unset', meaning: 'serve /metrics on this port only' },
  { name: 'SSE_METRICS_HOST', default: DEFAULTS.metricsHost, meaning: 'where SSE_METRICS_PORT listens' },
  { name: 'SSE_HEARTBEAT_MS', default: String(DEFAULTS.heartbeatMs), meaning: 'interval of the ": ping" lines' },
  { name: 'SSE_RETRY_MS', default: String(DEFAULTS.retryMs), meaning: 'the retry: a stream opens with' },
  { name: 'CHANNEL_PREFIX', default: DEFAULT_PREFIX, meaning: 'the first part of every channel and key name' },
  { name: 'SSE_MAX_STREAMS', default: String(DEFAULTS.maxStreams), meaning: 'open streams per process (503 beyond)' },
  { name: 'SSE_MAX_STREAMS_PER_CLIENT', default: String(DEFAULTS.maxStreamsPerClient), meaning: 'open streams per client address (429 beyond)' },
  { name: 'SSE_MAX_SUBSCRIPTIONS', default: String(DEFAULTS.maxSubscriptions), meaning: 'subscriptions per multiplexed connection' },
  { name: 'SSE_MAX_BUFFER_BYTES', default: String(DEFAULTS.maxBufferBytes), meaning: 'unsent bytes a client may hold before it is dropped' },
  { name: 'SSE_MAX_REPLAY_ENTRIES', default: String(DEFAULTS.maxReplayEntries), meaning: 'log entries one resume may replay' },
  { name: 'SSE_MAX_REPLAY_BYTES', default: String(DEFAULTS.maxReplayBytes), meaning: 'bytes one resume may replay' },
  { name: 'SSE_LOG_MAX_LEN', default: String(DEFAULTS.logMaxLen), meaning: "entries in each project's replay log" },
  { name: 'SSE_LOG_TTL_SECONDS', default: String(DEFAULTS.logTtlSeconds), meaning: "lifetime of each project's replay log" },
  { name: 'SSE_LEASE_MS', default: String(DEFAULTS.leaseMs), meaning: "a worker's lease on a stage" },
  { name: 'SSE_LEASE_REAP_MS', default: String(DEFAULTS.leaseReapMs), meaning: 'how often expired leases are looked for' },
  { name: 'LOG_LEVEL', default: DEFAULTS.logLevel, meaning: 'pino log level' },
];

export function helpText(version: string): string {
  const width = Math.max(...SETTINGS.map((setting) => setting.name.length));
  const lines = SETTINGS.map((setting) => `  ${setting.name.padEnd(width)}  ${setting.meaning} [default: ${setting.default}]`);
  return [
    `ai-story-sse ${version}: the SSE hub (Redis -> Server-Sent Events to browsers)`,
    '',
    'Usage:',
    '  ai-story-sse              start the hub, configured by the environment below',
    '  ai-story-sse token ...    print a development token (ai-story-sse token --help)',
    '  ai-story-sse --help       this text',
    '  ai-story-sse --version    the version',
    '',
    'Environment:',
    ...lines,
    '',
    'A bad setting prints one line on stderr and exits with code 2. SIGTERM/SIGINT end the streams and exit 0.',
    '',
  ].join('\n');
}
