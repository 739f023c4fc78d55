/**
 * Tokens signed with a private key, verified by the server with only the public key: a PEM file (RS256, ES256,
 * EdDSA), a JWKS file (keys chosen by `kid`), a JWKS URL served by a local HTTP server (fetched, cached, and fetched
 * again for a rotated key). Every bad token is a 401 with the JSON error, `alg: none` and an HS256 token whose
 * "secret" is the public key included; `npm run token --private-key` signs tokens the server takes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { signToken, signTokenWithKey } from '../src/http/auth.js';
import { loadTokenKeys, type TokenKeySource } from '../src/http/token-keys.js';
import { startHarness, streamUrl, type Harness } from './harness.js';
import { openStream } from './sse-reader.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ISSUER = 'https://id.example.com/';
const AUDIENCE = 'ai-story-sse';
const SECRET = 'a-secret-of-at-least-thirty-two-bytes-for-hs256!';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const pem = (key: KeyObject) => key.export({ type: key.type === 'private' ? 'pkcs8' : 'spki', format: 'pem' }) as string;
const jwk = (key: KeyObject, kid: string, extra: Record<string, string> = {}) => ({ ...key.export({ format: 'jwk' }), kid, use: 'sig', ...extra });

let dir: string;
const harnesses: Harness[] = [];
const claims = { issuer: ISSUER, audience: AUDIENCE };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sse-keys-'));
  await writeFile(join(dir, 'rsa.pem'), pem(rsa.publicKey));
  await writeFile(join(dir, 'ec.pem'), pem(ec.publicKey));
  await writeFile(join(dir, 'ed.pem'), pem(ed.publicKey));
  await writeFile(join(dir, 'ec-private.pem'), pem(ec.privateKey));
  await writeFile(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk(ec.publicKey, 'ec-1', { alg: 'ES256' }), jwk(ed.publicKey, 'ed-1')] }));
});
after(async () => {
  await Promise.all(harnesses.map((harness) => harness.close()));
  await rm(dir, { recursive: true, force: true });
});

async function hub(source: TokenKeySource, extra: { authSecret?: string; authClockToleranceSeconds?: number } = {}): Promise<Harness> {
  const authKeys = await loadTokenKeys(source);
  const harness = await startHarness({ broker: 'memory', settings: { authKeys, authIssuer: ISSUER, authAudience: AUDIENCE, ...extra } });
  harnesses.push(harness);
  return harness;
}

/** Opens the authenticated stream of project p1 with `token`: 200 and `connected`, or the refusal's status and JSON. */
async function attempt(harness: Harness, token: string, project = 'p1'): Promise<{ status: number; code?: string; message?: string }> {
  const reader = await openStream(streamUrl(harness.url, project, 'rewrite', true), { Authorization: `Bearer ${token}` });
  try {
    if (reader.status !== 200) {
      await reader.ended;
      const error = JSON.parse(reader.raw).error;
      return { status: reader.status, code: error?.code, message: error?.message };
    }
    await reader.waitFor((e) => e.event === 'connected', 3000);
    return { status: reader.status };
  } finally {
    reader.close();
  }
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

describe('a PEM public key', () => {
  for (const [alg, pair, file] of [
    ['RS256', rsa, 'rsa.pem'],
    ['ES256', ec, 'ec.pem'],
    ['EdDSA', ed, 'ed.pem'],
  ] as const) {
    it(`verifies ${alg} tokens signed with its private key, and only those`, async () => {
      const harness = await hub({ publicKeyFile: join(dir, file) });
      assert.deepEqual(await attempt(harness, await signTokenWithKey(pair.privateKey, ['p1'], 60, claims)), { status: 200 });
      const refused = await attempt(harness, await signTokenWithKey(otherRsa.privateKey, ['p1'], 60, claims));
      assert.equal(refused.status, 401);
      assert.equal(refused.code, 'unauthorized');
    });
  }

  it('answers 401 for every bad token: wrong key, issuer, audience, algorithm, alg none, HS256 with the public key, expired, not yet valid, no exp', async () => {
    const harness = await hub({ publicKeyFile: join(dir, 'rsa.pem') });
    const good = (extra: Parameters<typeof signTokenWithKey>[3] = {}) => signTokenWithKey(rsa.privateKey, ['p1'], 60, { ...claims, ...extra });
    const publicPem = pem(rsa.publicKey);
    const cases: Record<string, string> = {
      'signed by another key': await signTokenWithKey(otherRsa.privateKey, ['p1'], 60, claims),
      'another issuer': await good({ issuer: 'https://evil.example.com/' }),
      'another audience': await good({ audience: 'another-service' }),
      'no issuer or audience': await signTokenWithKey(rsa.privateKey, ['p1'], 60),
      'PS256, an algorithm not listed': await good({ algorithm: 'PS256' }),
      'ES256 by an EC key the server does not have': await signTokenWithKey(ec.privateKey, ['p1'], 60, claims),
      'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ projects: ['p1'], exp: now() + 60, iss: ISSUER, aud: AUDIENCE })}.`,
      'HS256 with the public key as its secret': await signToken(publicPem, ['p1'], 60, claims),
      'HS256 with the public key in DER as its secret': await new SignJWT({ projects: ['p1'] })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime(now() + 60)
        .sign(new Uint8Array(rsa.publicKey.export({ type: 'spki', format: 'der' }))),
      'expired beyond the clock tolerance': await signTokenWithKey(rsa.privateKey, ['p1'], -30, claims),
      'not valid for another minute': await new SignJWT({ projects: ['p1'] })
        .setProtectedHeader({ alg: 'RS256' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setNotBefore(now() + 60)
        .setExpirationTime(now() + 120)
        .sign(rsa.privateKey),
      'no exp': await new SignJWT({ projects: ['p1'] }).setProtectedHeader({ alg: 'RS256' }).setIssuer(ISSUER).setAudience(AUDIENCE).sign(rsa.privateKey),
      'a signature cut off': (await good()).slice(0, -10),
      'a payload changed after signing': (await good()).replace(/\.[^.]+\./, `.${b64({ projects: ['*'], exp: now() + 60, iss: ISSUER, aud: AUDIENCE })}.`),
    };
    for (const [why, token] of Object.entries(cases)) {
      const answer = await attempt(harness, token);
      assert.equal(answer.status, 401, `${why}: ${JSON.stringify(answer)}`);
      assert.equal(answer.code, 'unauthorized', why);
    }
    // The positive control, on the same server, and a valid token for another project (403, as with HS256).
    assert.equal((await attempt(harness, await good())).status, 200);
    assert.equal((await attempt(harness, await good(), 'p2')).status, 403);
  });

  it('allows a small clock skew: a token expired 2 s ago passes with the default 5 s tolerance, not with 0', async () => {
    const token = await new SignJWT({ projects: ['p1'] })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime(now() - 2)
      .sign(ec.privateKey);
    assert.equal((await attempt(await hub({ publicKeyFile: join(dir, 'ec.pem') }), token)).status, 200);
    assert.equal((await attempt(await hub({ publicKeyFile: join(dir, 'ec.pem') }, { authClockToleranceSeconds: 0 }), token)).status, 401);
  });

  it('with a secret as well, verifies HS256 tokens by the secret and asymmetric ones by the key, never one by the other', async () => {
    const harness = await hub({ publicKeyFile: join(dir, 'ed.pem') }, { authSecret: SECRET });
    assert.equal((await attempt(harness, await signToken(SECRET, ['p1'], 60, claims))).status, 200);
    assert.equal((await attempt(harness, await signTokenWithKey(ed.privateKey, ['p1'], 60, claims))).status, 200);
    assert.equal((await attempt(harness, await signToken(pem(ed.publicKey), ['p1'], 60, claims))).status, 401);
    const noneToken = `${b64({ alg: 'none' })}.${b64({ projects: ['p1'], exp: now() + 60, iss: ISSUER, aud: AUDIENCE })}.`;
    assert.equal((await attempt(harness, noneToken)).status, 401);
  });
});

describe('a JWKS file', () => {
  it('picks the key by the token’s kid; an unknown kid, or a kid naming another key, is a 401', async () => {
    const harness = await hub({ jwksFile: join(dir, 'jwks.json') });
    assert.equal((await attempt(harness, await signTokenWithKey(ec.privateKey, ['p1'], 60, { ...claims, kid: 'ec-1' }))).status, 200);
    assert.equal((await attempt(harness, await signTokenWithKey(ed.privateKey, ['p1'], 60, { ...claims, kid: 'ed-1' }))).status, 200);
    const unknown = await attempt(harness, await signTokenWithKey(ec.privateKey, ['p1'], 60, { ...claims, kid: 'ec-2' }));
    assert.equal(unknown.status, 401);
    assert.match(unknown.message!, /no key/);
    assert.equal((await attempt(harness, await signTokenWithKey(otherRsa.privateKey, ['p1'], 60, { ...claims, kid: 'ec-1' }))).status, 401);
    assert.equal((await attempt(harness, await signTokenWithKey(ed.privateKey, ['p1'], 60, { ...claims, kid: 'ec-1' }))).status, 401);
  });
});

describe('a JWKS URL', () => {
  let jwksServer: Server;
  let keys: object[] = [];
  let fetches = 0;
  let url: string;
  before(async () => {
    jwksServer = createServer((req, res) => {
      fetches++;
      res.writeHead(200, { 'Content-Type': 'application/jwk-set+json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
  });
  after(() => new Promise<void>((resolve) => jwksServer.close(() => resolve())));

  it('fetches the keys once at start, caches them, and fetches again for a rotated key', async () => {
    const first = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const second = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    keys = [jwk(first.publicKey, 'key-1')];
    fetches = 0;
    const harness = await hub({ jwksUrl: url, jwksCooldownSeconds: 0 });
    assert.equal(fetches, 1, 'fetched at start');
    for (let i = 0; i < 3; i++) assert.equal((await attempt(harness, await signTokenWithKey(first.privateKey, ['p1'], 60, { ...claims, kid: 'key-1' }))).status, 200);
    assert.equal(fetches, 1, 'known keys come from the cache');

    // The provider rotates: key-2 signs new tokens, key-1 is withdrawn.
    keys = [jwk(second.publicKey, 'key-2')];
    assert.equal((await attempt(harness, await signTokenWithKey(second.privateKey, ['p1'], 60, { ...claims, kid: 'key-2' }))).status, 200);
    assert.equal(fetches, 2, 'an unknown kid fetched the set again');
    assert.equal((await attempt(harness, await signTokenWithKey(first.privateKey, ['p1'], 60, { ...claims, kid: 'key-1' }))).status, 401, 'the withdrawn key');
    // A kid nobody has, with the cooldown over: one more fetch, still a 401.
    assert.equal((await attempt(harness, await signTokenWithKey(otherRsa.privateKey, ['p1'], 60, { ...claims, kid: 'made-up' }))).status, 401);
  });

  it('honours the cooldown: unknown kids do not make the server fetch on every request', async () => {
    const pair = generateKeyPairSync('ed25519');
    keys = [jwk(pair.publicKey, 'ed')];
    fetches = 0;
    const harness = await hub({ jwksUrl: url, jwksCooldownSeconds: 60 });
    for (let i = 0; i < 5; i++) assert.equal((await attempt(harness, await signTokenWithKey(pair.privateKey, ['p1'], 60, { ...claims, kid: `unknown-${i}` }))).status, 401);
    assert.equal(fetches, 1);
    assert.equal((await attempt(harness, await signTokenWithKey(pair.privateKey, ['p1'], 60, { ...claims, kid: 'ed' }))).status, 200);
  });
});

describe('npm run token --private-key', () => {
  it('prints a token the server verifies with the public key', async () => {
    const harness = await hub({ jwksFile: join(dir, 'jwks.json') });
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'server/src/cli/token.ts', '--project', 'p1', '--private-key', join(dir, 'ec-private.pem'), '--kid', 'ec-1', '--ttl', '60'],
      { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SSE_AUTH_ISSUER: ISSUER, SSE_AUTH_AUDIENCE: AUDIENCE } },
    );
    assert.equal(run.status, 0, run.stderr);
    assert.equal((await attempt(harness, run.stdout.trim())).status, 200);
    const bad = spawnSync(process.execPath, ['--import', 'tsx', 'server/src/cli/token.ts', '--project', 'p1', '--private-key', join(dir, 'nope.pem')], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /cannot read/);
  });
});
