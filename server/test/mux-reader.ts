/** A test client for the multiplexed stream: one connection (openStream), its control requests, its events by subscription. */
import { MUX_CONNECTION_HEADER, MUX_ROUTES, MUX_WS_ROUTE, newConnectionId } from '../../protocol/mux.js';
import WebSocket from 'ws';
import { openStream, readStream, requestJson, type ReceivedEvent, type StreamReader } from './sse-reader.js';

export interface MuxReader extends StreamReader {
  /** The connection's id, as its `connection` event said. */
  connection: string;
  base: string;
  /** POST subscribe with this connection's header. */
  subscribe(body: unknown, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; body: any }>;
  /** POST unsubscribe with this connection's header. */
  unsubscribe(body: unknown): Promise<{ status: number; headers: Headers; body: any }>;
  /** The events of one subscription so far, in order. */
  of(subscription: string): ReceivedEvent[];
}

/** How a test reaches the multiplexed connection: the HTTP stream with control POSTs, or one WebSocket. */
export type Transport = 'sse' | 'websocket';
export const TRANSPORTS: readonly Transport[] = ['sse', 'websocket'];

/** Opens a connection and waits for its `connection` event. `connection: null` lets the server choose the id. */
export async function openMux(
  base: string,
  options: { connection?: string | null; headers?: Record<string, string>; transport?: Transport } = {},
): Promise<MuxReader> {
  if (options.transport === 'websocket') return openWebSocketMux(base, options.headers);
  const connection = options.connection === undefined ? newConnectionId() : options.connection;
  const headers = { ...(connection === null ? {} : { [MUX_CONNECTION_HEADER]: connection }), ...options.headers };
  const reader = await openStream(base + MUX_ROUTES.stream, headers);
  if (reader.status !== 200) throw new Error(`the mux stream answered ${reader.status}: ${reader.raw}`);
  const first = await reader.waitFor((e) => e.event === 'connection');
  const id = String(first.json?.connection);
  return Object.assign(reader, {
    connection: id,
    base,
    subscribe: (body: unknown, extra: Record<string, string> = {}) => control(base, MUX_ROUTES.subscribe, id, body, extra),
    unsubscribe: (body: unknown) => control(base, MUX_ROUTES.unsubscribe, id, body),
    of: (subscription: string) => reader.events.filter((e) => e.json?.subscription === subscription),
  });
}

/** A control request (POST, JSON) naming `connection`. */
export function control(base: string, path: string, connection: string | undefined, body: unknown, headers: Record<string, string> = {}) {
  return requestJson(base + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(connection === undefined ? {} : { [MUX_CONNECTION_HEADER]: connection }), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** A WebSocket's close, as the client saw it. */
export interface WebSocketClose {
  code: number;
  reason: string;
}

/**
 * The same connection over the WebSocket transport: its messages read as the SSE text they are, its control
 * requests sent as messages and answered by `result` events, in the shape `control()` gives over HTTP. The
 * request's `Authorization: Bearer` has no WebSocket counterpart: its token goes into each item without one.
 */
export async function openWebSocketMux(base: string, headers: Record<string, string> = {}): Promise<MuxReader & { closed: Promise<WebSocketClose>; socket: WebSocket }> {
  const ws = new WebSocket(base.replace(/^http/, 'ws') + MUX_WS_ROUTE, { headers });
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  const closed = new Promise<WebSocketClose>((resolve) =>
    ws.on('close', (code, reason) => {
      finished = true;
      wake?.();
      resolve({ code, reason: reason.toString() });
    }),
  );
  ws.on('error', () => {});
  ws.on('message', (data) => {
    queue.push(String(data));
    wake?.();
  });
  async function* chunks(): AsyncGenerator<string> {
    for (;;) {
      while (queue.length > 0) yield queue.shift()!;
      if (finished) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  }
  // The answers to control messages are not events of the stream: over HTTP they are the POSTs' responses.
  const reader = readStream(101, new Headers(), chunks(), () => ws.terminate(), (e) => e.event === 'result');
  const first = await reader.waitFor((e) => e.event === 'connection');
  let request = 0;
  const send = async (op: 'subscribe' | 'unsubscribe', body: unknown, extra: Record<string, string> = {}) => {
    const number = ++request;
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(extra.Authorization ?? extra.authorization ?? '')?.[1];
    let message = body as Record<string, unknown>;
    if (bearer !== undefined && typeof message === 'object' && message !== null) {
      const withToken = (item: unknown) => (item && typeof item === 'object' && !('token' in item) ? { ...item, token: bearer } : item);
      message = Array.isArray(message.subscriptions) ? { ...message, subscriptions: message.subscriptions.map(withToken) } : (withToken(message) as Record<string, unknown>);
    }
    ws.send(typeof body === 'string' ? body : JSON.stringify({ op, request: number, ...message }));
    const result = await reader.waitFor((e) => e.event === 'result' && (e.json?.request === number || typeof body === 'string'));
    return { status: Number(result.json?.status), headers: new Headers(), body: result.json?.body as any };
  };
  return Object.assign(reader, {
    connection: String(first.json?.connection),
    base,
    subscribe: (body: unknown, extra?: Record<string, string>) => send('subscribe', body, extra),
    unsubscribe: (body: unknown) => send('unsubscribe', body),
    of: (subscription: string) => reader.events.filter((e) => e.json?.subscription === subscription),
    closed,
    socket: ws,
  });
}
