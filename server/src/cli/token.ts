/**
 * Prints a stream token for development and tests, signed with the HS256 secret or with a private key:
 *   SSE_AUTH_SECRET=… npm run token -- --project 123 [--project 456 | --project '*'] [--ttl 3600]
 *   npm run token -- --project 123 --private-key private.pem [--kid k1] [--alg ES256] --issuer … --audience …
 * Installed: `npx ai-story-sse token …`, the same options. `--issuer` / `--audience` default to SSE_AUTH_ISSUER /
 * SSE_AUTH_AUDIENCE. Exit code 2 on a bad option.
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ID_RULE, isValidId } from '../channels.js';
import { signToken, signTokenWithKey } from '../http/auth.js';

const USAGE = `Usage: ai-story-sse token --project <id> [--project <id> | --project "*"] [--ttl <seconds>]
         [--secret <hs256 secret> | --private-key <pem file> [--kid <kid>] [--alg <RS256|ES256|EdDSA|…>]]
         [--issuer <iss>] [--audience <aud>]
Prints a token for the projects, valid --ttl seconds (default 3600). Signed with --secret (default SSE_AUTH_SECRET),
or with a PKCS#8 PEM private key (openssl genpkey -algorithm ed25519 -out private.pem) whose public key the server has.
--issuer and --audience default to SSE_AUTH_ISSUER and SSE_AUTH_AUDIENCE.
`;

/** Runs the command with `args` (without the command's name); resolves to the exit code. */
export async function tokenCommand(args: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        project: { type: 'string', multiple: true },
        ttl: { type: 'string', default: '3600' },
        secret: { type: 'string' },
        'private-key': { type: 'string' },
        kid: { type: 'string' },
        alg: { type: 'string' },
        issuer: { type: 'string' },
        audience: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    console.error(`ai-story-sse token: ${(error as Error).message}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const privateKeyFile = values['private-key'];
  const secret = privateKeyFile ? undefined : (values.secret ?? env.SSE_AUTH_SECRET);
  const projects = values.project ?? [];
  const ttl = Number(values.ttl);
  const problems = [
    !secret && !privateKeyFile && 'no key: set SSE_AUTH_SECRET (or pass --secret), or pass --private-key <pem file>',
    values.secret && privateKeyFile && 'pass --secret or --private-key, not both',
    (values.kid || values.alg) && !privateKeyFile && '--kid and --alg go with --private-key',
    projects.length === 0 && 'no project: pass --project <id> (repeat it, or --project "*" for all)',
    projects.some((p) => p !== '*' && !isValidId(p)) && `a project id must be ${ID_RULE}`,
    !(Number.isInteger(ttl) && ttl > 0) && '--ttl must be a positive number of seconds',
  ].filter(Boolean);
  if (problems.length > 0) {
    console.error(`ai-story-sse token: ${problems.join('; ')}`);
    return 2;
  }
  const claims = { issuer: values.issuer ?? (env.SSE_AUTH_ISSUER || undefined), audience: values.audience ?? (env.SSE_AUTH_AUDIENCE || undefined) };
  if (!privateKeyFile) {
    console.log(await signToken(secret!, projects, ttl, claims));
    return 0;
  }
  let pem: string;
  try {
    pem = await readFile(privateKeyFile, 'utf8');
  } catch (error) {
    console.error(`ai-story-sse token: cannot read ${privateKeyFile} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    return 2;
  }
  try {
    console.log(await signTokenWithKey(pem, projects, ttl, { ...claims, kid: values.kid, algorithm: values.alg }));
  } catch (error) {
    console.error(`ai-story-sse token: cannot sign with ${privateKeyFile} (${(error as Error).message})`);
    return 2;
  }
  return 0;
}

// `node server/src/cli/token.ts …` (npm run token): run it.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await tokenCommand(process.argv.slice(2));
}
