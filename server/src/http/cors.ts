/**
 * Cross-origin use (`SSE_CORS_ORIGINS`, `mountSse({ corsOrigins })`): the exact origins whose pages may call the
 * hub's endpoints from a browser. A request from a listed origin gets it back in `Access-Control-Allow-Origin` (its
 * errors too, so the page can read why), and its preflight a 204; an unlisted origin gets no CORS header, so the
 * browser keeps the answer from its page, and its preflight a JSON 403 that says what to set.
 *
 * No `Access-Control-Allow-Credentials`: tokens travel in `Authorization` (or `?access_token=`), never in cookies,
 * so a page needs no credentialed request and the hub never answers one as such.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MUX_CONNECTION_HEADER } from '../../../protocol/mux.js';
import { ErrorCode, HttpError, sendError } from './http-error.js';

/** A path (a polka pattern: `:name` segments, trailing slash optional) and the methods a browser may use on it. */
export interface CorsRoute {
  pattern: string;
  methods: readonly string[];
}

/** Request headers a page may send: the token, the JSON body's type, the resume cursor, the connection id. */
export const CORS_ALLOW_HEADERS: readonly string[] = ['Authorization', 'Content-Type', 'Last-Event-ID', MUX_CONNECTION_HEADER, 'X-Request-Id'];
/** Response headers a page may read besides the safelisted ones: when to retry, the request id, why a token failed. */
export const CORS_EXPOSE_HEADERS: readonly string[] = ['Retry-After', 'X-Request-Id', 'WWW-Authenticate'];
/** How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours). */
export const CORS_MAX_AGE_SECONDS = 600;

/**
 * `value` as an origin, exactly as a browser's `Origin` header spells it (`https://app.example.com`,
 * `http://localhost:8200`); throws an Error saying what is wrong otherwise: a wildcard, a path, a default port, upper
 * case, anything that a browser would never send and so would never match.
 */
export function parseOrigin(value: string): string {
  if (value === '*') throw new Error('"*" is not allowed: list the exact origins (scheme://host[:port]), comma-separated');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`"${value}" is not an origin: give scheme://host[:port], e.g. https://app.example.com`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`"${value}" is not an origin: the scheme must be http or https`);
  if (url.origin !== value) {
    throw new Error(`"${value}" is not an origin as a browser sends it (scheme://host[:port], no path, no trailing slash): write "${url.origin}"`);
  }
  return value;
}

/** A comma-separated list of origins (`SSE_CORS_ORIGINS`), each checked by {@link parseOrigin}; at least one. */
export function parseOriginList(raw: string): string[] {
  const origins = raw.split(',').map((item) => item.trim()).filter(Boolean);
  if (origins.length === 0) throw new Error('lists no origin; give scheme://host[:port], comma-separated');
  return [...new Set(origins.map(parseOrigin))];
}

/** A route pattern as a RegExp of paths, matched as polka matches (case-insensitive, trailing slash optional). */
function compile(pattern: string): RegExp {
  const segments = pattern.replace(/\/+$/, '').split('/');
  const source = segments.map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/');
  return new RegExp(`^${source}/?$`, 'i');
}

/** Adds `value` to a response's `Vary`, keeping what is there. */
function vary(res: ServerResponse, value: string): void {
  const current = res.getHeader('Vary');
  const list = (Array.isArray(current) ? current.join(',') : String(current ?? '')).split(',').map((item) => item.trim()).filter(Boolean);
  if (!list.some((item) => item.toLowerCase() === value.toLowerCase() || item === '*')) list.push(value);
  res.setHeader('Vary', list.join(', '));
}

/** The origins a hub answers cross-origin, and the middleware that answers them. */
export class CorsPolicy {
  readonly origins: ReadonlySet<string>;

  /** Throws a TypeError naming the entry that is not an origin. */
  constructor(origins: readonly string[]) {
    try {
      this.origins = new Set(origins.map(parseOrigin));
    } catch (error) {
      throw new TypeError((error as Error).message);
    }
  }

  /** Whether `origin` (a request's `Origin` header) is listed. */
  allows(origin: string | undefined): boolean {
    return origin !== undefined && this.origins.has(origin);
  }

  /**
   * A middleware for `routes`: on their paths it adds `Vary: Origin`, the CORS headers for a listed origin, and
   * answers preflights (204 for a listed origin, 403 JSON for another). Other paths, and requests that are not
   * preflights, go on untouched.
   */
  middleware(routes: readonly CorsRoute[]) {
    const compiled = routes.map((route) => ({ path: compile(route.pattern), methods: route.methods }));
    return (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
      const path = (req.url ?? '').split('?')[0]!;
      const methods = [...new Set(compiled.filter((route) => route.path.test(path)).flatMap((route) => route.methods))];
      if (methods.length === 0) return next();
      vary(res, 'Origin');
      const origin = req.headers.origin;
      const listed = this.allows(origin);
      const preflight = req.method === 'OPTIONS' && origin !== undefined && req.headers['access-control-request-method'] !== undefined;
      if (preflight && !listed) {
        return sendError(
          res,
          new HttpError(403, ErrorCode.originNotAllowed, `Origin "${origin}" may not call this server from a browser: add it to SSE_CORS_ORIGINS (mountSse: corsOrigins).`),
        );
      }
      if (!listed) return next();
      res.setHeader('Access-Control-Allow-Origin', origin!);
      if (!preflight) {
        res.setHeader('Access-Control-Expose-Headers', CORS_EXPOSE_HEADERS.join(', '));
        return next();
      }
      res.writeHead(204, {
        'Access-Control-Allow-Methods': methods.join(', '),
        'Access-Control-Allow-Headers': CORS_ALLOW_HEADERS.join(', '),
        'Access-Control-Max-Age': String(CORS_MAX_AGE_SECONDS),
        'Content-Length': '0',
      });
      res.end();
    };
  }

  /**
   * Whether a WebSocket upgrade may go on: no `Origin` (not a browser), a listed one, or the hub's own (the
   * `Origin`'s host is the request's `Host`: a page the hub serves itself).
   */
  allowsUpgrade(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined || this.allows(origin)) return true;
    try {
      return new URL(origin).host === (req.headers.host ?? '').toLowerCase();
    } catch {
      return false;
    }
  }
}
