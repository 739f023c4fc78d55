/**
 * The multiplexed stream (protocol/mux.ts): `GET` opens a connection, `POST subscribe` adds subscriptions to it
 * (each authorised with its own token and resumed from its own cursor), `POST unsubscribe` removes them. The hub
 * opens each subscription exactly as a stream of its own (Hub.subscribe); these routes check the requests.
 */
import type { IncomingMessage } from 'node:http';
import type { Polka, Request } from 'polka';
import { ID_RULE, isValidId } from '../../../protocol/ids.js';
import {
  MUX_CONNECTION_HEADER,
  MUX_CONNECTION_PARAM,
  MUX_CONNECTION_PATTERN,
  MUX_LIMITS,
  MUX_ROUTES,
  MUX_SUBSCRIPTION_PATTERN,
  newConnectionId,
  type MuxSubscribeResult,
  type MuxUnsubscribeAnswer,
} from '../../../protocol/mux.js';
import { DEFAULTS } from '../defaults.js';
import type { Hub, SubscribeRequest } from '../hub/hub.js';
import type { MuxConnection } from '../hub/mux-connection.js';
import { authorize, type TokenPolicy } from './auth.js';
import { handle, methodNotAllowed } from './handler.js';
import { ErrorCode, HttpError, sendJson } from './http-error.js';
import { readJsonBody } from './read-json-body.js';
import { isValidLastEventId, refuseOverLimits, requestIdOf } from './stream-routes.js';

export interface MuxRouteOptions {
  hub: Hub;
  /** How each subscription's token is checked. */
  policy: TokenPolicy;
  /** Allow subscriptions without a token; false answers them 403. */
  publicStreams: boolean;
  /** Open HTTP streams in the hub (a connection is one); more are answered 503. Default 20000. */
  maxStreams?: number;
  /** Open HTTP streams per remote address; more are answered 429. Default 64. */
  maxStreamsPerClient?: number;
  /** Subscriptions one connection may hold; more are answered 429. Default 64. */
  maxSubscriptions?: number;
  /** Seconds a refused client is asked to wait (Retry-After). Default 5. */
  retryAfterSeconds?: number;
}

/** The route patterns: polka matches them with and without the trailing slash. */
const pattern = (path: string) => path.replace(/\/$/, '');

const SUBSCRIPTION_RULE = '1-64 characters of A-Z, a-z, 0-9, ".", "_", ":" or "-"';

/** The connection id a request names: the header, else the query parameter; malformed is a 400. */
function connectionIdOf(req: Request): string | undefined {
  const raw = req.headers[MUX_CONNECTION_HEADER.toLowerCase()] ?? req.query[MUX_CONNECTION_PARAM];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || value === '') return undefined;
  if (!MUX_CONNECTION_PATTERN.test(value)) {
    throw new HttpError(400, ErrorCode.badRequest, `${MUX_CONNECTION_HEADER} must be 22-64 characters of A-Z, a-z, 0-9, "_" or "-" (a random id).`);
  }
  return value;
}

const clientKeyOf = (req: IncomingMessage) => req.socket.remoteAddress ?? '';

/** The JSON body's `subscriptions` array, or the body itself as the one item; `batch` says which. */
function itemsOf(body: Record<string, unknown>, max: number, what: string): { items: unknown[]; batch: boolean } {
  if (!('subscriptions' in body)) return { items: [body], batch: false };
  const items = body.subscriptions;
  if (!Array.isArray(items) || items.length > max) {
    throw new HttpError(400, ErrorCode.badRequest, `"subscriptions" must be an array of at most ${max} ${what}.`);
  }
  return { items, batch: true };
}

/** One subscription of a `subscribe` body, checked field by field (400 naming the field). */
interface ParsedItem {
  subscription: string;
  projectId: string;
  stage: string | null;
  token: string | undefined;
  lastEventId: string | undefined;
  snapshot: boolean;
  compact: boolean;
}

function parseItem(raw: unknown): ParsedItem {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new HttpError(400, ErrorCode.badRequest, 'Each subscription must be a JSON object.');
  }
  const item = raw as Record<string, unknown>;
  if (typeof item.subscription !== 'string' || !MUX_SUBSCRIPTION_PATTERN.test(item.subscription)) {
    throw new HttpError(400, ErrorCode.invalidId, `"subscription" must be ${SUBSCRIPTION_RULE}.`);
  }
  if (!isValidId(item.project_id)) throw new HttpError(400, ErrorCode.invalidId, `"project_id" must be ${ID_RULE}.`);
  const stage = item.stage ?? null;
  if (stage !== null && !isValidId(stage)) {
    throw new HttpError(400, ErrorCode.invalidId, `"stage" must be null or absent (every stage), or ${ID_RULE}.`);
  }
  if (item.token !== undefined && typeof item.token !== 'string') throw new HttpError(400, ErrorCode.badRequest, '"token" must be a string (a JWT).');
  const cursor = item.last_event_id ?? '';
  if (typeof cursor !== 'string' || !isValidLastEventId(cursor)) {
    throw new HttpError(400, ErrorCode.badRequest, `"last_event_id" must be a string of at most ${MUX_LIMITS.maxCursorChars} printable characters.`);
  }
  for (const flag of ['snapshot', 'compact'] as const) {
    if (item[flag] !== undefined && typeof item[flag] !== 'boolean') throw new HttpError(400, ErrorCode.badRequest, `"${flag}" must be true or false.`);
  }
  return {
    subscription: item.subscription,
    projectId: item.project_id,
    stage,
    token: item.token,
    lastEventId: cursor === '' ? undefined : cursor,
    snapshot: item.snapshot !== false,
    compact: item.compact === true,
  };
}

/** The request's `Authorization: Bearer` token: undefined without the header, '' when it is not a bearer token (a 401). */
function bearerOf(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] ?? '';
}

export function mountMuxRoutes(app: Polka, options: MuxRouteOptions): Polka {
  const { hub, policy } = options;
  const maxStreams = options.maxStreams ?? DEFAULTS.maxStreams;
  const maxStreamsPerClient = options.maxStreamsPerClient ?? DEFAULTS.maxStreamsPerClient;
  const maxSubscriptions = options.maxSubscriptions ?? DEFAULTS.maxSubscriptions;
  const retryAfter = String(options.retryAfterSeconds ?? DEFAULTS.retryAfterSeconds);
  const unavailable = () => new HttpError(503, ErrorCode.unavailable, 'The message broker is unavailable; retry later.', { 'Retry-After': retryAfter });
  // Another client's connection is answered as one that does not exist: nothing says it is there.
  const unknownConnection = () =>
    new HttpError(404, ErrorCode.unknownConnection, 'No such connection on this server (it ended, or never was here): open the stream again.');

  /** The live connection the control request names, opened by the same client. */
  const connectionOf = (req: Request, id: string): MuxConnection => {
    const connection = hub.connection(id);
    if (!connection || connection.ended || connection.clientKey !== clientKeyOf(req)) throw unknownConnection();
    return connection;
  };

  const requireConnectionId = (req: Request): string => {
    const id = connectionIdOf(req);
    if (id === undefined) throw new HttpError(400, ErrorCode.badRequest, `Name the connection in the ${MUX_CONNECTION_HEADER} header.`);
    return id;
  };

  app.get(
    pattern(MUX_ROUTES.stream),
    handle((req, res) => {
      const requestId = requestIdOf(req);
      res.setHeader('X-Request-Id', requestId);
      const connection = connectionIdOf(req) ?? newConnectionId();
      if (hub.connection(connection)) throw new HttpError(409, ErrorCode.connectionExists, 'A connection with this id is open already: choose a new random id.');
      const clientKey = clientKeyOf(req);
      // One HTTP stream, whatever it will carry.
      refuseOverLimits(hub, clientKey, { maxStreams, maxStreamsPerClient, retryAfter });
      req.socket.setNoDelay(true);
      req.socket.setKeepAlive(true);
      hub.openConnection(res, { connection, clientKey, requestId, maxSubscriptions });
    }),
  );

  /**
   * Adds (or renews) one subscription; throws the HttpError of its refusal. Answers once it joined its topic:
   * whatever is published from then on reaches it.
   */
  const subscribeOne = async (connection: MuxConnection, raw: unknown, bearer: string | undefined, requestId: string): Promise<MuxSubscribeResult> => {
    const item = parseItem(raw);
    const { subscription, projectId, stage } = item;
    // The item's own token, else the request's; never public when a token was given, even a bad one.
    const token = item.token ?? bearer;
    let expiresAt: number | undefined;
    if (token !== undefined) expiresAt = (await authorize(policy, token, projectId)).exp * 1000;
    else if (!options.publicStreams) throw new HttpError(403, ErrorCode.disabled, 'Public streams are off on this server: give the subscription a token.');
    const ok = (renewed: boolean): MuxSubscribeResult => ({ subscription, ok: true, status: 200, renewed, expires_at: expiresAt === undefined ? null : expiresAt / 1000 });

    const existing = connection.subscription(subscription);
    if (existing) {
      if (existing.projectId !== projectId || existing.stage !== stage) {
        throw new HttpError(409, ErrorCode.subscriptionExists, `The connection holds "${subscription}" for another project or stage: unsubscribe it first, or choose another id.`);
      }
      // A renew of one still joining answers once it joined, as its subscribe does.
      await existing.joined.catch(() => {
        throw unavailable();
      });
      if (connection.ended) throw unknownConnection();
      if (connection.subscription(subscription) === existing) {
        existing.stream?.renew(expiresAt);
        return ok(true);
      }
      // Removed meanwhile (unsubscribed, or its token ran out): subscribe it anew.
      if (connection.subscription(subscription)) {
        throw new HttpError(409, ErrorCode.subscriptionExists, `The connection holds "${subscription}" already.`);
      }
    }
    if (connection.size >= connection.maxSubscriptions) {
      throw new HttpError(429, ErrorCode.tooManySubscriptions, `At most ${connection.maxSubscriptions} subscriptions per connection.`, { 'Retry-After': retryAfter });
    }
    const request: SubscribeRequest = {
      subscription,
      projectId,
      stage,
      lastEventId: item.lastEventId,
      requestId,
      compact: item.compact,
      snapshot: item.snapshot,
      expiresAt,
    };
    try {
      await hub.subscribe(connection, request);
    } catch {
      throw unavailable();
    }
    // It ended while joining: the client reconnects and subscribes again.
    if (connection.ended) throw unknownConnection();
    return ok(false);
  };

  app.post(
    pattern(MUX_ROUTES.subscribe),
    handle(async (req, res) => {
      const requestId = requestIdOf(req);
      res.setHeader('X-Request-Id', requestId);
      const id = requireConnectionId(req);
      const body = await readJsonBody(req, MUX_LIMITS.maxBodyBytes);
      const connection = connectionOf(req, id);
      const { items, batch } = itemsOf(body, connection.maxSubscriptions, 'subscriptions');
      const bearer = bearerOf(req);
      if (!batch) {
        sendJson(res, 200, await subscribeOne(connection, items[0], bearer, requestId));
        return;
      }
      // Each on its own: one refused (a bad token, a bad id) does not fail the others.
      const results = await Promise.all(
        items.map((item) =>
          subscribeOne(connection, item, bearer, requestId).catch((error: unknown): MuxSubscribeResult => {
            const refusal = error instanceof HttpError ? error : new HttpError(500, ErrorCode.internal, 'Internal error.');
            const subscription = (item as { subscription?: unknown } | null)?.subscription;
            return {
              subscription: typeof subscription === 'string' ? subscription : '',
              ok: false,
              status: refusal.status,
              error: { code: refusal.code, message: refusal.message },
            };
          }),
        ),
      );
      sendJson(res, 200, { results });
    }),
  );

  app.post(
    pattern(MUX_ROUTES.unsubscribe),
    handle(async (req, res) => {
      const id = requireConnectionId(req);
      const body = await readJsonBody(req, MUX_LIMITS.maxBodyBytes);
      const connection = connectionOf(req, id);
      const ids = 'subscriptions' in body ? itemsOf(body, connection.maxSubscriptions, 'subscription ids').items : [body.subscription];
      for (const subscription of ids) {
        if (typeof subscription !== 'string' || !MUX_SUBSCRIPTION_PATTERN.test(subscription)) {
          throw new HttpError(400, ErrorCode.invalidId, `"subscription" must be ${SUBSCRIPTION_RULE}.`);
        }
      }
      const answer: MuxUnsubscribeAnswer = { unsubscribed: [], unknown: [] };
      for (const subscription of ids as string[]) (connection.unsubscribe(subscription) ? answer.unsubscribed : answer.unknown).push(subscription);
      sendJson(res, 200, answer);
    }),
  );

  app.all(pattern(MUX_ROUTES.stream), handle(methodNotAllowed('GET')));
  app.all(pattern(MUX_ROUTES.subscribe), handle(methodNotAllowed('POST')));
  app.all(pattern(MUX_ROUTES.unsubscribe), handle(methodNotAllowed('POST')));
  return app;
}
