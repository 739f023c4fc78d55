/**
 * `POST /api/v1/projects/{project_id}/stages/{stage_name}/cancel/`: cancels a running stage. The broker records the
 * cancel and logs and publishes a `cancelled` message once (publish.lua, op `cancel`); the stage's worker hears it
 * on its control channel and its next publish is refused (StageCancelledError).
 *
 * With a secret it needs a token for the project (as the authenticated streams); without one it is off (403
 * `disabled`) unless `open` (the standalone server in demo mode): reading a public stream never lets anyone
 * cancel someone else's job.
 */
import type { Polka } from 'polka';
import { Route } from '../../../protocol/routes.js';
import type { CancelledMessage } from '../../../protocol/messages.js';
import type { StageControlBroker } from '../broker/broker.js';
import { authorize, checksTokens, tokenOf, type TokenPolicy } from './auth.js';
import { handle, methodNotAllowed, requireIds } from './handler.js';
import { ErrorCode, HttpError, sendJson } from './http-error.js';
import { readJsonBody, requireJsonContentType } from './read-json-body.js';

export interface CancelRouteOptions {
  broker: StageControlBroker;
  policy: TokenPolicy;
  /** Without a secret: serve it to anyone (demo mode) instead of answering 403. */
  open: boolean;
}

export function mountCancelRoutes(app: Polka, { broker, policy, open }: CancelRouteOptions): void {
  app.post(
    Route.cancelStage,
    handle(async (req, res) => {
      const { projectId, stage } = requireIds(req.params);
      requireJsonContentType(req);
      if (checksTokens(policy)) await authorize(policy, tokenOf(req, req.query), projectId);
      else if (!open) throw new HttpError(403, ErrorCode.disabled, 'Cancel needs a token: set SSE_AUTH_SECRET or a public key on the server (it is open only in demo mode).');
      const body = await readJsonBody(req);
      const reason = typeof body.reason === 'string' ? body.reason.slice(0, 500) : 'cancelled by the user';
      const message: CancelledMessage = { type: 'cancelled', stage: stage!, project_id: projectId, timestamp: Date.now() / 1000, reason };
      const result = await broker.control(projectId, stage!, 'cancel', JSON.stringify(message)).catch(() => {
        throw new HttpError(503, ErrorCode.unavailable, 'The broker did not answer; retry the cancel.', { 'Retry-After': '1' });
      });
      const ids = { project_id: projectId, stage };
      if (result.outcome === 'cancelled') return sendJson(res, 200, { cancelled: true, already_cancelled: false, id: result.id, ...ids });
      if (result.outcome === 'already_cancelled') return sendJson(res, 200, { cancelled: true, already_cancelled: true, id: result.id, ...ids });
      if (result.outcome === 'finished') {
        return sendJson(res, 409, { error: { code: 'stage_finished', message: `Stage "${stage}" already ended (${result.status}); there is nothing to cancel.` }, status: result.status, ...ids });
      }
      return sendJson(res, 409, { error: { code: 'stage_not_running', message: `Stage "${stage}" of project "${projectId}" has not run (or its log expired); there is nothing to cancel.` }, status: 'not_running', ...ids });
    }),
  );
  app.all(Route.cancelStage, handle(methodNotAllowed('POST')));
}
