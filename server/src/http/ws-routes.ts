/**
 * The WebSocket transport (protocol/mux.ts, MUX_WS_ROUTE): a multiplexed connection over a WebSocket, on the same
 * hub and with the same semantics as over HTTP. The server's messages are the connection's SSE text (so both
 * transports share the client's parser, the hub's frames and their bytes); the client's messages are the control
 * requests as JSON, answered in-band by a `result` event. The `ws` package does the framing, pings and limits.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import {
  MUX_CLOSE,
  MUX_LIMITS,
  MUX_WS_ROUTE,
  closeReason,
  newConnectionId,
  type MuxResultMessage,
} from '../../../protocol/mux.js';
import { DEFAULTS } from '../defaults.js';
import type { CloseReason } from '../hub/client-stream.js';
import type { ConnectionWire } from '../hub/connection-wire.js';
import type { Hub } from '../hub/hub.js';
import type { MuxConnection } from '../hub/mux-connection.js';
import { formatEvent } from '../hub/sse-frame.js';
import { clientAddress, type TrustedProxies } from './client-address.js';
import type { CorsPolicy } from './cors.js';
import { hostName } from './host-guard.js';
import { ErrorCode, HttpError } from './http-error.js';
import { MuxControl, answerOf } from './mux-control.js';
import type { MuxRouteOptions } from './mux-routes.js';
import { refuseOverLimits, requestIdOf } from './stream-routes.js';

/** The multiplexed routes' options, and the upgrade's own. */
export interface WebSocketOptions extends MuxRouteOptions {
  /** `Host` names answered (the DNS-rebinding guard of the HTTP routes); null: any. */
  allowedHosts?: readonly string[] | null;
  /** Proxies whose `X-Forwarded-For` is believed (SSE_TRUSTED_PROXIES): upgrades skip the routes' middleware. */
  trusted?: TrustedProxies | undefined;
  /**
   * The origins of `SSE_CORS_ORIGINS`: when set, an upgrade whose `Origin` is neither listed nor the server's own is
   * refused (4403). Undefined: any origin, as before (tokens travel in the messages, never in cookies).
   */
  cors?: CorsPolicy | undefined;
}

/** Where a WebSocket counts as past its high-water mark: the socket's own, 16 KiB. */
const HIGH_WATER_BYTES = 16 * 1024;

/** A multiplexed connection's wire over a WebSocket: each write one text message. */
export class WebSocketWire implements ConnectionWire {
  readonly #ws: WebSocket;
  readonly #drainListeners = new Set<() => void>();
  /** Answered the last ping: a socket that misses one heartbeat's pong is half-open and ends. */
  #alive = true;
  #waitingForDrain = false;

  constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('pong', () => (this.#alive = true));
  }

  start(head: string): void {
    this.write(head);
  }

  write(chunk: string | Buffer): void {
    if (this.ended) return;
    // A text message: the SSE text is UTF-8 either way. The callback tells when the socket took it.
    this.#ws.send(chunk, { binary: false }, () => this.#sent());
    if (this.writableNeedDrain) this.#waitingForDrain = true;
  }

  get writableLength(): number {
    return this.#ws.bufferedAmount;
  }

  get writableNeedDrain(): boolean {
    return this.#ws.bufferedAmount > HIGH_WATER_BYTES;
  }

  get ended(): boolean {
    return this.#ws.readyState !== this.#ws.OPEN;
  }

  onDrain(listener: () => void): void {
    this.#drainListeners.add(listener);
  }

  onceGone(listener: () => void): void {
    this.#ws.once('close', listener);
  }

  end(reason: CloseReason): void {
    if (reason === 'client_gone') return void this.#ws.terminate();
    // A slow client's queued messages go with it.
    if (reason === 'slow_consumer') {
      this.#ws.close(MUX_CLOSE.slowConsumer, 'slow_consumer');
      setTimeout(() => this.#ws.terminate(), 1000).unref();
      return;
    }
    const code = reason === 'server_shutdown' ? MUX_CLOSE.serverShutdown : reason === 'broker_error' ? MUX_CLOSE.tryAgainLater : MUX_CLOSE.cut;
    this.#ws.close(code, reason);
  }

  heartbeat(): void {
    if (!this.#alive) return void this.#ws.terminate();
    this.#alive = false;
    this.#ws.ping();
  }

  #sent(): void {
    if (!this.#waitingForDrain || this.writableNeedDrain) return;
    this.#waitingForDrain = false;
    for (const listener of [...this.#drainListeners]) listener();
  }
}

/** Closes a WebSocket with the refusal the HTTP transport would answer: 4000 + status, and `code: message`. */
function refuse(ws: WebSocket, error: HttpError): void {
  ws.close(MUX_CLOSE.statusBase + error.status, closeReason(error.code, error.message));
}

/**
 * Serves MUX_WS_ROUTE on `server`'s `upgrade` event. Other upgrade requests are left to the server's other
 * `upgrade` listeners (or refused with 404 when there are none). Returns the undo; `close()` of the returned
 * object ends nothing by itself (the hub's close() ends the connections).
 */
export function attachWebSocket(server: Server, options: WebSocketOptions): () => void {
  const { hub } = options;
  const retryAfter = String(options.retryAfterSeconds ?? DEFAULTS.retryAfterSeconds);
  const control = new MuxControl({ hub, policy: options.policy, publicStreams: options.publicStreams, retryAfter });
  const hosts = options.allowedHosts ? new Set(options.allowedHosts.map((name) => name.toLowerCase())) : null;
  const wss = new WebSocketServer({ noServer: true, maxPayload: MUX_LIMITS.maxBodyBytes, perMessageDeflate: false, clientTracking: false });

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0]!;
    if (path !== MUX_WS_ROUTE && path !== MUX_WS_ROUTE.replace(/\/$/, '')) {
      // Not ours: another listener may want it; with none, it would hang.
      if (server.listenerCount('upgrade') === 1) socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => open(req, ws));
  };

  const open = (req: IncomingMessage, ws: WebSocket) => {
    // Refusals come after the upgrade, as close frames: a browser sees a failed handshake only as "closed".
    if (hosts && !hosts.has(hostName(req.headers.host))) {
      return refuse(ws, new HttpError(421, ErrorCode.misdirected, `This server does not answer for host "${hostName(req.headers.host)}".`));
    }
    if (options.cors && !options.cors.allowsUpgrade(req)) {
      return refuse(ws, new HttpError(403, ErrorCode.originNotAllowed, `Origin "${req.headers.origin}" is not in SSE_CORS_ORIGINS.`));
    }
    const clientKey = clientAddress(req, options.trusted);
    try {
      refuseOverLimits(hub, clientKey, {
        maxStreams: options.maxStreams ?? DEFAULTS.maxStreams,
        maxStreamsPerClient: options.maxStreamsPerClient ?? DEFAULTS.maxStreamsPerClient,
        retryAfter,
      });
    } catch (error) {
      return refuse(ws, error instanceof HttpError ? error : new HttpError(500, ErrorCode.internal, 'Internal error.'));
    }
    const requestId = requestIdOf(req);
    req.socket.setNoDelay(true);
    const connection = hub.openConnection(new WebSocketWire(ws), {
      connection: newConnectionId(),
      clientKey,
      requestId,
      maxSubscriptions: options.maxSubscriptions ?? DEFAULTS.maxSubscriptions,
    });
    // One control message at a time, in order: a subscribe and the unsubscribe after it apply in that order.
    let queue = Promise.resolve();
    ws.on('message', (data: RawData, isBinary: boolean) => {
      queue = queue.then(() => handleMessage(connection, data, isBinary, requestId)).catch(() => {});
    });
    ws.on('error', () => ws.terminate());
  };

  const handleMessage = async (connection: MuxConnection, data: RawData, isBinary: boolean, requestId: string): Promise<void> => {
    let request: number | null = null;
    let answer;
    try {
      if (isBinary) throw new HttpError(400, ErrorCode.badRequest, 'Control messages are JSON text.');
      let message: unknown;
      try {
        message = JSON.parse(String(data));
      } catch {
        throw new HttpError(400, ErrorCode.invalidJson, 'A control message must be a JSON object.');
      }
      if (message === null || typeof message !== 'object' || Array.isArray(message)) {
        throw new HttpError(400, ErrorCode.invalidJson, 'A control message must be a JSON object.');
      }
      const { op, request: number, ...body } = message as Record<string, unknown>;
      if (Number.isSafeInteger(number)) request = number as number;
      else if (number !== undefined) throw new HttpError(400, ErrorCode.badRequest, '"request" must be an integer.');
      if (op === 'subscribe') answer = await control.subscribe(connection, body, undefined, requestId);
      else if (op === 'unsubscribe') answer = control.unsubscribe(connection, body);
      else throw new HttpError(400, ErrorCode.badRequest, '"op" must be "subscribe" or "unsubscribe".');
    } catch (error) {
      answer = answerOf(error);
    }
    if (connection.ended) return;
    const result: MuxResultMessage = { type: 'result', request, status: answer.status, body: answer.body };
    connection.write(formatEvent({ event: 'result', data: JSON.stringify(result) }));
  };

  server.on('upgrade', onUpgrade);
  return () => {
    server.off('upgrade', onUpgrade);
    wss.close();
  };
}
