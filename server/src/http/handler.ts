/** What every route handler shares: one JSON error shape for any failure, the 404/405/500 answers, the id check. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request } from 'polka';
import { ID_RULE, isValidId } from '../channels.js';
import { ErrorCode, HttpError, sendError } from './http-error.js';

export type Handler = (req: Request, res: ServerResponse) => Promise<void> | void;

/** Wraps a handler so that any HttpError (or crash) becomes the one JSON error shape. */
export function handle(fn: Handler) {
  return async (req: Request, res: ServerResponse) => {
    try {
      await fn(req, res);
    } catch (error) {
      if (error instanceof HttpError) sendError(res, error);
      else internalError(res);
    }
  };
}

/** The 405 of a path served only with `allowed`, naming it in `Allow`. */
export function methodNotAllowed(allowed: string): Handler {
  return (req) => {
    throw new HttpError(405, ErrorCode.methodNotAllowed, `${req.method} is not allowed here; use ${allowed}.`, { Allow: allowed });
  };
}

/** The `:projectId` and optional `:stage` of a route, checked by the id rule (400 otherwise). */
export function requireIds(params: Record<string, string>): { projectId: string; stage: string | null } {
  const { projectId, stage } = params;
  if (!isValidId(projectId)) {
    throw new HttpError(400, ErrorCode.invalidId, `project_id must be ${ID_RULE}.`);
  }
  if (stage !== undefined && !isValidId(stage)) {
    throw new HttpError(400, ErrorCode.invalidId, `stage_name must be ${ID_RULE}.`);
  }
  return { projectId, stage: stage ?? null };
}

/** The JSON 500 for a handler that crashed: nothing about the crash goes to the client. */
export function internalError(res: ServerResponse): void {
  sendError(res, new HttpError(500, ErrorCode.internal, 'Internal error.'));
}

/** The JSON 404 for everything no route matches. */
export function notFound(req: IncomingMessage, res: ServerResponse): void {
  sendError(res, new HttpError(404, ErrorCode.notFound, `Nothing at ${req.method} ${(req.url ?? '').split('?')[0]}.`));
}

const NOTHING: Record<string, never> = Object.freeze({});

/**
 * What routing parsed off the request (polka's `_parsedUrl`, `query` and `params` objects) is no use once a
 * long-lived response (a stream, a multiplexed connection) runs, and the request lives as long as it does: let
 * it go (a few hundred bytes per open stream).
 */
export function forgetRoute(req: Request): void {
  (req as { _parsedUrl?: unknown })._parsedUrl = undefined;
  req.query = NOTHING;
  req.params = NOTHING;
}
