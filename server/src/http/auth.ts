/** Stream tokens: HS256 JWTs with a `projects` claim (`["*"]` for all) and a required `exp`. */
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import type { IncomingMessage } from 'node:http';
import { ErrorCode, HttpError } from './http-error.js';

export interface TokenClaims {
  projects: string[];
  /** When the token expires, in seconds since the epoch: a stream opened with it ends then. */
  exp: number;
}

/** How tokens are checked: the HS256 secret, and the optional `iss` / `aud` the tokens must carry. */
export interface TokenPolicy {
  secret: string | undefined;
  issuer?: string | undefined;
  audience?: string | undefined;
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
export async function authorize(policy: TokenPolicy | string | undefined, token: string | undefined, projectId: string): Promise<TokenClaims> {
  const { secret, issuer, audience } = typeof policy === 'object' ? policy : { secret: policy };
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
    ({ payload } = await jwtVerify(token, encoder.encode(secret), {
      algorithms: ['HS256'],
      requiredClaims: ['exp'],
      ...(issuer !== undefined && { issuer }),
      ...(audience !== undefined && { audience }),
    }));
  } catch (error) {
    throw new HttpError(401, ErrorCode.unauthorized, `Unauthorized: ${reasonOf(error)}.`, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  }
  const granted = grantedProjects(payload.projects);
  if (!granted.includes('*') && !granted.includes(projectId)) {
    throw new HttpError(403, ErrorCode.forbidden, `The token does not grant project "${projectId}".`);
  }
  return { projects: granted, exp: payload.exp as number };
}

function reasonOf(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed && (error.claim === 'iss' || error.claim === 'aud')) {
    return `the token's "${error.claim}" claim is not the one this server expects`;
  }
  return 'the token is malformed or badly signed';
}

/**
 * The `projects` claim, exactly: an array of strings, or of integers that are safe (a larger number has already
 * lost digits in JSON.parse, so 9007199254740993 would silently grant ...992). Anything else is refused whole.
 */
function grantedProjects(projects: unknown): string[] {
  const bad = (why: string) => new HttpError(401, ErrorCode.unauthorized, `Unauthorized: the token's "projects" claim ${why}.`);
  if (!Array.isArray(projects)) throw bad('is missing or not an array of project ids');
  return projects.map((project) => {
    if (typeof project === 'string') return project;
    if (typeof project === 'number' && Number.isSafeInteger(project)) return String(project);
    if (typeof project === 'number') throw bad(`holds ${String(project)}, a number that is not a safe integer: send project ids as strings`);
    throw bad('holds something that is neither a string nor an integer');
  });
}

/** Signs a token for `projects`, valid `ttlSeconds`: for development, tests and the demo. */
export async function signToken(
  secret: string,
  projects: string[],
  ttlSeconds = 3600,
  claims: { issuer?: string | undefined; audience?: string | undefined } = {},
): Promise<string> {
  const jwt = new SignJWT({ projects })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds);
  if (claims.issuer !== undefined) jwt.setIssuer(claims.issuer);
  if (claims.audience !== undefined) jwt.setAudience(claims.audience);
  return jwt.sign(encoder.encode(secret));
}
