/**
 * Builds the whole server from its parts: the library's routes (mountSse), and, when the demo is on, the mock
 * publisher and the demo's files. Takes its broker as an argument, so tests run it on a private redis-server or
 * the embedded broker.
 */
import { existsSync } from 'node:fs';
import { createServer, maxHeaderSize, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import polka from 'polka';
import sirv from 'sirv';
import type { Logger } from 'pino';
import type { Broker } from './broker/broker.js';
import type { ServerConfig } from './config.js';
import { DEFAULTS } from './defaults.js';
import type { Hub } from './hub/hub.js';
import { Route } from '../../protocol/routes.js';
import type { CorsRoute } from './http/cors.js';
import { hostGuard } from './http/host-guard.js';
import { ErrorCode, HttpError, sendError } from './http/http-error.js';
import { internalError, notFound } from './http/handler.js';
import { SseMetrics } from './metrics.js';
import { mountDemo, mountDemoDisabled, type DemoMount } from './mock/mount-demo.js';
import { mountSse } from './mount.js';
import type { TokenKeys } from './http/token-keys.js';

export const DEMO_DIST = fileURLToPath(new URL('../../demo/dist/', import.meta.url));

/** The demo's POST endpoints, for the CORS preflights when the demo is on. */
const DEMO_CORS_ROUTES: readonly CorsRoute[] = [Route.executeStage, Route.demoCut, Route.demoToken].map((pattern) => ({ pattern, methods: ['POST'] }));

export interface RunningServer {
  /** e.g. `http://127.0.0.1:8000` */
  url: string;
  port: number;
  hub: Hub;
  /** The Prometheus metrics served at `/metrics`. */
  metrics: SseMetrics;
  /** The underlying node:http server. */
  server: Server;
  /** Where `/metrics` is served when `metricsPort` is set (e.g. `http://127.0.0.1:9100/metrics`). */
  metricsUrl: string | undefined;
  /** Stops accepting, ends open streams (clients reconnect elsewhere), stops mock runs. Does not close the broker. */
  close(): Promise<void>;
}

export type ServerSettings = Pick<
  ServerConfig,
  'port' | 'host' | 'authSecret' | 'heartbeatMs' | 'retryMs' | 'publicStreams' | 'demoEnabled' | 'maxStreams' | 'maxStreamsPerClient' | 'maxBufferBytes'
> &
  Partial<Pick<ServerConfig, 'authIssuer' | 'authAudience' | 'authClockToleranceSeconds' | 'trustedProxies' | 'allowedHosts' | 'metricsPort' | 'metricsHost' | 'maxDemoTasks' | 'maxReplayEntries' | 'maxReplayBytes' | 'maxSubscriptions' | 'leaseMs' | 'leaseReapMs' | 'corsOrigins' | 'healthTimeoutMs'>> & {
    /** The public keys of asymmetric tokens, loaded by `loadTokenKeys` from the config's `authKeySource`. */
    authKeys?: TokenKeys | undefined;
  };

export async function startServer(settings: ServerSettings, broker: Broker, log?: Logger, demoDir = DEMO_DIST): Promise<RunningServer> {
  const app = polka({
    onNoMatch: notFound,
    onError: (_error, _req, res) => internalError(res),
  });
  // Before anything else: a request for another host name (DNS rebinding) gets nothing but a 421.
  app.use(hostGuard(settings.allowedHosts ?? null));
  // The hub, its routes, /metrics, and a log line per stream opened and closed (see mount.ts).
  const metrics = new SseMetrics();
  const sse = mountSse(app, {
    broker,
    authSecret: settings.authSecret,
    authIssuer: settings.authIssuer,
    authAudience: settings.authAudience,
    authKeys: settings.authKeys,
    authClockToleranceSeconds: settings.authClockToleranceSeconds,
    trustedProxies: settings.trustedProxies,
    publicStreams: settings.publicStreams,
    // With a metrics port, the public port does not serve them at all.
    metricsPath: settings.metricsPort === undefined ? '/metrics' : false,
    heartbeatMs: settings.heartbeatMs,
    retryMs: settings.retryMs,
    maxBufferBytes: settings.maxBufferBytes,
    maxReplayEntries: settings.maxReplayEntries,
    maxReplayBytes: settings.maxReplayBytes,
    maxStreams: settings.maxStreams,
    maxStreamsPerClient: settings.maxStreamsPerClient,
    maxSubscriptions: settings.maxSubscriptions,
    logger: log,
    metrics,
    // Cancel without a token only where anyone may start mock stages anyway: the demo.
    openCancel: settings.demoEnabled,
    leaseReapMs: settings.leaseReapMs,
    healthTimeoutMs: settings.healthTimeoutMs,
    corsOrigins: settings.corsOrigins,
    // The demo's POSTs too, when it is on: a page elsewhere may start and cut mock stages as the demo page does.
    corsRoutes: settings.demoEnabled ? DEMO_CORS_ROUTES : undefined,
  });

  // The demo's endpoints: the mock publisher and the demo-only controls; with the demo off, a 404 that says so.
  let demo: DemoMount | undefined;
  if (settings.demoEnabled) {
    demo = mountDemo(app, {
      hub: sse.hub,
      broker,
      authSecret: settings.authSecret,
      authIssuer: settings.authIssuer,
      authAudience: settings.authAudience,
      authKeys: settings.authKeys,
      authClockToleranceSeconds: settings.authClockToleranceSeconds,
      maxDemoTasks: settings.maxDemoTasks,
      leaseMs: settings.leaseMs,
      logger: log,
    });
  } else {
    mountDemoDisabled(app);
  }

  // The demo: the Vite build in demo/dist, under /sse-demo; with the demo off, no route: the 404 of any unknown path.
  if (settings.demoEnabled && existsSync(demoDir)) {
    const serveDemo = sirv(demoDir, { single: true, dev: false, etag: true });
    app.get('/sse-demo', (req, res) => {
      req.url = '/';
      return serveDemo(req, res, () => notFound(req, res));
    });
    app.use('/sse-demo', serveDemo);
  } else if (settings.demoEnabled) {
    app.get('/sse-demo', (_req, res) =>
      sendError(res, new HttpError(503, ErrorCode.unavailable, 'The demo is not built: run `npm start` (it builds it) or `npm run build`.')),
    );
  }

  await new Promise<void>((resolve, reject) => {
    app.server?.once('error', reject);
    app.listen(settings.port, settings.host, DEFAULTS.listenBacklog, () => resolve());
  });
  const server = app.server as Server;
  // The WebSocket transport, with the same Host guard as the HTTP routes.
  sse.attachWebSocket(server, { allowedHosts: settings.allowedHosts ?? null });
  // Requests node's HTTP parser refuses (bad framing, oversized headers) get the same JSON error shape.
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || error.code === 'ECONNRESET') return socket.destroy();
    const answer =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? { status: '431 Request Header Fields Too Large', code: ErrorCode.requestHeaderFieldsTooLarge, message: `The request's headers are larger than this server accepts (${maxHeaderSize} bytes in all); send fewer or shorter ones (cookies of other apps on this host name count too).` }
        : { status: '400 Bad Request', code: ErrorCode.badRequest, message: `Malformed HTTP request (${error.code ?? 'parse error'}).` };
    const body = JSON.stringify({ error: { code: answer.code, message: answer.message } });
    socket.end(`HTTP/1.1 ${answer.status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  const { port } = server.address() as AddressInfo;
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;

  // Metrics on a port of their own, for Prometheus on a private network: nothing about the process on the public one.
  let metricsServer: Server | undefined;
  let metricsUrl: string | undefined;
  if (settings.metricsPort !== undefined) {
    const metricsHost = settings.metricsHost ?? DEFAULTS.metricsHost;
    metricsServer = createServer((req, res) => {
      if ((req.url ?? '').split('?')[0] === '/metrics' && req.method === 'GET') void metrics.handler(req, res);
      else notFound(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      metricsServer!.once('error', reject);
      metricsServer!.listen(settings.metricsPort, metricsHost, () => resolve());
    });
    const bound = metricsServer.address() as AddressInfo;
    metricsUrl = `http://${metricsHost.includes(':') ? `[${metricsHost}]` : metricsHost}:${bound.port}/metrics`;
  }

  return {
    url: `http://${host}:${port}`,
    port,
    hub: sse.hub,
    metrics,
    server,
    metricsUrl,
    async close() {
      const metricsClosed = new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
      metricsServer?.closeAllConnections();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      demo?.close();
      await sse.close();
      // Every stream has ended; sockets a client keeps alive (fetch's pool) would hold close() for seconds.
      server.closeAllConnections();
      await Promise.all([closed, metricsClosed]);
    },
  };
}
