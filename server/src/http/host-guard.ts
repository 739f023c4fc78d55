/**
 * The DNS-rebinding guard: a page on evil.example whose name is made to resolve to 127.0.0.1 can reach a dev
 * server there, but its requests still say `Host: evil.example`. Answer only the names the server is meant to have.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, HttpError, sendError } from './http-error.js';

/** The name part of a `Host` header, lower case: `[::1]:8000` -> `::1`, `Example.com:80` -> `example.com`. */
export function hostName(header: string | undefined): string {
  const value = (header ?? '').trim().toLowerCase();
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(value);
  if (bracketed) return bracketed[1]!;
  const colon = value.indexOf(':');
  return colon < 0 || value.indexOf(':', colon + 1) >= 0 ? value : value.slice(0, colon);
}

/**
 * A middleware that answers 421 (JSON) to any request whose `Host` is not one of `allowed`.
 * `null` allows every host.
 */
export function hostGuard(allowed: readonly string[] | null) {
  const names = allowed && new Set(allowed.map((name) => name.toLowerCase()));
  return (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    if (!names || names.has(hostName(req.headers.host))) return next();
    sendError(
      res,
      new HttpError(421, ErrorCode.misdirected, `This server does not answer for host "${hostName(req.headers.host)}"; set SSE_ALLOWED_HOSTS to serve it.`),
    );
  };
}
