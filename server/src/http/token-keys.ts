/**
 * Public keys for stream tokens signed by someone else's private key (an identity provider, your backend): one PEM
 * public key or certificate, a JWKS file (keys chosen by the token's `kid`), or a JWKS URL fetched and cached with
 * jose's remote key set (for providers that rotate keys). Only asymmetric algorithms: HS256 stays with the secret.
 *
 * Everything that can be wrong with the configuration is found here, before the server listens: a missing or
 * unreadable file, a private key where the public one belongs, a key no accepted algorithm can use, an algorithm
 * no key can verify, a JWKS URL that does not answer with keys.
 */
import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWK, type JWTVerifyGetKey } from 'jose';

/** The asymmetric algorithms accepted, by the kind of key that can verify them. */
const ALGORITHMS_BY_KEY: Record<string, string[]> = {
  rsa: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
  'rsa-pss': ['PS256', 'PS384', 'PS512'],
  'ec:prime256v1': ['ES256'],
  'ec:secp384r1': ['ES384'],
  'ec:secp521r1': ['ES512'],
  ed25519: ['EdDSA', 'Ed25519'],
};
/** What a key of each kind is assumed to sign with when nothing says otherwise (a JWK's `alg`, `SSE_AUTH_ALGORITHMS`). */
const DEFAULT_ALGORITHM: Record<string, string> = {
  rsa: 'RS256',
  'rsa-pss': 'PS256',
  'ec:prime256v1': 'ES256',
  'ec:secp384r1': 'ES384',
  'ec:secp521r1': 'ES512',
  ed25519: 'EdDSA',
};
export const ASYMMETRIC_ALGORITHMS: readonly string[] = [...new Set(Object.values(ALGORITHMS_BY_KEY).flat())];

/** Where the public keys come from: exactly one of the three. */
export interface TokenKeySource {
  /** `SSE_AUTH_PUBLIC_KEY_FILE`: a PEM public key (SPKI) or X.509 certificate. */
  publicKeyFile?: string | undefined;
  /** `SSE_AUTH_JWKS_FILE`: a JSON Web Key Set, `{"keys": [...]}`; the token's `kid` picks the key. */
  jwksFile?: string | undefined;
  /** `SSE_AUTH_JWKS_URL`: the same, fetched (https, or http on a loopback address) and cached. */
  jwksUrl?: string | undefined;
  /** `SSE_AUTH_ALGORITHMS`: the accepted algorithms; default: those of the keys. */
  algorithms?: readonly string[] | undefined;
  /** `SSE_AUTH_JWKS_CACHE_SECONDS`: how long fetched keys are used before they are fetched again. Default 600. */
  jwksCacheSeconds?: number | undefined;
  /** `SSE_AUTH_JWKS_COOLDOWN_SECONDS`: a token with an unknown `kid` fetches again at most this often. Default 30. */
  jwksCooldownSeconds?: number | undefined;
  /** How long one fetch may take. Default 5000. */
  jwksTimeoutMs?: number | undefined;
}

/** The loaded keys: what {@link authorize} verifies asymmetric tokens with. */
export interface TokenKeys {
  /** A key, or jose's resolver that picks one by the token's `kid` and `alg`. */
  readonly key: KeyObject | JWTVerifyGetKey;
  /** The algorithms a token may be signed with. */
  readonly algorithms: readonly string[];
  /** For the start-up log line: `public key file /etc/…/key.pem (ES256)`. */
  readonly description: string;
}

/** A configuration the server cannot start with; its message names the variable. */
export class TokenKeyError extends Error {
  override name = 'TokenKeyError';
}

function kindOf(key: KeyObject): string | undefined {
  const type = key.asymmetricKeyType;
  if (type === 'ec') return `ec:${key.asymmetricKeyDetails?.namedCurve ?? '?'}`;
  return type;
}

function describeKind(kind: string | undefined): string {
  return kind?.replace(/^ec:/, 'EC ') ?? 'unknown';
}

/** The algorithms `key` can verify, or a TokenKeyError naming `what` when it is no key for tokens. */
function algorithmsOf(key: KeyObject, what: string): { kind: string; possible: string[] } {
  const kind = kindOf(key);
  const possible = kind ? ALGORITHMS_BY_KEY[kind] : undefined;
  if (!kind || !possible) {
    throw new TokenKeyError(`${what} is a ${describeKind(kind)} key, which no accepted algorithm uses (${ASYMMETRIC_ALGORITHMS.join(', ')}: RSA, EC P-256/384/521 or Ed25519 keys)`);
  }
  return { kind, possible };
}

/** Checks `algorithms` (SSE_AUTH_ALGORITHMS) names only asymmetric algorithms, each a key here can verify. */
function checkAlgorithms(algorithms: readonly string[], possible: ReadonlySet<string>, keysWhat: string): void {
  for (const alg of algorithms) {
    if (/^HS/i.test(alg)) throw new TokenKeyError(`SSE_AUTH_ALGORITHMS: ${alg} is a shared-secret algorithm; HS256 tokens are verified with SSE_AUTH_SECRET, never with a public key`);
    if (!ASYMMETRIC_ALGORITHMS.includes(alg)) throw new TokenKeyError(`SSE_AUTH_ALGORITHMS: "${alg}" is not one of ${ASYMMETRIC_ALGORITHMS.join(', ')}`);
    if (!possible.has(alg)) throw new TokenKeyError(`SSE_AUTH_ALGORITHMS: ${alg} cannot be verified with ${keysWhat} (it can do ${[...possible].join(', ')})`);
  }
}

async function readText(variable: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new TokenKeyError(`${variable}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/** A PEM public key or certificate; a private key is refused (the hub must never hold one). */
function publicKeyFromPem(text: string, path: string): KeyObject {
  const what = `SSE_AUTH_PUBLIC_KEY_FILE ${path}`;
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new TokenKeyError(`${what} holds a private key: give the server only the public key (openssl pkey -in private.pem -pubout -out public.pem)`);
  }
  try {
    if (text.includes('-----BEGIN CERTIFICATE-----')) return new X509Certificate(text).publicKey;
    if (!text.includes('-----BEGIN PUBLIC KEY-----')) throw new Error('no "-----BEGIN PUBLIC KEY-----" or "-----BEGIN CERTIFICATE-----" block');
    return createPublicKey(text);
  } catch (error) {
    throw new TokenKeyError(`${what} is not a PEM public key or certificate (${(error as Error).message})`);
  }
}

interface CheckedSet {
  jwks: JSONWebKeySet;
  /** Every algorithm some key of the set can verify (its `alg`, else every one its kind can). */
  possible: Set<string>;
  /** The algorithms the keys say they sign with (their `alg`, else their kind's usual one): the default list. */
  usual: Set<string>;
}

/** The signature keys of a JWKS, each checked to be a public key of an accepted kind; encryption keys are left out. */
function checkJwks(value: unknown, what: string): CheckedSet {
  const keys = (value as { keys?: unknown })?.keys;
  if (!Array.isArray(keys)) throw new TokenKeyError(`${what} is not a JSON Web Key Set ({"keys": [...]})`);
  const possible = new Set<string>();
  const usual = new Set<string>();
  const kept: JWK[] = [];
  for (const [index, jwk] of (keys as JWK[]).entries()) {
    if (jwk === null || typeof jwk !== 'object') throw new TokenKeyError(`${what}: key ${index} is not an object`);
    const name = `${what}: key ${jwk.kid === undefined ? index : `"${jwk.kid}"`}`;
    if (jwk.use === 'enc') continue;
    if ('d' in jwk || 'k' in jwk) throw new TokenKeyError(`${name} is a private or secret key: publish only public keys`);
    let key: KeyObject;
    try {
      key = createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    } catch (error) {
      throw new TokenKeyError(`${name} is not a usable public key (${(error as Error).message})`);
    }
    const { kind, possible: forKind } = algorithmsOf(key, name);
    if (jwk.alg !== undefined && !forKind.includes(jwk.alg)) throw new TokenKeyError(`${name} says "alg": "${jwk.alg}", which a ${describeKind(kind)} key cannot verify`);
    for (const alg of jwk.alg ? [jwk.alg] : forKind) possible.add(alg);
    usual.add(jwk.alg ?? DEFAULT_ALGORITHM[kind]!);
    kept.push(jwk);
  }
  if (kept.length === 0) throw new TokenKeyError(`${what} has no signature key`);
  return { jwks: { keys: kept }, possible, usual };
}

function jwksUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new TokenKeyError(`SSE_AUTH_JWKS_URL: "${raw}" is not a URL`);
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname) || /^127\./.test(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new TokenKeyError(`SSE_AUTH_JWKS_URL must be https:// (plain http only on a loopback address), got ${url.protocol}//${url.host}`);
  }
  return url;
}

/**
 * Loads and checks the keys of `source`, or undefined when it names none. A JWKS URL is fetched once here, so a
 * wrong URL stops the start instead of failing every token later. Throws a {@link TokenKeyError} with one clear line.
 */
export async function loadTokenKeys(source: TokenKeySource): Promise<TokenKeys | undefined> {
  const given = (['publicKeyFile', 'jwksFile', 'jwksUrl'] as const).filter((name) => source[name]);
  if (given.length === 0) {
    if (source.algorithms?.length) throw new TokenKeyError('SSE_AUTH_ALGORITHMS is set, but no key: set SSE_AUTH_PUBLIC_KEY_FILE, SSE_AUTH_JWKS_FILE or SSE_AUTH_JWKS_URL');
    return undefined;
  }
  if (given.length > 1) throw new TokenKeyError('set one of SSE_AUTH_PUBLIC_KEY_FILE, SSE_AUTH_JWKS_FILE and SSE_AUTH_JWKS_URL, not several');
  const wanted = source.algorithms?.length ? source.algorithms : undefined;

  if (source.publicKeyFile) {
    const path = source.publicKeyFile;
    const key = publicKeyFromPem(await readText('SSE_AUTH_PUBLIC_KEY_FILE', path), path);
    const { kind, possible } = algorithmsOf(key, `SSE_AUTH_PUBLIC_KEY_FILE ${path}`);
    const algorithms = wanted ?? [DEFAULT_ALGORITHM[kind]!];
    checkAlgorithms(algorithms, new Set(possible), `the ${describeKind(kind)} key in ${path}`);
    return { key, algorithms, description: `public key file ${path} (${describeKind(kind)}, ${algorithms.join(', ')})` };
  }

  if (source.jwksFile) {
    const path = source.jwksFile;
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readText('SSE_AUTH_JWKS_FILE', path));
    } catch (error) {
      if (error instanceof TokenKeyError) throw error;
      throw new TokenKeyError(`SSE_AUTH_JWKS_FILE ${path} is not JSON (${(error as Error).message})`);
    }
    const set = checkJwks(parsed, `SSE_AUTH_JWKS_FILE ${path}`);
    const algorithms = wanted ?? [...set.usual];
    checkAlgorithms(algorithms, set.possible, `any key in ${path}`);
    return { key: createLocalJWKSet(set.jwks), algorithms, description: `JWKS file ${path} (${set.jwks.keys.length} keys, ${algorithms.join(', ')})` };
  }

  const url = jwksUrl(source.jwksUrl!);
  const remote = createRemoteJWKSet(url, {
    cacheMaxAge: (source.jwksCacheSeconds ?? 600) * 1000,
    cooldownDuration: (source.jwksCooldownSeconds ?? 30) * 1000,
    timeoutDuration: source.jwksTimeoutMs ?? 5000,
  });
  try {
    await remote.reload();
  } catch (error) {
    throw new TokenKeyError(`SSE_AUTH_JWKS_URL: fetching ${url.href} failed (${(error as Error).message})`);
  }
  const set = checkJwks(remote.jwks(), `SSE_AUTH_JWKS_URL ${url.href}`);
  // Keys fetched later (a rotation) may bring other algorithms: list them in SSE_AUTH_ALGORITHMS ahead of time.
  const algorithms = wanted ?? [...set.usual];
  if (!algorithms.some((alg) => set.possible.has(alg))) checkAlgorithms(algorithms, set.possible, `any key at ${url.href}`);
  else checkAlgorithms(algorithms, new Set(ASYMMETRIC_ALGORITHMS), 'a key');
  return { key: remote, algorithms, description: `JWKS URL ${url.href} (${set.jwks.keys.length} keys now, ${algorithms.join(', ')}, cached ${source.jwksCacheSeconds ?? 600} s)` };
}
