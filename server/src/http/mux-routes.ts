/**
 * The multiplexed stream (protocol/mux.ts): `GET` opens a connection, `POST subscribe` adds subscriptions to it
 * (each authorised with its own token and resumed from its own cursor), `POST unsubscribe` removes them. The hub
 * opens each subscription exactly as a stream of its own (Hub.subscribe); these routes check the requests.
 */
import type { IncomingMessage } from 'node:http';
import type { Polka, Request } from 'polka';
import {
  MUX_CONNECTION_HEADER,
  MUX_CONNECTION_PARAM,
  MUX_CONNECTION_PATTERN,
  MUX_LIMITS,
  MUX_ROUTES,
  newConnectionId,
} from '../../../protocol/mux.js';
import { DEFAULTS } from '../defaults.js';
import type { Hub } from '../hub/hub.js';
import type { MuxConnection } from '../hub/mux-connection.js';
import type { TokenPolicy } from './auth.js';
import { forgetRoute, handle, methodNotAllowed } from './handler.js';
import { ErrorCode, HttpError, sendJson } from './http-error.js';
import { MuxControl, UnknownConnectionError } from './mux-control.js';
import { readJsonBody } from './read-json-body.js';
import { refuseOverLimits, requestIdOf } from './stream-routes.js';
import { clientAddressOf } from './client-address.js';

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

const clientKeyOf = (req: IncomingMessage) => clientAddressOf(req);

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
  const control = new MuxControl({ hub, policy, publicStreams: options.publicStreams, retryAfter });

  /** The live connection the control request names, opened by the same client. */
  const connectionOf = (req: Request, id: string): MuxConnection => {
    const connection = hub.connection(id);
    // Another client's connection is answered as one that does not exist: nothing says it is there.
    if (!connection || connection.ended || connection.clientKey !== clientKeyOf(req)) throw new UnknownConnectionError();
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
      try {
        const connection = connectionIdOf(req) ?? newConnectionId();
        if (hub.connection(connection)) throw new HttpError(409, ErrorCode.connectionExists, 'A connection with this id is open already: choose a new random id.');
        const clientKey = clientKeyOf(req);
        // One HTTP stream, whatever it will carry.
        refuseOverLimits(hub, clientKey, { maxStreams, maxStreamsPerClient, retryAfter });
        req.socket.setNoDelay(true);
        req.socket.setKeepAlive(true);
        // The head gets the id from the hub (ResponseWire), so the response keeps no header table.
        hub.openConnection(res, { connection, clientKey, requestId, maxSubscriptions });
        forgetRoute(req);
      } catch (error) {
        if (!res.headersSent) res.setHeader('X-Request-Id', requestId);
        throw error;
      }
    }),
  );

  app.post(
    pattern(MUX_ROUTES.subscribe),
    handle(async (req, res) => {
      const requestId = requestIdOf(req);
      res.setHeader('X-Request-Id', requestId);
      const id = requireConnectionId(req);
      const body = await readJsonBody(req, MUX_LIMITS.maxBodyBytes);
      const answer = await control.subscribe(connectionOf(req, id), body, bearerOf(req), requestId);
      sendJson(res, answer.status, answer.body, answer.headers);
    }),
  );

  app.post(
    pattern(MUX_ROUTES.unsubscribe),
    handle(async (req, res) => {
      const id = requireConnectionId(req);
      const body = await readJsonBody(req, MUX_LIMITS.maxBodyBytes);
      const answer = control.unsubscribe(connectionOf(req, id), body);
      sendJson(res, answer.status, answer.body, answer.headers);
    }),
  );

  app.all(pattern(MUX_ROUTES.stream), handle(methodNotAllowed('GET')));
  app.all(pattern(MUX_ROUTES.subscribe), handle(methodNotAllowed('POST')));
  app.all(pattern(MUX_ROUTES.unsubscribe), handle(methodNotAllowed('POST')));
  return app;
}
