/**
 * Builds the whole server from its parts: hub, routes, mock publisher, demo files. Takes its broker
 * as an argument, so tests run it on a private redis-server or the embedded broker.
 */
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import polka from 'polka';
import sirv from 'sirv';
import type { Logger } from 'pino';
import type { Broker } from './broker/broker.js';
import type { ServerConfig } from './config.js';
import type { Hub } from './hub/hub.js';
import { ErrorCode, HttpError, sendError } from './http/http-error.js';
import { internalError, notFound } from './http/routes.js';
import { SseMetrics } from './metrics.js';
import { mountSse } from './mount.js';

export const DEMO_DIST = fileURLToPath(new URL('../../demo/dist/', import.meta.url));

export interface RunningServer {
  /** e.g. `http://127.0.0.1:8000` */
  url: string;
  port: number;
  hub: Hub;
  /** The Prometheus metrics served at `/metrics`. */
  metrics: SseMetrics;
  /** The underlying node:http server. */
  server: Server;
  /** Stops accepting, ends open streams (clients reconnect elsewhere), stops mock runs. Does not close the broker. */
  close(): Promise<void>;
}

export type ServerSettings = Pick<
  ServerConfig,
  'port' | 'host' | 'authSecret' | 'heartbeatMs' | 'retryMs' | 'publicStreams' | 'demoEnabled' | 'maxStreams' | 'maxStreamsPerClient' | 'maxBufferBytes'
>;

export async function startServer(settings: ServerSettings, broker: Broker, log?: Logger, demoDir = DEMO_DIST): Promise<RunningServer> {
  const app = polka({
    onNoMatch: notFound,
    onError: (_error, _req, res) => internalError(res),
  });
  // The hub, its routes, /metrics, and a log line per stream opened and closed (see mount.ts).
  const metrics = new SseMetrics();
  const sse = mountSse(app, {
    broker,
    authSecret: settings.authSecret,
    publicStreams: settings.publicStreams,
    demoEnabled: settings.demoEnabled,
    heartbeatMs: settings.heartbeatMs,
    retryMs: settings.retryMs,
    maxBufferBytes: settings.maxBufferBytes,
    maxStreams: settings.maxStreams,
    maxStreamsPerClient: settings.maxStreamsPerClient,
    logger: log,
    metrics,
  });

  // The demo: the Vite build in demo/dist, under /sse-demo.
  if (existsSync(demoDir)) {
    const serveDemo = sirv(demoDir, { single: true, dev: false, etag: true });
    app.get('/sse-demo', (req, res) => {
      req.url = '/';
      return serveDemo(req, res, () => notFound(req, res));
    });
    app.use('/sse-demo', serveDemo);
  } else {
    app.get('/sse-demo', (_req, res) =>
      sendError(res, new HttpError(503, ErrorCode.unavailable, 'The demo is not built: run `npm start` (it builds it) or `npm run build`.')),
    );
  }

  await new Promise<void>((resolve, reject) => {
    app.server?.once('error', reject);
    app.listen(settings.port, settings.host, () => resolve());
  });
  const server = app.server as Server;
  // Requests node's HTTP parser refuses (bad framing, oversized headers) get the same JSON error shape.
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || error.code === 'ECONNRESET') return socket.destroy();
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const body = JSON.stringify({ error: { code: ErrorCode.badRequest, message: `Malformed HTTP request (${error.code ?? 'parse error'}).` } });
    socket.end(`HTTP/1.1 ${status} Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  const { port } = server.address() as AddressInfo;
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;

  return {
    url: `http://${host}:${port}`,
    port,
    hub: sse.hub,
    metrics,
    server,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await sse.close();
      // Every stream has ended; sockets a client keeps alive (fetch's pool) would hold close() for seconds.
      server.closeAllConnections();
      await closed;
    },
  };
}
