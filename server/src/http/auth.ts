/** Stream tokens: HS256 JWTs with a `projects` claim (`["*"]` for all) and a required `exp`. */
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import type { IncomingMessage } from 'node:http';
import { ErrorCode, HttpError } from './http-error.js';

export interface TokenClaims {
  projects: string[];
}

const encoder = new TextEncoder();

/** The bearer token of a request: `Authorization: Bearer …`, else the `access_token` query parameter. */
export function tokenOf(req: IncomingMessage, query: Record<string, string | string[] | undefined>): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match?.[1] ?? '';
  }
  const fromQuery = query.access_token;
  return Array.isArray(fromQuery) ? fromQuery[0] : fromQuery;
}

/**
 * Checks that `token` grants `projectId`: 401 when missing, malformed, expired or badly signed;
 * 403 when valid but for other projects; 503 when the server has no secret (never open by accident).
 */
export async function authorize(secret: string | undefined, token: string | undefined, projectId: string): Promise<TokenClaims> {
  if (!secret) {
    throw new HttpError(503, ErrorCode.authNotConfigured, 'Authenticated streams are off: set SSE_AUTH_SECRET on the server.');
  }
  if (!token) {
    throw new HttpError(401, ErrorCode.unauthorized, 'A token is required: send "Authorization: Bearer <jwt>" or ?access_token=<jwt>.', {
      'WWW-Authenticate': 'Bearer',
    });
  }
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, encoder.encode(secret), { algorithms: ['HS256'], requiredClaims: ['exp'] }));
  } catch (error) {
    const reason = error instanceof joseErrors.JWTExpired ? 'the token has expired' : 'the token is malformed or badly signed';
    throw new HttpError(401, ErrorCode.unauthorized, `Unauthorized: ${reason}.`, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  }
  const projects = payload.projects;
  if (!Array.isArray(projects) || !projects.every((p) => typeof p === 'string' || typeof p === 'number')) {
    throw new HttpError(401, ErrorCode.unauthorized, 'Unauthorized: the token has no "projects" claim (an array of project ids).');
  }
  const granted = projects.map(String);
  if (!granted.includes('*') && !granted.includes(projectId)) {
    throw new HttpError(403, ErrorCode.forbidden, `The token does not grant project "${projectId}".`);
  }
  return { projects: granted };
}

/** Signs a token for `projects`, valid `ttlSeconds`: for development, tests and the demo. */
export async function signToken(secret: string, projects: string[], ttlSeconds = 3600): Promise<string> {
  return new SignJWT({ projects })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(encoder.encode(secret));
}
