/** Reads a JSON request body with a size cap, as HttpErrors: 413 when too large, 400 when not a JSON object. */
import type { IncomingMessage } from 'node:http';
import { DEFAULTS } from '../defaults.js';
import { ErrorCode, HttpError } from './http-error.js';

export const MAX_BODY_BYTES = DEFAULTS.maxBodyBytes;

/**
 * A state-changing request must say it sends JSON. A cross-site form or a `text/plain` fetch (the requests a
 * browser sends to any origin without a preflight) cannot, so no other page can trigger the action: 415.
 */
export function requireJsonContentType(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    req.resume();
    throw new HttpError(415, ErrorCode.unsupportedMediaType, `Send "Content-Type: application/json" (got ${type ? `"${type}"` : 'none'}).`);
  }
}

export async function readJsonBody(req: IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<Record<string, unknown>> {
  requireJsonContentType(req);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume();
    throw new HttpError(413, ErrorCode.payloadTooLarge, `The body is ${declared} bytes; at most ${maxBytes} are accepted.`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      req.resume();
      throw new HttpError(413, ErrorCode.payloadTooLarge, `The body is larger than ${maxBytes} bytes.`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, ErrorCode.invalidJson, `The body is not valid JSON: ${(error as Error).message}`);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, ErrorCode.invalidJson, 'The body must be a JSON object.');
  }
  return body as Record<string, unknown>;
}
