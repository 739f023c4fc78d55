/**
 * A scripted SSE server for the browser tests. Each request gets a {@link ScriptedStream} the test
 * writes to exactly as the real server would ("sends 2 events, then ends"), or a canned response.
 * Reachable two ways: through msw (`server.handler()`, a real fetch through the service worker) or
 * as an injected `fetch` (`server.fetch`) when a test must know byte by byte what the client consumed.
 */
import { http, type HttpHandler } from 'msw';
import { setupWorker } from 'msw/browser';
import { configureSharing } from '../src/shared/share.js';

const encoder = new TextEncoder();

export const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

/** One streamed response, written by the test. */
export class ScriptedStream {
  readonly request: Request;
  readonly body: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #closed = false;
  #pullWaiters: Array<() => void> = [];

  constructor(request: Request) {
    this.request = request;
    // highWaterMark 0: `pull` runs only when the client reads with nothing queued, i.e. it consumed everything.
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller;
        },
        pull: () => {
          for (const resolve of this.#pullWaiters.splice(0)) resolve();
        },
        cancel: () => {
          this.#closed = true;
        },
      },
      { highWaterMark: 0 },
    );
  }

  /** The `Last-Event-ID` header the client sent, or null. */
  get lastEventId(): string | null {
    return this.request.headers.get('last-event-id');
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(text: string | Uint8Array): this {
    if (!this.#closed) this.#controller.enqueue(typeof text === 'string' ? encoder.encode(text) : text);
    return this;
  }

  /** Writes one event the way the server frames it: `id:` (when given), `event:`, one `data:` line. */
  event(type: string, data: unknown, id?: string): this {
    return this.write(`${id === undefined ? '' : `id: ${id}\n`}event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  ping(): this {
    return this.write(': ping\n\n');
  }

  /** The server ends the response. */
  end(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#controller.close();
  }

  /** The connection breaks. */
  fail(error: unknown = new TypeError('network error')): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#controller.error(error);
  }

  /** Resolves when the client has read everything written so far and waits for more (injected fetch only). */
  drained(): Promise<void> {
    return new Promise((resolve) => this.#pullWaiters.push(resolve));
  }
}

type Responder = (request: Request) => Response;

/** Routes requests to canned responses first (`respondWith`), then to new scripted streams. */
export class ScriptedServer {
  readonly requests: Request[] = [];
  readonly streams: ScriptedStream[] = [];
  readonly #canned: Responder[] = [];
  #taken = 0;
  #streamWaiters: Array<() => void> = [];
  #requestWaiters: Array<() => void> = [];

  /** The next requests get these responses, in order, instead of a stream. */
  respondWith(...responses: Array<Response | Responder>): this {
    for (const response of responses) this.#canned.push(typeof response === 'function' ? response : () => response);
    return this;
  }

  /** The stream of the next request not yet taken by the test. */
  async nextStream(): Promise<ScriptedStream> {
    while (this.streams.length <= this.#taken) await new Promise<void>((resolve) => this.#streamWaiters.push(resolve));
    return this.streams[this.#taken++]!;
  }

  /** Resolves once `count` requests have arrived in total. */
  async requestCount(count: number): Promise<void> {
    while (this.requests.length < count) await new Promise<void>((resolve) => this.#requestWaiters.push(resolve));
  }

  respond(request: Request): Response {
    this.requests.push(request);
    for (const resolve of this.#requestWaiters.splice(0)) resolve();
    const canned = this.#canned.shift();
    if (canned) return canned(request);
    const stream = new ScriptedStream(request);
    this.streams.push(stream);
    for (const resolve of this.#streamWaiters.splice(0)) resolve();
    return new Response(stream.body, { status: 200, headers: SSE_HEADERS });
  }

  /** An msw handler for the SSE endpoints. */
  handler(path = '*/api/v1/sse/*'): HttpHandler {
    return http.get(path, ({ request }) => this.respond(request));
  }

  /** A fetch for `SSEClientOptions.fetch`: the same script without any network, aborts included. */
  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    if (init?.signal?.aborted) throw new DOMException('The operation was aborted.', 'AbortError');
    const response = this.respond(request);
    const stream = this.streams.at(-1);
    if (stream && stream.request === request) {
      init?.signal?.addEventListener('abort', () => stream.fail(new DOMException('The operation was aborted.', 'AbortError')));
    }
    return response;
  };

  /** Ends every stream still open. */
  closeAll(): void {
    for (const stream of this.streams) stream.end();
  }
}

/** A JSON error response in the server's shape. */
export function errorResponse(status: number, code: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ error: { code, message: `${code} (scripted)` } }), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

export const worker = setupWorker();
let started: Promise<unknown> | undefined;

/** Starts msw's service worker once per test file. */
export function startWorker(): Promise<unknown> {
  // These tests script the single-project endpoints; the shared connection is tested against the real server (e2e/).
  configureSharing({ mode: 'off' });
  started ??= worker.start({ quiet: true, onUnhandledRequest: 'bypass', serviceWorker: { url: '/mockServiceWorker.js' } });
  return started;
}

/**
 * A fresh ScriptedServer behind the service worker for each test of the file, given to `use` before the test (the
 * worker started once before all of them), its handlers and streams closed after it.
 */
export function scriptedServerPerTest(use: (server: ScriptedServer) => void): void {
  let server: ScriptedServer | undefined;
  before(startWorker);
  beforeEach(() => {
    server = new ScriptedServer();
    worker.use(server.handler());
    use(server);
  });
  afterEach(() => {
    worker.resetHandlers();
    server?.closeAll();
  });
}
