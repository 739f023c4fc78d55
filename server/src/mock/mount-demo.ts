/**
 * The demo's endpoints, apart from the library: `execute_stage` (runs a mock pipeline stage through the real
 * publisher), and the demo-only controls (cut a project's streams, mint a development token). The standalone
 * server mounts them when the demo is on, and {@link mountDemoDisabled} when it is off; `mountSse` never does.
 */
import type { Polka } from 'polka';
import { Route } from '../../../protocol/routes.js';
import type { Broker } from '../broker/broker.js';
import { ID_RULE, isValidId } from '../channels.js';
import { DEFAULTS } from '../defaults.js';
import type { Hub } from '../hub/hub.js';
import { authorize, checksTokens, signToken, tokenOf, type TokenPolicy } from '../http/auth.js';
import type { TokenKeys } from '../http/token-keys.js';
import { handle, methodNotAllowed, requireIds } from '../http/handler.js';
import { ErrorCode, HttpError, sendJson } from '../http/http-error.js';
import { readJsonBody, requireJsonContentType } from '../http/read-json-body.js';
import type { SseLogger } from '../mount.js';
import { MOCK_STAGES, isMockStage } from './mock-stage.js';
import { TaskRunner } from './task-runner.js';

export interface DemoOptions {
  /** The hub whose streams `cut` ends (the one `mountSse` returned). */
  hub: Pick<Hub, 'cutProject'>;
  /** Where the mock stages publish. It stays the caller's. */
  broker: Broker;
  /**
   * The HS256 secret of the stream tokens (`mountSse`'s): with it, `execute_stage` needs a token for its project,
   * and `demo/token` mints tokens for anyone who asks. Without, `execute_stage` is open and `demo/token` answers 503.
   * Default unset.
   */
  authSecret?: string | undefined;
  /** The `iss` / `aud` the tokens `execute_stage` takes must carry, when set (as `mountSse`'s). Default unset. */
  authIssuer?: string | undefined;
  authAudience?: string | undefined;
  /** Public keys (`mountSse`'s `authKeys`): `execute_stage` then needs a token signed by their private key. Default unset. */
  authKeys?: TokenKeys | undefined;
  authClockToleranceSeconds?: number | undefined;
  /** Mock stages that may run at once; `execute_stage` answers 429 beyond. Default 16. */
  maxDemoTasks?: number;
  /** The lease of the mock stages' publishers, in ms. Default 30000 (`DEFAULTS.leaseMs`). */
  leaseMs?: number | undefined;
  /** Gets a line when a mock stage fails to publish. Default: no logs. */
  logger?: SseLogger | undefined;
  /** Seconds a refused run is asked to wait (Retry-After). Default 5. */
  retryAfterSeconds?: number;
}

export interface DemoMount {
  /** The mock stages under way. */
  readonly tasks: TaskRunner;
  /** Stops every mock run. The routes stay. */
  close(): void;
}

/** Mounts `execute_stage` and the demo-only controls on `app`. Anyone who reaches them can start jobs and mint tokens. */
export function mountDemo(app: Polka, options: DemoOptions): DemoMount {
  const { hub, broker, logger } = options;
  const policy: TokenPolicy = {
    secret: options.authSecret,
    keys: options.authKeys,
    issuer: options.authIssuer,
    audience: options.authAudience,
    clockToleranceSeconds: options.authClockToleranceSeconds,
  };
  const retryAfter = String(options.retryAfterSeconds ?? DEFAULTS.retryAfterSeconds);
  const tasks = new TaskRunner(broker, (error, task) => logger?.error({ err: error, ...task }, 'mock stage failed to publish'), options.maxDemoTasks, options.leaseMs);

  app.post(
    Route.executeStage,
    handle(async (req, res) => {
      const { projectId } = requireIds(req.params);
      if (checksTokens(policy)) await authorize(policy, tokenOf(req, req.query), projectId);
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
  app.all(Route.executeStage, handle(methodNotAllowed('POST')));

  app.post(
    Route.demoCut,
    handle((req, res) => {
      const { projectId } = requireIds(req.params);
      requireJsonContentType(req);
      sendJson(res, 200, { cut: hub.cutProject(projectId) });
    }),
  );
  app.post(
    Route.demoToken,
    handle(async (req, res) => {
      requireJsonContentType(req);
      if (!policy.secret) throw new HttpError(503, ErrorCode.authNotConfigured, 'Set SSE_AUTH_SECRET on the server to mint development tokens.');
      const body = await readJsonBody(req);
      const projectId = body.project_id;
      if (!isValidId(projectId)) throw new HttpError(400, ErrorCode.invalidId, `"project_id" must be ${ID_RULE}.`);
      const ttl = DEFAULTS.demoTokenTtlSeconds;
      sendJson(res, 200, { token: await signToken(policy.secret, [projectId], ttl), expires_in: ttl });
    }),
  );

  return {
    tasks,
    close: () => tasks.stopAll(),
  };
}

/**
 * The same paths on a server with the demo off (production): a JSON 404 `disabled` that says how to turn it on,
 * rather than the 404 of a path nobody knows.
 */
export function mountDemoDisabled(app: Polka): Polka {
  app.post(
    Route.executeStage,
    handle((req) => {
      requireIds(req.params);
      throw new HttpError(404, ErrorCode.disabled, 'The mock publisher is off (NODE_ENV=production); set SSE_ENABLE_DEMO=true to enable it.');
    }),
  );
  app.all(Route.executeStage, handle(methodNotAllowed('POST')));
  app.post(
    Route.demoCut,
    handle((req) => {
      requireIds(req.params);
      throw new HttpError(404, ErrorCode.disabled, 'Demo controls are off.');
    }),
  );
  app.post(
    Route.demoToken,
    handle(() => {
      throw new HttpError(404, ErrorCode.disabled, 'Demo controls are off.');
    }),
  );
  return app;
}
