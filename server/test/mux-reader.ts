/** A test client for the multiplexed stream: one connection (openStream), its control requests, its events by subscription. */
import { MUX_CONNECTION_HEADER, MUX_ROUTES, newConnectionId } from '../../protocol/mux.js';
import { openStream, requestJson, type ReceivedEvent, type StreamReader } from './sse-reader.js';

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

/** Opens a connection and waits for its `connection` event. `connection: null` lets the server choose the id. */
export async function openMux(base: string, options: { connection?: string | null; headers?: Record<string, string> } = {}): Promise<MuxReader> {
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
