/** `/healthz` and `/readyz` (the broker answers) and `/livez` (the process answers). */
import type { Polka } from 'polka';
import { Route } from '../../../protocol/routes.js';
import type { Broker } from '../broker/broker.js';
import { handle, methodNotAllowed } from './handler.js';
import { ErrorCode, sendJson } from './http-error.js';

export function mountHealthRoutes(app: Polka, broker: Pick<Broker, 'kind' | 'ping'>): Polka {
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
  for (const [path, handler] of [[Route.healthz, ready], [Route.readyz, ready], [Route.livez, live]] as const) {
    app.get(path, handler);
    app.all(path, handle(methodNotAllowed('GET')));
  }
  return app;
}
