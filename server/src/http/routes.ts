/**
 * The HTTP surface of the contract, as a function that mounts it on a polka app: the four stream
 * endpoints, execute_stage, /healthz and the demo-only controls.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Polka, Request } from 'polka';
import type { Broker } from '../broker/broker.js';
import { ID_RULE, isValidId } from '../channels.js';
import type { Hub } from '../hub/hub.js';
import { MOCK_STAGES, isMockStage } from '../mock/mock-stage.js';
import type { TaskRunner } from '../mock/task-runner.js';
import { authorize, signToken, tokenOf, type TokenPolicy } from './auth.js';
import { ErrorCode, HttpError, sendError, sendJson } from './http-error.js';
import { readJsonBody, requireJsonContentType } from './read-json-body.js';

export interface RouteOptions {
  hub: Hub;
  broker: Broker;
  tasks: TaskRunner;
  authSecret: string | undefined;
  /** `iss` / `aud` the tokens must carry, when set. */
  authIssuer?: string | undefined;
  authAudience?: string | undefined;
  publicStreams: boolean;
  demoEnabled: boolean;
  maxStreams: number;
  maxStreamsPerClient: number;
  /** Seconds a refused client is asked to wait (Retry-After). */
  retryAfterSeconds?: number;
  onStreamOpened?: (req: IncomingMessage, info: { projectId: string; stage: string | null; resumed: boolean; requestId: string }) => void;
}

type Handler = (req: Request, res: ServerResponse) => Promise<void> | void;

const MAX_LAST_EVENT_ID = 64;
/** A request id a proxy may pass in `X-Request-Id` (nginx: `proxy_set_header X-Request-Id $request_id;`). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** Wraps a handler so that any HttpError (or crash) becomes the one JSON error shape. */
function handle(fn: Handler) {
  return async (req: Request, res: ServerResponse) => {
    try {
      await fn(req, res);
    } catch (error) {
      if (error instanceof HttpError) sendError(res, error);
      else internalError(res);
    }
  };
}

function methodNotAllowed(allowed: string): Handler {
  return (req) => {
    throw new HttpError(405, ErrorCode.methodNotAllowed, `${req.method} is not allowed here; use ${allowed}.`, { Allow: allowed });
  };
}

function requireIds(params: Record<string, string>): { projectId: string; stage: string | null } {
  const { projectId, stage } = params;
  if (!isValidId(projectId)) {
    throw new HttpError(400, ErrorCode.invalidId, `project_id must be ${ID_RULE}.`);
  }
  if (stage !== undefined && !isValidId(stage)) {
    throw new HttpError(400, ErrorCode.invalidId, `stage_name must be ${ID_RULE}.`);
  }
  return { projectId, stage: stage ?? null };
}

/** The proxy's `X-Request-Id` when it is a plain token, else a new one. */
function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** `Last-Event-ID` header, else the `lastEventId` query parameter; control characters are refused. */
function lastEventIdOf(req: Request): string | undefined {
  const raw = req.headers['last-event-id'] ?? req.query.lastEventId;
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || value === '') return undefined;
  if (value.length > MAX_LAST_EVENT_ID || /[\0-\x1f]/.test(value)) {
    throw new HttpError(400, ErrorCode.badRequest, `Last-Event-ID must be at most ${MAX_LAST_EVENT_ID} printable characters.`);
  }
  return value;
}

export function mountRoutes(app: Polka, options: RouteOptions): Polka {
  const { hub, broker, tasks, authSecret } = options;
  const policy: TokenPolicy = { secret: authSecret, issuer: options.authIssuer, audience: options.authAudience };
  const retryAfter = String(options.retryAfterSeconds ?? 5);

  const stream = (authenticated: boolean): Handler => async (req, res) => {
    // One id per stream, on its log lines and in the response, to match a client's report with the logs.
    const requestId = requestIdOf(req);
    res.setHeader('X-Request-Id', requestId);
    const { projectId, stage } = requireIds(req.params);
    // A stream ends when its token does (in-band `token_expired`); the client reconnects with a fresh one.
    const expiresAt = authenticated ? (await authorize(policy, tokenOf(req, req.query), projectId)).exp * 1000 : undefined;
    if (!authenticated && !options.publicStreams) {
      throw new HttpError(403, ErrorCode.disabled, 'Public streams are off on this server; use the authenticated endpoint (…/stream/).');
    }
    const lastEventId = lastEventIdOf(req);
    const clientKey = req.socket.remoteAddress ?? '';
    if (hub.size >= options.maxStreams) {
      throw new HttpError(503, ErrorCode.tooManyStreams, 'This server holds as many streams as it can; retry later.', { 'Retry-After': retryAfter });
    }
    if (hub.streamsOf(clientKey) >= options.maxStreamsPerClient) {
      throw new HttpError(429, ErrorCode.tooManyStreams, `At most ${options.maxStreamsPerClient} open streams per client.`, { 'Retry-After': retryAfter });
    }
    req.socket.setNoDelay(true);
    req.socket.setKeepAlive(true);
    try {
      await hub.open(res, { projectId, stage, lastEventId, clientKey, requestId, compact: req.query.compact === '1', expiresAt });
    } catch {
      throw new HttpError(503, ErrorCode.unavailable, 'The message broker is unavailable; retry later.', { 'Retry-After': retryAfter });
    }
    options.onStreamOpened?.(req, { projectId, stage, resumed: lastEventId !== undefined, requestId });
  };

  const streamRoutes: Array<[string, boolean]> = [
    ['/api/v1/sse/projects/:projectId/stages/:stage/stream', true],
    ['/api/v1/sse/projects/:projectId/stages/:stage', false],
    ['/api/v1/sse/projects/:projectId/stream', true],
    ['/api/v1/sse/projects/:projectId', false],
  ];
  for (const [path, authenticated] of streamRoutes) {
    app.get(path, handle(stream(authenticated)));
    app.all(path, handle(methodNotAllowed('GET')));
  }

  app.post(
    '/api/v1/projects/:projectId/execute_stage',
    handle(async (req, res) => {
      const { projectId } = requireIds(req.params);
      if (!options.demoEnabled) throw new HttpError(404, ErrorCode.disabled, 'The mock publisher is off (NODE_ENV=production); set SSE_ENABLE_DEMO=true to enable it.');
      if (authSecret) await authorize(policy, tokenOf(req, req.query), projectId);
      const body = await readJsonBody(req);
      const stage = body.stage_name;
      if (typeof stage !== 'string' || !isValidId(stage)) {
        throw new HttpError(400, ErrorCode.badRequest, `"stage_name" is required: ${ID_RULE}.`);
      }
      if (!isMockStage(stage)) throw new HttpError(400, ErrorCode.badRequest, `Unknown stage "${stage}"; the mock pipeline has ${MOCK_STAGES.join(', ')}.`);
      const input = body.input_data ?? {};
      if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new HttpError(400, ErrorCode.badRequest, '"input_data" must be an object.');
      const { speed = 1, fail = false } = input as Record<string, unknown>;
      if (typeof speed !== 'number' || !(speed >= 0.1 && speed <= 1000)) throw new HttpError(400, ErrorCode.badRequest, '"input_data.speed" must be a number from 0.1 to 1000.');
      if (typeof fail !== 'boolean') throw new HttpError(400, ErrorCode.badRequest, '"input_data.fail" must be true or false.');
      if (tasks.full) {
        throw new HttpError(429, ErrorCode.tooManyTasks, `At most ${tasks.maxRunning} mock stages run at once; retry when one has ended.`, { 'Retry-After': retryAfter });
      }
      const task = tasks.start(projectId, stage, { speed, fail });
      sendJson(res, 202, { ...task, message: `Started the mock ${stage} stage of project ${projectId}.` });
    }),
  );
  app.all('/api/v1/projects/:projectId/execute_stage', handle(methodNotAllowed('POST')));

  // Readiness: the broker answers, so streams can be served. /healthz is the contract's name for it. The public
  // learns up or down and which broker; counts, uptime and versions are for operators, on /metrics.
  const ready = handle(async (_req, res) => {
    const base = { broker: broker.kind };
    try {
      await broker.ping();
      sendJson(res, 200, { status: 'ok', ...base });
    } catch {
      sendJson(res, 503, { status: 'unavailable', ...base, error: { code: ErrorCode.unavailable, message: 'The message broker does not answer.' } });
    }
  });
  // Liveness: the process answers at all. A broker outage must not get a healthy process restarted.
  const live = handle((_req, res) => sendJson(res, 200, { status: 'ok' }));
  for (const [path, handler] of [['/healthz', ready], ['/readyz', ready], ['/livez', live]] as const) {
    app.get(path, handler);
    app.all(path, handle(methodNotAllowed('GET')));
  }

  // Demo-only controls: off in production unless SSE_ENABLE_DEMO=true.
  app.post(
    '/api/v1/demo/projects/:projectId/cut',
    handle((req, res) => {
      const { projectId } = requireIds(req.params);
      if (!options.demoEnabled) throw new HttpError(404, ErrorCode.disabled, 'Demo controls are off.');
      requireJsonContentType(req);
      sendJson(res, 200, { cut: hub.cutProject(projectId) });
    }),
  );
  app.post(
    '/api/v1/demo/token',
    handle(async (req, res) => {
      if (!options.demoEnabled) throw new HttpError(404, ErrorCode.disabled, 'Demo controls are off.');
      requireJsonContentType(req);
      if (!authSecret) throw new HttpError(503, ErrorCode.authNotConfigured, 'Set SSE_AUTH_SECRET on the server to mint development tokens.');
      const body = await readJsonBody(req);
      const projectId = body.project_id;
      if (!isValidId(projectId)) throw new HttpError(400, ErrorCode.invalidId, `"project_id" must be ${ID_RULE}.`);
      const ttl = 600;
      sendJson(res, 200, { token: await signToken(authSecret, [projectId], ttl), expires_in: ttl });
    }),
  );
  return app;
}

/** The JSON 500 for a handler that crashed: nothing about the crash goes to the client. */
export function internalError(res: ServerResponse): void {
  sendError(res, new HttpError(500, ErrorCode.internal, 'Internal error.'));
}

/** The JSON 404 for everything no route matches. */
export function notFound(req: IncomingMessage, res: ServerResponse): void {
  sendError(res, new HttpError(404, ErrorCode.notFound, `Nothing at ${req.method} ${(req.url ?? '').split('?')[0]}.`));
}
