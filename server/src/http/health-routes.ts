/** `/healthz` and `/readyz` (the broker answers) and `/livez` (the process answers). */
import type { Polka } from 'polka';
import { Route } from '../../../protocol/routes.js';
import type { Broker } from '../broker/broker.js';
import { DEFAULTS } from '../defaults.js';
import { handle, methodNotAllowed } from './handler.js';
import { ErrorCode, sendJson } from './http-error.js';

export interface HealthRouteOptions {
  /** How long the readiness check waits for the broker before it answers 503, in ms. Default 500. */
  timeoutMs?: number;
}

/** Resolves to why the broker is not ready within `timeoutMs`, or undefined once it answered. */
async function brokerProblem(broker: Pick<Broker, 'ping'>, timeoutMs: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`The message broker did not answer within ${timeoutMs} ms.`), timeoutMs);
  });
  // A ping to a Redis that is down waits in ioredis's queue for its command timeout (5 s): stop waiting sooner.
  const answered = broker.ping().then(
    () => undefined,
    () => 'The message broker refused the check.',
  );
  try {
    return await Promise.race([answered, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

export function mountHealthRoutes(app: Polka, broker: Pick<Broker, 'kind' | 'ping'>, options: HealthRouteOptions = {}): Polka {
  const timeoutMs = options.timeoutMs ?? DEFAULTS.healthTimeoutMs;
  // Readiness: the broker answers, so streams can be served. /healthz is the contract's name for it. The public
  // learns up or down and which broker; counts, uptime and versions are for operators, on /metrics.
  const ready = handle(async (_req, res) => {
    const base = { broker: broker.kind };
    const problem = await brokerProblem(broker, timeoutMs);
    if (problem === undefined) sendJson(res, 200, { status: 'ok', ...base });
    else sendJson(res, 503, { status: 'unavailable', ...base, error: { code: ErrorCode.unavailable, message: problem } });
  });
  // Liveness: the process answers at all. A broker outage must not get a healthy process restarted.
  const live = handle((_req, res) => sendJson(res, 200, { status: 'ok' }));
  for (const [path, handler] of [[Route.healthz, ready], [Route.readyz, ready], [Route.livez, live]] as const) {
    app.get(path, handler);
    app.all(path, handle(methodNotAllowed('GET')));
  }
  return app;
}
