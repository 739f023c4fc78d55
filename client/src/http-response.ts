/**
 * What an HTTP answer of the server means to the client: a 200 must be an event stream; any other status is
 * retried (408, 429, 5xx, after `Retry-After` when the server sends one) or fatal, and may carry the server's
 * JSON error body.
 */
import type { ErrorBody } from '../../protocol/messages.js';

/** The server's error, from its JSON error body: `{"error": {"code": "...", "message": "..."}}`. */
export type ServerError = ErrorBody['error'];

/** A non-200 answer, read. */
export interface HttpFailure {
  status: number;
  /** The server's error, when the body was its JSON error body. */
  error: ServerError | undefined;
  /** True for 408, 429 and 5xx: worth another attempt. [spec] Every other status "fails the connection". */
  retry: boolean;
  /** How long the server asked to wait (`Retry-After`), in ms, for a retried status that sent one. */
  retryAfterMs: number | undefined;
}

/** Retried HTTP statuses besides 5xx. */
const RETRIED_STATUSES: ReadonlySet<number> = new Set([408, 429]);

export function isRetriedStatus(status: number): boolean {
  return RETRIED_STATUSES.has(status) || status >= 500;
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
  const retry = isRetriedStatus(status);
  const retryAfterMs = retry ? parseRetryAfter(response.headers.get('retry-after'), now) : undefined;
  return { status, error: await readServerError(response), retry, retryAfterMs };
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
