/**
 * What an HTTP answer of the server means to the client: a 200 must be an event stream; any other status is
 * retried (408, 429, 5xx, after `Retry-After` when the server sends one) or fatal, and may carry the server's
 * JSON error body. A retried status whose error code says that no retry can help (see {@link FATAL_ERROR_CODES})
 * is fatal too.
 */
import type { ErrorBody } from '../../protocol/messages.js';

/** The server's error, from its JSON error body: `{"error": {"code": "...", "message": "..."}}`. */
export type ServerError = ErrorBody['error'];

/** A non-200 answer, read. */
export interface HttpFailure {
  status: number;
  /** The server's error, when the body was its JSON error body. */
  error: ServerError | undefined;
  /**
   * True for 408, 429 and 5xx, unless the error code is one of {@link FATAL_ERROR_CODES}: worth another attempt.
   * [spec] Every other status "fails the connection".
   */
  retry: boolean;
  /** How long the server asked to wait (`Retry-After`), in ms, for a retried status that sent one. */
  retryAfterMs: number | undefined;
}

/** Retried HTTP statuses besides 5xx. */
const RETRIED_STATUSES: ReadonlySet<number> = new Set([408, 429]);

/**
 * Error codes that stop the client even on a retried status: a setting of the server that no retry changes.
 * `auth_not_configured`: a token was sent to a server without token keys (503, no `Retry-After`).
 */
export const FATAL_ERROR_CODES: ReadonlySet<string> = new Set(['auth_not_configured']);

export function isRetriedStatus(status: number): boolean {
  return RETRIED_STATUSES.has(status) || status >= 500;
}

/** True when a refusal is worth another attempt: a retried status, without an error code that says it never will be. */
export function isRetriedFailure(status: number, error?: Pick<ServerError, 'code'>): boolean {
  return isRetriedStatus(status) && !(error !== undefined && FATAL_ERROR_CODES.has(error.code));
}

/** `Retry-After` in ms: delay-seconds or an HTTP date (relative to `now`, in ms since the epoch). Undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** True when the answer is `text/event-stream` (any parameters, any case): otherwise the URL points at something else. */
export function isEventStream(response: Response): boolean {
  const type = response.headers.get('content-type') ?? '';
  return type.split(';')[0]?.trim().toLowerCase() === 'text/event-stream';
}

/** Reads a non-200 answer: whether to retry and when, and the server's error if the body is its JSON error. Consumes the body. */
export async function readHttpFailure(response: Response, now: number): Promise<HttpFailure> {
  const { status } = response;
  const error = await readServerError(response);
  const retry = isRetriedFailure(status, error);
  const retryAfterMs = retry ? parseRetryAfter(response.headers.get('retry-after'), now) : undefined;
  return { status, error, retry, retryAfterMs };
}

async function readServerError(response: Response): Promise<ServerError | undefined> {
  if (!(response.headers.get('content-type') ?? '').includes('json')) {
    await response.body?.cancel().catch(() => undefined);
    return undefined;
  }
  try {
    const body = (await response.json()) as { error?: Partial<ServerError> };
    const { code, message } = body.error ?? {};
    return typeof code === 'string' ? { code, message: String(message ?? '') } : undefined;
  } catch {
    return undefined;
  }
}
