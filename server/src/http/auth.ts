/**
 * Stream tokens: JWTs with a `projects` claim (`["*"]` for all) and a required `exp`, signed with the HS256 secret,
 * or with a private key whose public half the server has (RS256, ES256, EdDSA…; see token-keys.ts).
 */
import { SignJWT, decodeProtectedHeader, jwtVerify, errors as joseErrors } from 'jose';
import type { KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { DEFAULTS } from '../defaults.js';
import { ErrorCode, HttpError } from './http-error.js';
import type { TokenKeys } from './token-keys.js';

export interface TokenClaims {
  projects: string[];
  /**
   * When the token expires, in seconds since the epoch: a stream opened with it ends then. For a token verified
   * with a public key, its `exp` plus the clock tolerance (the server honours it as long as it accepts it).
   */
  exp: number;
}

/**
 * How tokens are checked: the HS256 secret and/or public keys (each token is verified by the one its `alg` names:
 * HS256 by the secret only, an asymmetric algorithm by the keys only), and the optional `iss` / `aud` they must carry.
 */
export interface TokenPolicy {
  secret: string | undefined;
  /** Public keys for asymmetric tokens ({@link loadTokenKeys}). */
  keys?: TokenKeys | undefined;
  issuer?: string | undefined;
  audience?: string | undefined;
  /** Seconds of clock skew allowed on `exp`, `nbf` and `iat` of public-key tokens. Default 5. HS256 tokens get none. */
  clockToleranceSeconds?: number | undefined;
}

/** The default `clockToleranceSeconds`: issuers' clocks drift a little from the server's. */
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = DEFAULTS.clockToleranceSeconds;

/** Whether `policy` can check tokens at all (a secret or keys): without, the authenticated endpoints answer 503. */
export function checksTokens(policy: TokenPolicy | undefined): boolean {
  return Boolean(policy?.secret || policy?.keys);
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
 * 403 when valid but for other projects; 503 `auth_not_configured` when the server has no secret and no key (never
 * open by accident), without `Retry-After`: a configuration error that no retry repairs.
 */
export async function authorize(policy: TokenPolicy | string | undefined, token: string | undefined, projectId: string): Promise<TokenClaims> {
  const { secret, keys, issuer, audience } = typeof policy === 'object' ? policy : ({ secret: policy } as TokenPolicy);
  if (!secret && !keys) {
    // No Retry-After, on purpose: retrying cannot help until an operator configures the server (clients treat it as fatal).
    throw new HttpError(
      503,
      ErrorCode.authNotConfigured,
      'Server configuration error: this server has no token key, so it cannot check any token. Set SSE_AUTH_SECRET (HS256, 32+ bytes), or a public key with SSE_AUTH_PUBLIC_KEY_FILE, SSE_AUTH_JWKS_FILE or SSE_AUTH_JWKS_URL (with SSE_AUTH_ISSUER and SSE_AUTH_AUDIENCE); mountSse: authSecret or authKeys.',
    );
  }
  if (!token) {
    throw new HttpError(401, ErrorCode.unauthorized, 'A token is required: send "Authorization: Bearer <jwt>" or ?access_token=<jwt>.', {
      'WWW-Authenticate': 'Bearer',
    });
  }
  let payload: Record<string, unknown>;
  let tolerance = 0;
  try {
    const claims = { requiredClaims: ['exp'], ...(issuer !== undefined && { issuer }), ...(audience !== undefined && { audience }) };
    // The header's `alg` picks the verifier, and each verifier accepts only its own algorithms: an HS256 token is
    // never checked against a public key (the "public key as HMAC secret" confusion), and `none` matches neither.
    const alg = decodeProtectedHeader(token).alg;
    if (typeof alg === 'string' && /^HS/i.test(alg) && secret) {
      ({ payload } = await jwtVerify(token, encoder.encode(secret), { ...claims, algorithms: ['HS256'] }));
    } else if (keys) {
      tolerance = (typeof policy === 'object' ? policy.clockToleranceSeconds : undefined) ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
      const key = keys.key as KeyObject & Parameters<typeof jwtVerify>[1];
      ({ payload } = await jwtVerify(token, key, { ...claims, algorithms: [...keys.algorithms], clockTolerance: tolerance }));
    } else {
      throw new joseErrors.JOSEAlgNotAllowed(`"alg" (Algorithm) Header Parameter value not allowed`);
    }
  } catch (error) {
    throw new HttpError(401, ErrorCode.unauthorized, `Unauthorized: ${reasonOf(error)}.`, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  }
  const granted = grantedProjects(payload.projects);
  if (!granted.includes('*') && !granted.includes(projectId)) {
    throw new HttpError(403, ErrorCode.forbidden, `The token does not grant project "${projectId}".`);
  }
  return { projects: granted, exp: (payload.exp as number) + tolerance };
}

function reasonOf(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'the token is signed with an algorithm this server does not accept';
  if (error instanceof joseErrors.JWKSNoMatchingKey) return 'no key of this server matches the token (its "kid" and "alg")';
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

/** What {@link signTokenWithKey} puts in a token besides `projects`, `iat` and `exp`. */
export interface KeySignOptions {
  /** Default: the key's usual one (RS256, PS256, ES256/384/512, EdDSA). */
  algorithm?: string | undefined;
  /** The `kid` header, which picks the key in a JWKS. */
  kid?: string | undefined;
  issuer?: string | undefined;
  audience?: string | undefined;
}

/**
 * Signs a token for `projects` with a private key (a PEM PKCS#8 text or a KeyObject), for development and tests:
 * in production your backend or identity provider signs them, and the server holds only the public key.
 */
export async function signTokenWithKey(privateKey: string | KeyObject, projects: string[], ttlSeconds = 3600, options: KeySignOptions = {}): Promise<string> {
  const { createPrivateKey } = await import('node:crypto');
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  const alg = options.algorithm ?? usualAlgorithm(key);
  const jwt = new SignJWT({ projects })
    .setProtectedHeader({ alg, typ: 'JWT', ...(options.kid !== undefined && { kid: options.kid }) })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds);
  if (options.issuer !== undefined) jwt.setIssuer(options.issuer);
  if (options.audience !== undefined) jwt.setAudience(options.audience);
  return jwt.sign(key as KeyObject & Parameters<SignJWT['sign']>[0]);
}

function usualAlgorithm(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    case 'ed25519':
      return 'EdDSA';
    case 'ec':
      return { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }[key.asymmetricKeyDetails?.namedCurve ?? ''] ?? 'ES256';
    default:
      throw new TypeError(`signTokenWithKey: a ${key.asymmetricKeyType ?? 'secret'} key signs no token algorithm; use an RSA, EC or Ed25519 private key`);
  }
}
