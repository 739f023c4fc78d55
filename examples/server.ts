/**
 * Your own server with the hub embedded: a plain `node:http` server that serves the example pages, with the
 * SSE routes mounted on it by `mountSse`. The pages are on the same origin as the streams, so no CORS.
 *
 *   npm run examples        # builds the bundle and the Vue/React pages, then runs this on http://127.0.0.1:8010
 *   node --import tsx examples/node/worker.ts example    # in another terminal: a worker publishes a stage
 *
 * Env: REDIS_URL (default redis://127.0.0.1:6379), PORT (8010), HOST (127.0.0.1), LOG_LEVEL (info).
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pino } from 'pino';
import sirv from 'sirv';
import { RedisBroker, mountSse, type Broker, type SseLogger, type SseMount } from 'ai-story-sse/server';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export interface ExampleServerOptions {
  broker: Broker;
  port?: number;
  host?: string;
  /** Where `vite build --config examples/vite.config.ts` wrote the Vue and React pages. */
  pagesDir?: string;
  /** The single-file client build (`npm run build:client`), served at `/sse-kit.js`. */
  bundleFile?: string;
  logger?: SseLogger;
}

export interface ExampleServer {
  url: string;
  server: Server;
  sse: SseMount;
  close(): Promise<void>;
}

const INDEX = `<!doctype html><meta charset="utf-8"><title>ai-story-sse examples</title>
<h1>ai-story-sse examples</h1>
<ul><li><a href="/html/">Plain HTML</a></li><li><a href="/vue/">Vue 3</a></li><li><a href="/react/">React 19</a></li></ul>
<p>Then publish a stage: <code>node --import tsx examples/node/worker.ts example</code></p>`;

export async function startExampleServer(options: ExampleServerOptions): Promise<ExampleServer> {
  const bundleFile = options.bundleFile ?? here('../dist/client/sse-kit.js');
  const pages = sirv(options.pagesDir ?? here('./dist'), { dev: true });
  const notFound = (res: ServerResponse): void => void res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found\n');

  // The application's own handler: static files. Everything the SSE routes do not match comes here.
  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    try {
      if (path === '/') return void res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(INDEX);
      if (path === '/html/') return void res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(await readFile(here('./html/index.html')));
      if (path === '/sse-kit.js') return void res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(await readFile(bundleFile));
      // The SharedWorker that shares one connection between the tabs, beside the bundle (see configureSharing).
      if (path === '/sse-kit-worker.js') {
        return void res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(await readFile(join(dirname(bundleFile), 'sse-kit-worker.js')));
      }
      pages(req, res, () => notFound(res));
    } catch {
      notFound(res);
    }
  });
  // The hub: /api/v1/sse/..., /healthz and /metrics, on the same server.
  const sse = mountSse(server, { broker: options.broker, logger: options.logger });

  await new Promise<void>((resolve) => server.listen(options.port ?? 8010, options.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    server,
    sse,
    async close() {
      // Open streams first: server.close() waits for them.
      await sse.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const log = pino({ level: process.env.LOG_LEVEL || 'info' });
  const broker = new RedisBroker({ url: process.env.REDIS_URL || 'redis://127.0.0.1:6379' });
  const example = await startExampleServer({ broker, port: Number(process.env.PORT || 8010), host: process.env.HOST || '127.0.0.1', logger: log });
  log.info(`examples on ${example.url}`);
  const stop = async () => {
    await example.close();
    await broker.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
