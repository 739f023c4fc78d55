/**
 * Prints a stream token for development and tests, signed with the HS256 secret or with a private key:
 *   SSE_AUTH_SECRET=… npm run token -- --project 123 [--project 456 | --project '*'] [--ttl 3600]
 *   npm run token -- --project 123 --private-key private.pem [--kid k1] [--alg ES256] --issuer … --audience …
 * Installed: `npx ai-story-sse token …`, the same options. `--issuer` / `--audience` default to SSE_AUTH_ISSUER /
 * SSE_AUTH_AUDIENCE. `--help` prints every option; a bad option is one line on stderr and exit code 2.
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ID_RULE, isValidId } from '../channels.js';
import { signToken, signTokenWithKey } from '../http/auth.js';

/** How the command was started: its name in messages, how its usage starts, and the command that prints its help. */
export interface TokenCommandName {
  /** `ai-story-sse token` (the compiled command) or `token` (`npm run token`). */
  name: string;
  /** What a user types before the options: `ai-story-sse token`, `npm run token --`. */
  invocation: string;
  /** e.g. `ai-story-sse token --help`, `npm run token -- --help`. */
  help: string;
}

const COMPILED: TokenCommandName = { name: 'ai-story-sse token', invocation: 'ai-story-sse token', help: 'ai-story-sse token --help' };
const NPM_SCRIPT: TokenCommandName = { name: 'token', invocation: 'npm run token --', help: 'npm run token -- --help' };

/** The options of the command, as `parseArgs` reads them. */
export const TOKEN_OPTIONS = {
  project: { type: 'string', multiple: true },
  ttl: { type: 'string', default: '3600' },
  secret: { type: 'string' },
  'private-key': { type: 'string' },
  kid: { type: 'string' },
  alg: { type: 'string' },
  issuer: { type: 'string' },
  audience: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The usage, one line per option of {@link TOKEN_OPTIONS} (server/test/token-command.test.ts checks that none is missing). */
function usage({ invocation }: TokenCommandName): string {
  return `Usage: ${invocation} --project <id> [options]
Prints a development token for the projects: a JWT with a "projects" claim and an "exp", signed with the HS256
secret or with a private key whose public key the server has.

Options:
  --project <id>        a project the token grants; repeat it for several, or --project "*" for every project (required)
  --ttl <seconds>       how long the token is valid [default: 3600]
  --secret <secret>     the HS256 secret [default: SSE_AUTH_SECRET]
  --private-key <file>  sign with this PKCS#8 PEM private key instead (openssl genpkey -algorithm ed25519 -out private.pem)
  --kid <kid>           with --private-key: the "kid" header, which picks the key in the server's JWKS
  --alg <alg>           with --private-key: RS256, PS256, ES256, ES384, ES512 or EdDSA [default: the key's usual one]
  --issuer <iss>        the "iss" claim [default: SSE_AUTH_ISSUER]
  --audience <aud>      the "aud" claim [default: SSE_AUTH_AUDIENCE]
  -h, --help            this text

A bad option prints one line on stderr and exits with code 2.
`;
}

/** A parseArgs error as one short line: `unknown option --x`, `--ttl needs a value`, … */
function parseProblem(error: Error & { code?: string }): string {
  const quoted = /'([^']*)'/.exec(error.message)?.[1] ?? '';
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${quoted}`;
  if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return `${quoted.split(' ')[0]} needs a value`.trim();
  if (error.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument ${quoted}: options start with --, e.g. --project ${quoted}`;
  return error.message.split('\n')[0]!;
}

/**
 * Runs the command with `args` (without the command's name); resolves to the exit code: 0, or 2 after one line
 * on stderr for a bad option.
 */
export async function tokenCommand(args: string[], env: Record<string, string | undefined> = process.env, command: TokenCommandName = COMPILED): Promise<number> {
  const fail = (problem: string) => {
    process.stderr.write(`${command.name}: ${problem} (see ${command.help})\n`);
    return 2;
  };
  let values;
  try {
    ({ values } = parseArgs({ args, options: TOKEN_OPTIONS }));
  } catch (error) {
    return fail(parseProblem(error as Error));
  }
  if (values.help) {
    process.stdout.write(usage(command));
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
  if (problems.length > 0) return fail(problems.join('; '));
  const claims = { issuer: values.issuer ?? (env.SSE_AUTH_ISSUER || undefined), audience: values.audience ?? (env.SSE_AUTH_AUDIENCE || undefined) };
  if (!privateKeyFile) {
    console.log(await signToken(secret!, projects, ttl, claims));
    return 0;
  }
  let pem: string;
  try {
    pem = await readFile(privateKeyFile, 'utf8');
  } catch (error) {
    return fail(`cannot read ${privateKeyFile} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    console.log(await signTokenWithKey(pem, projects, ttl, { ...claims, kid: values.kid, algorithm: values.alg }));
  } catch (error) {
    return fail(`cannot sign with ${privateKeyFile} (${(error as Error).message})`);
  }
  return 0;
}

// `node server/src/cli/token.ts …` (npm run token): run it.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await tokenCommand(process.argv.slice(2), process.env, NPM_SCRIPT);
}
