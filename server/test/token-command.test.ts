/**
 * The development-token command as a user runs it: `npm run token -- …` from the sources, and the compiled
 * `ai-story-sse token …` (the package's bin, built with scripts/build-lib.mjs into a folder of this test's own).
 * `--help` prints every option and exits 0; a bad option is one line on stderr (no stack trace) and exit code 2.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { TOKEN_OPTIONS } from '../src/cli/token.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SECRET = 'token-command-test-secret-long-enough-for-hs256';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], env: Record<string, string> = {}, cwd = ROOT): Promise<Run> {
  const child = spawn(command, args, { cwd, env: { ...process.env, SSE_AUTH_SECRET: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** Every option of the command, as a user types it. */
const OPTION_FLAGS = Object.keys(TOKEN_OPTIONS).map((name) => `--${name}`);

function assertUsage(result: Run, invocation: string) {
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
  assert.match(result.stdout, new RegExp(`^Usage: ${invocation} --project <id> \\[options\\]$`, 'm'));
  assert.ok(OPTION_FLAGS.length >= 9, `${OPTION_FLAGS.length} options`);
  for (const flag of OPTION_FLAGS) assert.match(result.stdout, new RegExp(`^  (-\\w, )?${flag}\\b.*\\S`, 'm'), `the usage explains ${flag}`);
}

/** One line on stderr, exactly `expected`, nothing on stdout but npm's banner, exit code 2. */
function assertRefused(result: Run, expected: string) {
  assert.equal(result.code, 2, result.stdout + result.stderr);
  assert.equal(result.stderr, `${expected}\n`);
  assert.doesNotMatch(result.stdout + result.stderr, /\n\s+at |Error:|node:internal/, 'no stack trace');
}

describe('npm run token', () => {
  const npmToken = (...args: string[]) => run('npm', ['run', '--silent', 'token', '--', ...args]);

  it('--help prints the usage with every option and exits 0', async () => {
    assertUsage(await npmToken('--help'), 'npm run token --');
    assertUsage(await npmToken('-h'), 'npm run token --');
  });

  it('refuses an unknown option with one line that points to --help, exit code 2', async () => {
    assertRefused(await npmToken('--x'), 'token: unknown option --x (see npm run token -- --help)');
    assertRefused(await npmToken('--project', '1', '--tll', '60'), 'token: unknown option --tll (see npm run token -- --help)');
    assertRefused(await npmToken('--ttl'), 'token: --ttl needs a value (see npm run token -- --help)');
    assertRefused(await npmToken('42'), 'token: unexpected argument 42: options start with --, e.g. --project 42 (see npm run token -- --help)');
    assertRefused(await npmToken('--project', '1'), 'token: no key: set SSE_AUTH_SECRET (or pass --secret), or pass --private-key <pem file> (see npm run token -- --help)');
  });

  it('prints a token for the projects with a good set of options', async () => {
    const result = await npmToken('--project', '42', '--project', '43', '--ttl', '120', '--secret', SECRET);
    assert.equal(result.code, 0, result.stderr);
    const claims = decodeJwt(result.stdout.trim());
    assert.deepEqual(claims.projects, ['42', '43']);
    assert.equal(claims.exp! - claims.iat!, 120);
  });
});

describe('the compiled ai-story-sse token', () => {
  let dir: string;
  let bin: string;

  before(async () => {
    // The package's layout in a folder of its own: dist/ built from the sources, package.json, the dependencies.
    dir = await mkdtemp(join(tmpdir(), 'sse-token-bin-'));
    await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    await copyFile(join(ROOT, 'package.json'), join(dir, 'package.json'));
    const built = await run(process.execPath, ['scripts/build-lib.mjs', '--out-dir', join(dir, 'dist')]);
    assert.equal(built.code, 0, `build-lib failed:\n${built.stdout}\n${built.stderr}`);
    const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    bin = join(dir, manifest.bin['ai-story-sse']!);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('--help prints the usage with every option and exits 0; a bad option is one line and exit code 2', async () => {
    const compiled = (...args: string[]) => run(process.execPath, [bin, 'token', ...args], {}, dir);
    assertUsage(await compiled('--help'), 'ai-story-sse token');
    assertRefused(await compiled('--x'), 'ai-story-sse token: unknown option --x (see ai-story-sse token --help)');
    assertRefused(await compiled('--project'), 'ai-story-sse token: --project needs a value (see ai-story-sse token --help)');
    const token = await compiled('--project', '7', '--secret', SECRET);
    assert.equal(token.code, 0, token.stderr);
    assert.deepEqual(decodeJwt(token.stdout.trim()).projects, ['7']);
  });
});
