/**
 * The four stream endpoints of the contract: a stage or a whole project, public or with a token. Each checks
 * the request and the limits, then hands the response to the hub.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Polka, Request } from 'polka';
import { QueryParam, STREAM_ROUTES } from '../../../protocol/routes.js';
import { DEFAULTS } from '../defaults.js';
import type { Hub } from '../hub/hub.js';
import { authorize, tokenOf, type TokenPolicy } from './auth.js';
import { clientAddressOf } from './client-address.js';
import { forgetRoute, handle, methodNotAllowed, requireIds, type Handler } from './handler.js';
import { parseFilter } from './filter.js';
import { ErrorCode, HttpError } from './http-error.js';

export interface StreamRouteOptions {
  hub: Hub;
  /** How tokens of the authenticated endpoints are checked; without a secret they answer 503. */
  policy: TokenPolicy;
  /** Serve the unauthenticated endpoints; false answers them 403. */
  publicStreams: boolean;
  /** Open streams in the hub; more are answered 503. Default 20000. */
  maxStreams?: number;
  /** Open streams per remote address; more are answered 429. Default 64. */
  maxStreamsPerClient?: number;
  /** Seconds a refused client is asked to wait (Retry-After). Default 5. */
  retryAfterSeconds?: number;
}

const MAX_LAST_EVENT_ID = 64;

/** A `Last-Event-ID` the streams accept: at most 64 characters, none of them a control character. */
export function isValidLastEventId(value: string): boolean {
  return value.length <= MAX_LAST_EVENT_ID && !/[\0-\x1f]/.test(value);
}
/** A request id a proxy may pass in `X-Request-Id` (nginx: `proxy_set_header X-Request-Id $request_id;`). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** The proxy's `X-Request-Id` when it is a plain token, else a new one. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** `?snapshot=`: absent, `1` or `0`; anything else is refused, so a typo does not silently mean the default. */
function snapshotOf(req: Request): boolean {
  const raw = req.query[QueryParam.snapshot];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || value === '' || value === '1') return true;
  if (value === '0') return false;
  throw new HttpError(400, ErrorCode.badRequest, `${QueryParam.snapshot} must be 0 (no snapshot first) or 1 (the default).`);
}

/** `Last-Event-ID` header, else the `lastEventId` query parameter; control characters are refused. */
function lastEventIdOf(req: Request): string | undefined {
  const raw = req.headers['last-event-id'] ?? req.query[QueryParam.lastEventId];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || value === '') return undefined;
  if (!isValidLastEventId(value)) {
    throw new HttpError(400, ErrorCode.badRequest, `Last-Event-ID must be at most ${MAX_LAST_EVENT_ID} printable characters.`);
  }
  return value;
}

/**
 * The stream limits, for a new HTTP stream (a stream of its own, or a multiplexed connection): 503 when the
 * process holds `maxStreams`, 429 when the client holds `maxStreamsPerClient`, both with Retry-After.
 */
export function refuseOverLimits(
  hub: Pick<Hub, 'size' | 'streamsOf'>,
  clientKey: string,
  { maxStreams, maxStreamsPerClient, retryAfter }: { maxStreams: number; maxStreamsPerClient: number; retryAfter: string },
): void {
  if (hub.size >= maxStreams) {
    throw new HttpError(503, ErrorCode.tooManyStreams, 'This server holds as many streams as it can; retry later.', { 'Retry-After': retryAfter });
  }
  if (hub.streamsOf(clientKey) >= maxStreamsPerClient) {
    throw new HttpError(429, ErrorCode.tooManyStreams, `At most ${maxStreamsPerClient} open streams per client.`, { 'Retry-After': retryAfter });
  }
}

/** A query parameter given once (a repeated one is refused: which would count?). */
function queryValue(req: Request, name: string): string | undefined {
  const raw = req.query[name];
  if (Array.isArray(raw)) throw new HttpError(400, ErrorCode.badRequest, `Give "${name}" once (comma-separated).`);
  return raw;
}

export function mountStreamRoutes(app: Polka, options: StreamRouteOptions): Polka {
  const { hub, policy } = options;
  const maxStreams = options.maxStreams ?? DEFAULTS.maxStreams;
  const maxStreamsPerClient = options.maxStreamsPerClient ?? DEFAULTS.maxStreamsPerClient;
  const retryAfter = String(options.retryAfterSeconds ?? DEFAULTS.retryAfterSeconds);

  const stream = (authenticated: boolean): Handler => async (req, res) => {
    // One id per stream, on its log lines and in the response, to match a client's report with the logs.
    const requestId = requestIdOf(req);
    try {
      await openStream(req, res, requestId, authenticated);
    } catch (error) {
      // An error answer carries the id too; a stream's head gets it from the hub (ResponseSink).
      if (!res.headersSent) res.setHeader('X-Request-Id', requestId);
      throw error;
    }
  };

  const openStream = async (req: Request, res: ServerResponse, requestId: string, authenticated: boolean): Promise<void> => {
    const { projectId, stage } = requireIds(req.params);
    // A stream ends when its token does (in-band `token_expired`); the client reconnects with a fresh one.
    const expiresAt = authenticated ? (await authorize(policy, tokenOf(req, req.query), projectId)).exp * 1000 : undefined;
    if (!authenticated && !options.publicStreams) {
      throw new HttpError(403, ErrorCode.disabled, 'Public streams are off on this server; use the authenticated endpoint (…/stream/).');
    }
    const lastEventId = lastEventIdOf(req);
    const snapshot = snapshotOf(req);
    const clientKey = clientAddressOf(req);
    refuseOverLimits(hub, clientKey, { maxStreams, maxStreamsPerClient, retryAfter });
    req.socket.setNoDelay(true);
    req.socket.setKeepAlive(true);
    const compact = req.query[QueryParam.compact] === '1';
    const filter = parseFilter(queryValue(req, QueryParam.types), queryValue(req, QueryParam.stages), stage);
    try {
      // The hub announces the stream (`stream-opened`) for logs and metrics.
      await hub.open(res, { projectId, stage, lastEventId, clientKey, requestId, compact, snapshot, expiresAt, filter });
      forgetRoute(req);
    } catch {
      throw new HttpError(503, ErrorCode.unavailable, 'The message broker is unavailable; retry later.', { 'Retry-After': retryAfter });
    }
  };

  for (const { pattern, authenticated } of STREAM_ROUTES) {
    app.get(pattern, handle(stream(authenticated)));
    app.all(pattern, handle(methodNotAllowed('GET')));
  }
  return app;
}
