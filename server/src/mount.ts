/**
 * Embeds the SSE hub in a server of your own: mounts the library's routes (the four stream endpoints, the
 * multiplexed stream and its control requests, its WebSocket transport, the health checks and `/metrics`) on a polka app or a plain `node:http` server. The demo's endpoints are not
 * among them: the standalone server adds those with `mountDemo` (mock/mount-demo.ts).
 */
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import { Server as NetServer } from 'node:net';
import polka, { type Polka } from 'polka';
import { MUX_ROUTES } from '../../protocol/mux.js';
import { Route, STREAM_ROUTES } from '../../protocol/routes.js';
import { hasStageControl, type Broker } from './broker/broker.js';
import { secretTooShort } from './config.js';
import { DEFAULTS } from './defaults.js';
import { Hub } from './hub/hub.js';
import type { HubEventSource } from './hub/hub-events.js';
import { internalError, notFound } from './http/handler.js';
import { mountHealthRoutes } from './http/health-routes.js';
import { mountMuxRoutes } from './http/mux-routes.js';
import { mountStreamRoutes } from './http/stream-routes.js';
import { attachWebSocket } from './http/ws-routes.js';
import { mountCancelRoutes } from './http/cancel-routes.js';
import { CorsPolicy, type CorsRoute } from './http/cors.js';
import { markTrustedProxies, TrustedProxies } from './http/client-address.js';
import type { TokenKeys } from './http/token-keys.js';
import { LeaseReaper } from './lease-reaper.js';
import { SseMetrics } from './metrics.js';

/** The few methods of a logger the hub writes to; a pino logger fits. */
export interface SseLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface SseOptions {
  /** Where messages come from: a `RedisBroker`, or a `MemoryBroker` for one process. It stays the caller's. */
  broker: Broker;
  /** HS256 secret of the tokens the authenticated endpoints (`.../stream/`) need; unset, they answer 503. Default unset. */
  authSecret?: string | undefined;
  /** When set, a token's `iss` claim must equal it (401 otherwise). Default unset. */
  authIssuer?: string | undefined;
  /** When set, a token's `aud` claim must include it (401 otherwise). Default unset. */
  authAudience?: string | undefined;
  /**
   * Public keys for tokens signed with a private key (RS256, ES256, EdDSA…), from `loadTokenKeys` (a PEM file, a
   * JWKS file or a JWKS URL). With `authSecret` too, HS256 tokens go to the secret and the others to these keys.
   */
  authKeys?: TokenKeys | undefined;
  /** Seconds of clock skew allowed on public-key tokens' `exp`, `nbf` and `iat`. Default 5. */
  authClockToleranceSeconds?: number | undefined;
  /**
   * The reverse proxies (addresses, CIDRs, `loopback`, `private`) whose `X-Forwarded-For` names the client, for the
   * per-client limit and the logs: the rightmost address in it that is not one of them. Default none: the socket's address.
   */
  trustedProxies?: TrustedProxies | readonly string[] | undefined;
  /** Serve the unauthenticated stream endpoints; false answers them 403. Default true. */
  publicStreams?: boolean;
  /** Interval of the `: ping` comment lines, in ms. Default 15000. */
  heartbeatMs?: number;
  /** The `retry:` a stream opens with, in ms. Default 3000. */
  retryMs?: number;
  /** Unsent bytes a client may hold before it is dropped as too slow. Default 1 MiB. */
  maxBufferBytes?: number;
  /** Past this many unsent bytes a slow client's live messages go in priority (tokens merged). Default maxBufferBytes / 4. */
  softBufferBytes?: number;
  /** Log entries one resume may replay; beyond, it gets the current state (`reset`, reason `too_long`). Default 10000. */
  maxReplayEntries?: number;
  /** Bytes one resume may read from the log; beyond, the same. Default 16 MiB. */
  maxReplayBytes?: number;
  /** Open streams in this hub; more are answered 503 with `Retry-After`. Default 20000. */
  maxStreams?: number;
  /** Open streams per remote address; more are answered 429. Default 64. A multiplexed connection counts once. */
  maxStreamsPerClient?: number;
  /** Subscriptions one multiplexed connection (`/api/v1/sse/mux/`) may hold; more are answered 429. Default 64. */
  maxSubscriptions?: number;
  /** Gets one line when a stream opens and one when it closes, with its request id. Default: no logs. */
  logger?: SseLogger | undefined;
  /** The metrics to feed, or false for none. Default: a new {@link SseMetrics} with its own registry. */
  metrics?: SseMetrics | false;
  /** Where the metrics are served, or false to serve them yourself (from `metrics.registry`). Default `/metrics`. */
  metricsPath?: string | false;
  /**
   * Serve `POST …/stages/{stage}/cancel/` without a token when there is no `authSecret` (the demo does). Default
   * false: without a secret the cancel endpoint answers 403; with one it needs a token for the project.
   */
  openCancel?: boolean;
  /** How often this hub looks for expired worker leases (`SSE_LEASE_REAP_MS`), or false for never. Default 1000. */
  leaseReapMs?: number | false;
  /**
   * How long `/healthz` waits for the broker's answer before it answers 503 (`SSE_HEALTH_TIMEOUT_MS`), in ms.
   * Default 500.
   */
  healthTimeoutMs?: number;
  /**
   * Origins whose pages may call the endpoints from a browser (`SSE_CORS_ORIGINS`): exact `scheme://host[:port]`
   * strings, no `*`. Each gets its origin back in `Access-Control-Allow-Origin`, errors included, and its
   * preflights answered; with this set, a WebSocket upgrade from another page's origin is refused (4403). No
   * credentials are allowed (tokens go in `Authorization`). Default none: same-origin only, as without CORS.
   */
  corsOrigins?: readonly string[] | undefined;
  /**
   * More paths of your own server whose cross-origin requests and preflights `corsOrigins` covers, beside the hub's
   * (e.g. `[{ pattern: '/api/jobs/:id/start', methods: ['POST'] }]`). Default none.
   */
  corsRoutes?: readonly CorsRoute[] | undefined;
}

export interface SseMount {
  /** The hub: `size` is the number of open streams; `events` announces streams and messages. */
  readonly hub: Hub;
  /** The metrics it feeds, unless `metrics: false`. */
  readonly metrics: SseMetrics | undefined;
  /**
   * Ends every open stream (clients reconnect and resume elsewhere); on a plain server,
   * gives its requests back to its own handlers. Call it before `server.close()`, which waits for open
   * streams. Does not close the broker or the server. On a polka app the routes stay.
   */
  close(): Promise<void>;
  /**
   * Serves the WebSocket transport (`/api/v1/sse/ws/`) on `server`'s `upgrade` event. Done for you when `target` is
   * a `node:http` server; with a polka app, call it with `app.server` once it listens. `allowedHosts` applies the
   * DNS-rebinding guard to the upgrade requests (null, the default: any host). Returns the undo.
   */
  attachWebSocket(server: Server, options?: { allowedHosts?: readonly string[] | null }): () => void;
}

/**
 * Mounts the SSE routes on `target`:
 * - a polka app: the routes are added to it, beside yours;
 * - a `node:http` (or `node:https`) server: its request handlers, as they are when you call this, keep
 *   every request the SSE routes do not match (a server without one answers those with the JSON 404).
 *
 * @example
 * const server = createServer(myApp);
 * const sse = mountSse(server, { broker: new RedisBroker({ url: process.env.REDIS_URL }) });
 * server.listen(8000);
 * // on shutdown: await sse.close(); server.close();
 */
export function mountSse(target: Polka | Server, options: SseOptions): SseMount {
  const { broker, logger } = options;
  const tooShort = options.authSecret === undefined ? undefined : secretTooShort(options.authSecret);
  if (tooShort) throw new TypeError(`mountSse: authSecret ${tooShort}`);
  const healthTimeoutMs = options.healthTimeoutMs ?? DEFAULTS.healthTimeoutMs;
  if (!(Number.isInteger(healthTimeoutMs) && healthTimeoutMs >= 1)) throw new TypeError(`mountSse: healthTimeoutMs must be an integer >= 1, got ${String(options.healthTimeoutMs)}`);
  let cors: CorsPolicy | undefined;
  try {
    // An empty list is no list: same-origin only, exactly as without the option.
    cors = options.corsOrigins?.length ? new CorsPolicy(options.corsOrigins) : undefined;
  } catch (error) {
    throw new TypeError(`mountSse: corsOrigins: ${(error as Error).message}`);
  }
  const metrics = options.metrics === false ? undefined : (options.metrics ?? new SseMetrics());
  const hub = new Hub({
    broker,
    heartbeatMs: options.heartbeatMs,
    retryMs: options.retryMs,
    maxBufferBytes: options.maxBufferBytes,
    softBufferBytes: options.softBufferBytes,
    maxReplayEntries: options.maxReplayEntries,
    maxReplayBytes: options.maxReplayBytes,
  });
  metrics?.watch({ hub, broker });
  const unlog = logger ? logStreams(hub.events, logger) : () => {};
  // Dead workers' stages get their worker-lost error from whichever hub process reaps first (lease-reaper.ts).
  const reapMs = options.leaseReapMs ?? DEFAULTS.leaseReapMs;
  const reaper =
    reapMs !== false && hasStageControl(broker)
      ? new LeaseReaper({
          broker,
          intervalMs: reapMs,
          onReaped: (projectId, stage, id) => logger?.warn({ project_id: projectId, stage, id }, 'worker lost: lease expired, stage marked lost'),
          onError: (error) => logger?.warn({ err: error }, 'lease reaper round failed'),
        })
      : undefined;

  const policy = {
    secret: options.authSecret,
    keys: options.authKeys,
    issuer: options.authIssuer,
    audience: options.authAudience,
    clockToleranceSeconds: options.authClockToleranceSeconds,
  };
  const trusted = options.trustedProxies instanceof TrustedProxies || options.trustedProxies === undefined ? options.trustedProxies : new TrustedProxies(options.trustedProxies);
  const mount = (app: Polka) => {
    // First: every answer of the hub's paths, errors included, carries the CORS headers a listed origin needs.
    if (cors) app.use(cors.middleware([...hubCorsRoutes(hasStageControl(broker)), ...(options.corsRoutes ?? [])]));
    // Marks each request with the trusted proxies, for the routes' client address (http/client-address.ts).
    if (trusted) app.use(markTrustedProxies(trusted));
    const routeOptions = {
      hub,
      policy,
      publicStreams: options.publicStreams ?? true,
      maxStreams: options.maxStreams ?? DEFAULTS.maxStreams,
      maxStreamsPerClient: options.maxStreamsPerClient ?? DEFAULTS.maxStreamsPerClient,
    };
    // The multiplexed routes first: their paths would not match the stream routes' patterns anyway.
    mountMuxRoutes(app, { ...routeOptions, maxSubscriptions: options.maxSubscriptions ?? DEFAULTS.maxSubscriptions });
    mountStreamRoutes(app, routeOptions);
    if (hasStageControl(broker)) {
      mountCancelRoutes(app, {
        broker,
        policy,
        open: options.openCancel ?? false,
      });
    }
    mountHealthRoutes(app, broker, { timeoutMs: healthTimeoutMs });
    const path = options.metricsPath ?? '/metrics';
    if (metrics && path !== false) app.get(path, metrics.handler);
  };

  const detachers: Array<() => void> = [];
  const attachWs = (server: Server, wsOptions: { allowedHosts?: readonly string[] | null } = {}) => {
    const undo = attachWebSocket(server, {
      hub,
      // The HTTP routes' token policy (secret and keys), and their client addresses (trusted proxies).
      policy,
      publicStreams: options.publicStreams ?? true,
      maxStreams: options.maxStreams ?? DEFAULTS.maxStreams,
      maxStreamsPerClient: options.maxStreamsPerClient ?? DEFAULTS.maxStreamsPerClient,
      maxSubscriptions: options.maxSubscriptions ?? DEFAULTS.maxSubscriptions,
      allowedHosts: wsOptions.allowedHosts ?? null,
      trusted,
      cors,
    });
    detachers.push(undo);
    return undo;
  };
  if (isPolka(target)) mount(target);
  else if (target instanceof NetServer) {
    detachers.push(attach(target, mount));
    attachWs(target);
  } else throw new TypeError('mountSse: `target` must be a polka app or a node:http server');

  return {
    hub,
    metrics,
    attachWebSocket: attachWs,
    async close() {
      for (const undo of detachers.splice(0)) undo();
      await reaper?.close();
      await hub.close();
      // After the hub: the streams it ended are still logged and counted. A caller's metrics stay readable.
      unlog();
      metrics?.unwatch();
    },
  };
}

/**
 * One log line when a stream opens and one when it closes, with its request id; the same for each multiplexed
 * connection and each of its subscriptions (with its id, and the request id of its `subscribe`). Returns the undo.
 */
function logStreams(events: HubEventSource, logger: SseLogger): () => void {
  const offOpened = events.on('stream-opened', (stream, resumed) => {
    logger.info(
      {
        req_id: stream.requestId,
        project_id: stream.projectId,
        stage: stream.stage,
        subscription: stream.subscription,
        resumed,
        remote: stream.clientKey || undefined,
      },
      stream.subscription === undefined ? 'stream opened' : 'subscription opened',
    );
  });
  const offClosed = events.on('stream-closed', (stream, reason) => {
    const fields = {
      req_id: stream.requestId,
      project_id: stream.projectId,
      stage: stream.stage,
      subscription: stream.subscription,
      reason,
      events: stream.events,
      duration_ms: Date.now() - stream.openedAt,
    };
    if (stream.subscription !== undefined) logger.info(fields, 'subscription closed');
    // A client dropped for being slow, or a broker failure, is worth an operator's look.
    else if (reason === 'slow_consumer' || reason === 'broker_error') logger.warn(fields, 'stream closed');
    else logger.info(fields, 'stream closed');
  });
  const offConnectionOpened = events.on('connection-opened', (connection) => {
    logger.info({ req_id: connection.requestId, connection: connection.id, remote: connection.clientKey || undefined }, 'mux connection opened');
  });
  const offConnectionClosed = events.on('connection-closed', (connection, reason) => {
    const fields = { req_id: connection.requestId, connection: connection.id, reason, duration_ms: Date.now() - connection.openedAt };
    if (reason === 'slow_consumer' || reason === 'broker_error') logger.warn(fields, 'mux connection closed');
    else logger.info(fields, 'mux connection closed');
  });
  return () => {
    offOpened();
    offClosed();
    offConnectionOpened();
    offConnectionClosed();
  };
}

/** The hub's paths a page on another origin may call: the streams, the multiplexed stream and its POSTs, cancel. */
function hubCorsRoutes(cancel: boolean): CorsRoute[] {
  return [
    ...STREAM_ROUTES.map(({ pattern }) => ({ pattern, methods: ['GET'] })),
    { pattern: MUX_ROUTES.stream, methods: ['GET'] },
    { pattern: MUX_ROUTES.subscribe, methods: ['POST'] },
    { pattern: MUX_ROUTES.unsubscribe, methods: ['POST'] },
    ...(cancel ? [{ pattern: Route.cancelStage, methods: ['POST'] }] : []),
  ];
}

function isPolka(target: unknown): target is Polka {
  const app = target as Partial<Polka>;
  return typeof app.handler === 'function' && typeof app.get === 'function' && typeof app.use === 'function';
}

/**
 * Puts a polka app with the routes in front of the server's own request handlers, the way websocket
 * libraries attach to a server: what the app does not match goes on to them. Returns the undo.
 */
function attach(server: Server, mount: (app: Polka) => void): () => void {
  const own = server.listeners('request') as RequestListener[];
  const passOn = (req: IncomingMessage, res: ServerResponse) => {
    if (own.length === 0) return notFound(req, res);
    for (const listener of own) listener.call(server, req, res);
  };
  const app = polka({
    onNoMatch: passOn,
    onError: (_error, _req, res) => internalError(res),
  });
  mount(app);
  // Without a `next`, polka runs its own chain (a `next` given here would replace it).
  const handler = app.handler as unknown as RequestListener;
  const listener: RequestListener = (req, res) => handler(req, res);
  for (const ownListener of own) server.off('request', ownListener);
  server.on('request', listener);
  return () => {
    server.off('request', listener);
    for (const ownListener of own) server.on('request', ownListener);
  };
}
