import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, readConfig } from '../config.js';
import { loadTokenKeys, TokenKeyError, type TokenKeySource } from './token-keys.js';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const dsa = generateKeyPairSync('x25519');
let dir: string;
const file = (name: string) => join(dir, name);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'token-keys-'));
  await writeFile(file('rsa.pem'), rsa.publicKey.export({ type: 'spki', format: 'pem' }));
  await writeFile(file('ec.pem'), ec.publicKey.export({ type: 'spki', format: 'pem' }));
  await writeFile(file('x25519.pem'), dsa.publicKey.export({ type: 'spki', format: 'pem' }));
  await writeFile(file('private.pem'), ec.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await writeFile(file('garbage.pem'), 'not a key');
  await writeFile(file('unreadable.pem'), rsa.publicKey.export({ type: 'spki', format: 'pem' }));
  await chmod(file('unreadable.pem'), 0);
  await writeFile(file('empty.json'), JSON.stringify({ keys: [] }));
  await writeFile(file('not-json.json'), '{keys');
  await writeFile(file('private.json'), JSON.stringify({ keys: [{ ...ec.privateKey.export({ format: 'jwk' }), kid: 'k' }] }));
  await writeFile(file('wrong-alg.json'), JSON.stringify({ keys: [{ ...ec.publicKey.export({ format: 'jwk' }), kid: 'k', alg: 'RS256' }] }));
  await writeFile(file('good.json'), JSON.stringify({ keys: [{ ...ec.publicKey.export({ format: 'jwk' }), kid: 'k' }, { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'r', use: 'enc' }] }));
});
after(() => rm(dir, { recursive: true, force: true }));

async function refused(source: TokenKeySource, pattern: RegExp): Promise<void> {
  await assert.rejects(loadTokenKeys(source), (error: Error) => {
    assert.ok(error instanceof TokenKeyError, `${error.name}: ${error.message}`);
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes('\n'), 'one line');
    return true;
  });
}

describe('loadTokenKeys', () => {
  it('infers the algorithm of a PEM key and of a JWKS, and leaves encryption keys out', async () => {
    assert.deepEqual((await loadTokenKeys({ publicKeyFile: file('rsa.pem') }))!.algorithms, ['RS256']);
    assert.deepEqual((await loadTokenKeys({ publicKeyFile: file('ec.pem') }))!.algorithms, ['ES256']);
    assert.deepEqual((await loadTokenKeys({ publicKeyFile: file('rsa.pem'), algorithms: ['RS256', 'PS256'] }))!.algorithms, ['RS256', 'PS256']);
    const set = await loadTokenKeys({ jwksFile: file('good.json') });
    assert.deepEqual(set!.algorithms, ['ES256']);
    assert.match(set!.description, /1 keys/);
    assert.equal(await loadTokenKeys({}), undefined);
  });

  it('refuses every misconfiguration with one clear line', async () => {
    await refused({ publicKeyFile: file('missing.pem') }, /SSE_AUTH_PUBLIC_KEY_FILE: cannot read .*missing\.pem \(ENOENT\)/);
    if (process.getuid?.() !== 0) await refused({ publicKeyFile: file('unreadable.pem') }, /cannot read .*EACCES/);
    await refused({ publicKeyFile: file('garbage.pem') }, /is not a PEM public key/);
    await refused({ publicKeyFile: file('private.pem') }, /holds a private key/);
    await refused({ publicKeyFile: file('x25519.pem') }, /x25519 key, which no accepted algorithm uses/);
    await refused({ publicKeyFile: file('rsa.pem'), algorithms: ['ES256'] }, /ES256 cannot be verified with the rsa key/);
    await refused({ publicKeyFile: file('ec.pem'), algorithms: ['HS256'] }, /shared-secret algorithm/);
    await refused({ publicKeyFile: file('ec.pem'), algorithms: ['none'] }, /"none" is not one of/);
    await refused({ publicKeyFile: file('ec.pem'), jwksFile: file('good.json') }, /not several/);
    await refused({ jwksFile: file('empty.json') }, /has no signature key/);
    await refused({ jwksFile: file('not-json.json') }, /is not JSON/);
    await refused({ jwksFile: file('private.json') }, /private or secret key/);
    await refused({ jwksFile: file('wrong-alg.json') }, /"alg": "RS256", which a EC prime256v1 key cannot verify/);
    await refused({ jwksFile: file('good.json'), algorithms: ['RS256'] }, /RS256 cannot be verified with any key/);
    await refused({ jwksUrl: 'http://id.example.com/jwks.json' }, /must be https/);
    await refused({ jwksUrl: 'not a url' }, /is not a URL/);
    await refused({ algorithms: ['ES256'] }, /no key/);
  });

  it('refuses a JWKS URL that does not answer with keys', async () => {
    const server = createServer((req, res) => (req.url === '/empty' ? res.end('{"keys":[]}') : res.writeHead(500).end()));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await refused({ jwksUrl: `${base}/broken` }, /SSE_AUTH_JWKS_URL: fetching .* failed/);
      await refused({ jwksUrl: `${base}/empty` }, /has no signature key/);
    } finally {
      server.close();
    }
    await refused({ jwksUrl: 'http://127.0.0.1:1/jwks.json', jwksTimeoutMs: 500 }, /fetching .* failed/);
  });
});

describe('readConfig and public keys', () => {
  it('requires SSE_AUTH_ISSUER and SSE_AUTH_AUDIENCE with a key, and one key source', () => {
    assert.throws(() => readConfig({ SSE_AUTH_PUBLIC_KEY_FILE: 'k.pem' }), (error: Error) => error instanceof ConfigError && /needs SSE_AUTH_ISSUER and SSE_AUTH_AUDIENCE/.test(error.message));
    assert.throws(() => readConfig({ SSE_AUTH_JWKS_URL: 'https://x', SSE_AUTH_ISSUER: 'i' }), /needs SSE_AUTH_AUDIENCE/);
    assert.throws(() => readConfig({ SSE_AUTH_JWKS_URL: 'https://x', SSE_AUTH_JWKS_FILE: 'j', SSE_AUTH_ISSUER: 'i', SSE_AUTH_AUDIENCE: 'a' }), /not SSE_AUTH_JWKS_FILE and SSE_AUTH_JWKS_URL/);
    assert.throws(() => readConfig({ SSE_AUTH_ALGORITHMS: 'ES256' }), /no public key/);
    assert.throws(() => readConfig({ SSE_AUTH_CLOCK_TOLERANCE_SECONDS: '-1' }), ConfigError);
    const config = readConfig({ SSE_AUTH_JWKS_URL: 'https://id.example.com/jwks', SSE_AUTH_ISSUER: 'i', SSE_AUTH_AUDIENCE: 'a', SSE_AUTH_ALGORITHMS: 'RS256, ES256' });
    assert.deepEqual(config.authKeySource?.algorithms, ['RS256', 'ES256']);
    assert.equal(config.authClockToleranceSeconds, 5);
    assert.equal(readConfig({}).authKeySource, undefined);
  });
});
