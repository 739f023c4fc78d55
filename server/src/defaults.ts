/**
 * Every default of the server in one place: the environment (config.ts), `mountSse`, the hub, the routes, the
 * demo and both brokers read them from here, so a default is changed once. Units are in the names.
 */
const defaults = {
  /** `PORT` of the standalone server. */
  port: 8000,
  /** `HOST` of the standalone server: loopback, so nothing is exposed by accident. */
  host: '127.0.0.1',
  /** `SSE_METRICS_HOST`: where `/metrics` listens when it has a port of its own. */
  metricsHost: '127.0.0.1',
  /** Interval of the `: ping` comment lines. */
  heartbeatMs: 15_000,
  /** The `retry:` a stream opens with. */
  retryMs: 3_000,
  /** Unsent bytes a client may hold before it is dropped as too slow: 1 MiB. */
  maxBufferBytes: 1024 * 1024,
  /** Live messages held per client while its resume replays. */
  maxPending: 10_000,
  /** Log entries one resume may replay before it gets a `reset` (`too_long`) instead. */
  maxReplayEntries: 10_000,
  /** Bytes one resume may read from the log, as `maxReplayEntries`: 16 MiB. */
  maxReplayBytes: 16 * 1024 * 1024,
  /** Open streams in one hub; more are answered 503. */
  maxStreams: 20_000,
  /**
   * The listening socket's accept queue (the kernel caps it at `net.core.somaxconn`). Node's default, 511, overflows
   * when thousands of clients reconnect at once after a restart: the dropped SYNs come back only after TCP's 1, 3,
   * 7, 15 s retransmits (bench: 5,000 clients live again after 32 s with 511, 4.3 s with 4096).
   */
  listenBacklog: 4096,
  /** Open streams per remote address; more are answered 429. */
  maxStreamsPerClient: 64,
  /** Subscriptions one multiplexed connection may hold (`SSE_MAX_SUBSCRIPTIONS`); more are answered 429. */
  maxSubscriptions: 64,
  /** Seconds a refused client is asked to wait (`Retry-After`). */
  retryAfterSeconds: 5,
  /** Entries kept in each project's replay log. */
  logMaxLen: 1000,
  /** Seconds a project's replay log and state live after its last message: one day. */
  logTtlSeconds: 86_400,
  /** `SSE_HEALTH_TIMEOUT_MS`: how long `/healthz` waits for the broker before it answers 503. */
  healthTimeoutMs: 500,
  /** How long a Redis command may take, queueing while disconnected included. */
  commandTimeoutMs: 5000,
  /** Entries one `Broker.replay` call returns when not told: one page of the log. */
  replayLimit: 1000,
  /** With `REDIS_URL` unset, how long the standalone server waits for a local Redis before it embeds a broker. */
  redisProbeTimeoutMs: 1000,
  /** `SSE_LEASE_MS`: a worker's lease on a stage; without a publish or heartbeat for this long, the stage is marked lost. */
  leaseMs: 30_000,
  /** `SSE_LEASE_REAP_MS`: how often a hub looks for expired leases. */
  leaseReapMs: 1_000,
  /** Mock stages the demo runs at once; `execute_stage` answers 429 beyond. */
  maxDemoTasks: 16,
  /** The largest JSON request body accepted: 1 MiB. */
  maxBodyBytes: 1024 * 1024,
  /** `SSE_AUTH_CLOCK_TOLERANCE_SECONDS`: clock skew allowed on `exp`/`nbf`/`iat` of tokens verified with a public key. */
  clockToleranceSeconds: 5,
  /** `SSE_AUTH_JWKS_CACHE_SECONDS`: how long keys fetched from `SSE_AUTH_JWKS_URL` are used before a new fetch. */
  jwksCacheSeconds: 600,
  /** `SSE_AUTH_JWKS_COOLDOWN_SECONDS`: a token with an unknown `kid` fetches the JWKS again at most this often. */
  jwksCooldownSeconds: 30,
  /** Lifetime of a token minted by `POST /api/v1/demo/token`. */
  demoTokenTtlSeconds: 600,
  /** `LOG_LEVEL` of the standalone server (pino). */
  logLevel: 'info',
  /** How long the standalone server may take to shut down before it exits anyway. */
  shutdownTimeoutMs: 10_000,
};

export type Defaults = Readonly<typeof defaults>;

/** The defaults, frozen: read them, never change them. */
export const DEFAULTS: Defaults = Object.freeze(defaults);
