/**
 * The multiplexed stream: one connection that carries any number of subscriptions (several projects, each one
 * stage or every stage), added and removed while it runs. Shared by the server (server/src/http/mux-routes.ts)
 * and the client (client/src/shared/).
 *
 * The design, in short:
 * - `GET MUX_ROUTES.stream` opens the connection: an event stream whose first event is `connection`
 *   ({@link MuxConnectionMessage}). The client names the connection with a random id of its own in the
 *   {@link MUX_CONNECTION_HEADER} header (or `?connection=`, for an `EventSource`): a proxy in front of several hub
 *   processes routes the stream and its control requests to the same process by hashing that header.
 * - `POST MUX_ROUTES.subscribe` (same header) adds subscriptions to that live connection, each with its own token
 *   and its own cursor (`last_event_id`), so resume stays exact per subscription. Subscribing an id that the
 *   connection already holds, with the same project and stage, renews its token instead.
 * - `POST MUX_ROUTES.unsubscribe` removes them. Neither touches the other subscriptions of the connection.
 * - Every event of a subscription is the event the single-project stream would send, whose JSON data has one more
 *   member, last: `"subscription":"<id>"` ({@link MUX_SUBSCRIPTION_FIELD}). Its SSE `id:` is the log id, as there.
 */

/** The routes of the multiplexed stream. */
export const MUX_ROUTES = {
  /** `GET`: the event stream of one connection. */
  stream: '/api/v1/sse/mux/',
  /** `POST`: add (or renew) subscriptions on a live connection. */
  subscribe: '/api/v1/sse/mux/subscribe/',
  /** `POST`: remove subscriptions from a live connection. */
  unsubscribe: '/api/v1/sse/mux/unsubscribe/',
} as const;

/**
 * The same connection over a WebSocket (`transport: 'websocket'`): `GET` with `Upgrade: websocket`. The server's
 * messages are the stream's SSE text (each WebSocket text message one or more whole events, heartbeats included),
 * so both transports share one parser; the client's messages are the control requests as JSON
 * ({@link MuxControlMessage}), answered in-band by a `result` event. Tokens travel in those messages, never in the URL.
 */
export const MUX_WS_ROUTE = '/api/v1/sse/ws/';

/** The header that names the connection, on the stream and on its control requests. */
export const MUX_CONNECTION_HEADER = 'SSE-Connection';
/** The query parameter that names the connection on the stream, for clients that cannot send headers. */
export const MUX_CONNECTION_PARAM = 'connection';
/** A connection id: random, at least 128 bits (22 characters of base64url), at most 64 characters. */
export const MUX_CONNECTION_PATTERN = /^[A-Za-z0-9_-]{22,64}$/;
/** A subscription id, chosen by the client: unique within its connection. */
export const MUX_SUBSCRIPTION_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;
/** The member every event of a subscription carries in its JSON data, last. */
export const MUX_SUBSCRIPTION_FIELD = 'subscription';

/** Default limits; the server says its own in {@link MuxConnectionMessage}. */
export const MUX_LIMITS = {
  /** Subscriptions one connection may hold. */
  maxSubscriptions: 64,
  /** Bytes of one control request's body. */
  maxBodyBytes: 64 * 1024,
  /** Characters of one subscription's cursor (`last_event_id`), as the `Last-Event-ID` header of the single stream. */
  maxCursorChars: 64,
} as const;

/** The first event of a connection (event name `connection`): no `subscription` member. */
export interface MuxConnectionMessage {
  type: 'connection';
  /** The connection's id, as the client sent it (or as the server chose it, when the client sent none). */
  connection: string;
  /** Subscriptions this connection may hold. */
  max_subscriptions: number;
  timestamp: number;
}

/** One subscription to add: what the single stream takes in its path, query and headers, as JSON. */
export interface MuxSubscribeRequest {
  /** The client's id for it: every event of it carries this id. */
  subscription: string;
  project_id: string;
  /** One stage, or null (or absent) for every stage of the project. */
  stage?: string | null;
  /**
   * The token that grants the project. Absent: the request's `Authorization: Bearer` token, and without one the
   * subscription is public (refused with 403 where public streams are off).
   */
  token?: string;
  /** The cursor: resume after this log id, as `Last-Event-ID` does on the single stream. */
  last_event_id?: string;
  /** Without a cursor, start with a `snapshot` of the current state. Default true. */
  snapshot?: boolean;
  /** Compact token events (no `full_text`, an `offset`). Default false. */
  compact?: boolean;
  /** Only messages of these types (`?types=` of the single stream), e.g. `["progress", "done"]`. Default all. */
  types?: string[];
  /** With `stage` null: only these stages (`?stages=`), e.g. `["rewrite", "storyboard"]`. Default all. */
  stages?: string[];
}

/** The body of `POST subscribe`: one subscription, or several at once. */
export type MuxSubscribeBody = MuxSubscribeRequest | { subscriptions: MuxSubscribeRequest[] };

/** The answer about one subscription. */
export type MuxSubscribeResult =
  | {
      subscription: string;
      ok: true;
      status: 200;
      /** True when the connection held it already: its token was renewed, and nothing else changed. */
      renewed: boolean;
      /** When its token expires, in seconds since the epoch (`token_expired` follows then); null for a public one. */
      expires_at: number | null;
    }
  | { subscription: string; ok: false; status: number; error: { code: string; message: string } };

/**
 * The answer to `POST subscribe`. A single subscription gets its result as the status and body (200 and the
 * result, or the error status and `{ error }`); a batch gets 200 and one result per subscription, in order.
 */
export interface MuxSubscribeBatchAnswer {
  results: MuxSubscribeResult[];
}

/** The body of `POST unsubscribe`. */
export type MuxUnsubscribeBody = { subscription: string } | { subscriptions: string[] };

/** The answer to `POST unsubscribe` (200). */
export interface MuxUnsubscribeAnswer {
  /** The subscriptions removed: each stream ends with an `unsubscribed` event. */
  unsubscribed: string[];
  /** Ids the connection did not hold. */
  unknown: string[];
}

/** Why a subscription ended while its connection stays open. */
export type MuxUnsubscribeReason = 'client' | 'token_expired';

/** The last event of a subscription removed by `POST unsubscribe` (event name `unsubscribed`). */
export interface MuxUnsubscribedMessage {
  type: 'unsubscribed';
  subscription: string;
  project_id: string;
  stage: string | null;
  reason: MuxUnsubscribeReason;
  timestamp: number;
}

/**
 * A payload that is not a JSON object (a plain `PUBLISH` of text) on the multiplexed stream: event `message`,
 * with this data, since the raw text has no member to carry the subscription.
 */
export interface MuxRawMessage {
  raw: string;
  subscription: string;
}

/**
 * Appends `"subscription":"<id>"` as the last member of a JSON object's text, without parsing it: `json` must be
 * the text of a JSON object (leading and trailing whitespace allowed) and `subscription` match
 * {@link MUX_SUBSCRIPTION_PATTERN} (so it needs no escaping). Being last, it wins over a member of the same name.
 */
export function tagJson(json: string, subscription: string): string {
  const end = json.lastIndexOf('}');
  const start = json.indexOf('{');
  const empty = json.slice(start + 1, end).trim() === '';
  return `${json.slice(0, end)}${empty ? '' : ','}"${MUX_SUBSCRIPTION_FIELD}":"${subscription}"}`;
}

/** A fresh connection id (crypto-random, 128 bits, base64url). */
export function newConnectionId(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * A control request sent on the WebSocket: the body `POST subscribe` / `POST unsubscribe` take, with `op` and an
 * optional `request` number that its {@link MuxResultMessage} carries back.
 */
export type MuxControlMessage =
  | ({ op: 'subscribe'; request?: number } & MuxSubscribeBody)
  | ({ op: 'unsubscribe'; request?: number } & MuxUnsubscribeBody);

/**
 * The answer to a control message on the WebSocket (event `result`, no `subscription` member): exactly the status
 * and JSON body the HTTP control request would get (a {@link MuxSubscribeResult}, a {@link MuxSubscribeBatchAnswer},
 * a {@link MuxUnsubscribeAnswer}, or `{ error }`).
 */
export interface MuxResultMessage {
  type: 'result';
  /** The message's `request` number; null when it had none or was not JSON. */
  request: number | null;
  status: number;
  body: unknown;
}

/**
 * WebSocket close codes. An error that the HTTP transport answers with a status closes the WebSocket with
 * `4000 + status` (4400, 4403, 4421, 4429, 4503...) and its error code and message as the reason.
 */
export const MUX_CLOSE = {
  /** The server is restarting or shutting down: reconnect (elsewhere). */
  serverShutdown: 1012,
  /** The broker failed: reconnect and resubscribe with the cursors. */
  tryAgainLater: 1013,
  /** The client did not keep up: reconnect and resubscribe with the cursors. */
  slowConsumer: 4008,
  /** The demo's cut, or another end a resume repairs. */
  cut: 4000,
  /** No heartbeat answer: a half-open connection. */
  gone: 4001,
  /** 4000 + the HTTP status of a refusal. */
  statusBase: 4000,
} as const;

/** The close reason of a refusal: `<code>: <message>`, cut to the 123 bytes a close frame allows. */
export function closeReason(code: string, message: string): string {
  let reason = `${code}: ${message}`;
  while (new TextEncoder().encode(reason).length > 123) reason = reason.slice(0, -2) + '…';
  return reason;
}
