/** The one error type of the HTTP layer, and the one JSON shape every error answer has. */
import type { ServerResponse } from 'node:http';

export const ErrorCode = {
  badRequest: 'bad_request',
  invalidId: 'invalid_id',
  invalidJson: 'invalid_json',
  unauthorized: 'unauthorized',
  forbidden: 'forbidden',
  notFound: 'not_found',
  methodNotAllowed: 'method_not_allowed',
  payloadTooLarge: 'payload_too_large',
  unsupportedMediaType: 'unsupported_media_type',
  misdirected: 'misdirected_request',
  originNotAllowed: 'origin_not_allowed',
  requestHeaderFieldsTooLarge: 'request_header_fields_too_large',
  tooManyTasks: 'too_many_tasks',
  tooManyStreams: 'too_many_streams',
  connectionExists: 'connection_exists',
  unknownConnection: 'unknown_connection',
  tooManySubscriptions: 'too_many_subscriptions',
  subscriptionExists: 'subscription_exists',
  unavailable: 'unavailable',
  authNotConfigured: 'auth_not_configured',
  disabled: 'disabled',
  internal: 'internal_error',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, error: HttpError): void {
  sendJson(res, error.status, { error: { code: error.code, message: error.message } }, error.headers);
}
