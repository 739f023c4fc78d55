/**
 * README.md's runnable snippets, run for real, so what a newcomer copies works.
 *
 * A snippet is runnable when the info string of its fence has the word `runnable` after the language
 * (```` ```sh runnable ````, ```` ```js runnable ````): GitHub colours it by the first word and shows nothing of the rest.
 * - `sh`: run with bash, in a project folder of its own where `ai-story-sse` is installed (a link to this repository,
 *   so `npx ai-story-sse` is the package's command and no registry is asked), against the hub and the redis-server this
 *   file starts: `http://127.0.0.1:8000` and `redis://127.0.0.1:6379` in the text are replaced by theirs.
 * - `js`: written to a `.mjs` file in that folder and run with plain `node`, so `import … from 'ai-story-sse/server'`
 *   resolves through the package's `exports` to the built `dist/` (built first when missing or older than its sources).
 * Each must exit 0. A comment with an arrow, `# → text` or `// prints → text`, promises output: `text` must appear in what the snippet
 * printed (`…` stands for anything). A shell snippet may leave a command running in the background (`curl -N … &`):
 * its output counts until every promise appeared, then it is stopped.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startRedis, type TestRedis } from '../server/test/redis-server.js';
import { startServerProcess, type ServerProcess } from '../server/test/server-process.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** How long a snippet may run, and how long its promised output may take after it exited. */
const SNIPPET_TIMEOUT_MS = 60_000;

interface Snippet {
  language: string;
  code: string;
  /** 1-based line of the opening fence in README.md. */
  line: number;
  /** The closest heading above it. */
  heading: string;
}

/** Every fenced block whose info string is `<language> runnable …`. */
function runnableSnippets(markdown: string): Snippet[] {
  const snippets: Snippet[] = [];
  const lines = markdown.split('\n');
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const fence = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(line);
    if (!fence) {
      const title = /^#{1,6}\s+(.*)$/.exec(line);
      if (title) heading = title[1]!;
      continue;
    }
    const [, indent, marker, info] = fence as unknown as [string, string, string, string];
    const body: string[] = [];
    let end = i + 1;
    for (; end < lines.length && !lines[end]!.trim().startsWith(marker); end++) body.push(lines[end]!.slice(indent.length));
    const words = info.trim().split(/\s+/);
    if (words.includes('runnable')) snippets.push({ language: words[0]!, code: body.join('\n') + '\n', line: i + 1, heading });
    i = end;
  }
  return snippets;
}

/** What the `# → text` / `// → text` comments promise, each as its pieces between `…`. */
function promises(code: string): string[][] {
  return code.split('\n').flatMap((line) => {
    const match = /(?:#|\/\/)[^→]*→\s*(.+?)\s*$/.exec(line);
    return match ? [match[1]!.split('…').map((piece) => piece.trim()).filter(Boolean)] : [];
  });
}

/** The pieces appear in `output` in this order. */
function kept(output: string, pieces: string[]): boolean {
  let from = 0;
  for (const piece of pieces) {
    const at = output.indexOf(piece, from);
    if (at < 0) return false;
    from = at + piece.length;
  }
  return true;
}

interface Outcome {
  code: number | null;
  output: string;
  /** The promises that never appeared. */
  missing: string[][];
}

/** Runs `command` in its own process group; resolves once it exited and every promise appeared (or time ran out). */
function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, expected: string[][]): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let code: number | null | undefined;
    const missing = () => expected.filter((pieces) => !kept(output, pieces));
    const finish = () => {
      clearTimeout(timer);
      try {
        process.kill(-child.pid!, 'SIGTERM'); // what it left running in the background
      } catch {
        // the group is gone already
      }
      resolve({ code: code ?? null, output, missing: missing() });
    };
    const check = () => {
      if (code !== undefined && missing().length === 0) finish();
    };
    const timer = setTimeout(finish, SNIPPET_TIMEOUT_MS);
    child.stdout.on('data', (chunk) => ((output += chunk), check()));
    child.stderr.on('data', (chunk) => ((output += chunk), check()));
    child.on('exit', (status, signal) => {
      code = status ?? (signal ? -1 : null);
      check();
    });
    // Everything it and its background commands printed is in: nothing more can come.
    child.on('close', finish);
  });
}

const snippets = runnableSnippets(readFileSync(join(ROOT, 'README.md'), 'utf8'));
let redis: TestRedis | undefined;
let hub: ServerProcess | undefined;
let project: string | undefined;

before(async () => {
  // The Node snippets import the package, whose exports point into dist/.
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    bin: Record<string, string>;
    exports: Record<string, string | { default: string }>;
  };
  const build = spawnSync(process.execPath, ['scripts/build-if-stale.mjs', 'server'], { cwd: ROOT, stdio: 'inherit' });
  assert.equal(build.status, 0, 'building dist/ (npm run build:lib)');
  // build-if-stale goes by the age of one file: make sure every module entry point the snippets may import is there.
  const entries = Object.values(manifest.exports).flatMap((target) => (typeof target === 'string' ? [] : [target.default]));
  if (!entries.every((file) => existsSync(join(ROOT, file)))) {
    const full = spawnSync(process.execPath, ['scripts/build-lib.mjs'], { cwd: ROOT, stdio: 'inherit' });
    assert.equal(full.status, 0, 'npm run build:lib');
  }
  redis = await startRedis();
  hub = await startServerProcess({ REDIS_URL: redis.url });
  // A project folder with the package installed the way npm would link it: the package and its command.
  project = mkdtempSync(join(tmpdir(), 'readme-snippets-'));
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'readme-snippets', private: true, type: 'module' }));
  mkdirSync(join(project, 'node_modules', '.bin'), { recursive: true });
  symlinkSync(ROOT, join(project, 'node_modules', 'ai-story-sse'), 'dir');
  for (const [name, file] of Object.entries(manifest.bin)) symlinkSync(join(ROOT, file), join(project, 'node_modules', '.bin', name));
});

after(async () => {
  await hub?.kill();
  await redis?.close();
  if (project) rmSync(project, { recursive: true, force: true });
});

/** The snippet as written for a hub on :8000 and a Redis on :6379, pointed at this file's. */
function localized(code: string): string {
  const hubUrl = new URL(hub!.url);
  const text = code
    .replaceAll('http://127.0.0.1:8000', hub!.url)
    .replaceAll('127.0.0.1:8000', hubUrl.host)
    .replaceAll('redis://127.0.0.1:6379', redis!.url);
  // Never the machine's own Redis, nor a server this test did not start.
  assert.doesNotMatch(text, /:6379\b|:8000\b/, 'every address in the snippet was replaced');
  return text;
}

describe('README.md', () => {
  it('marks the snippets a newcomer runs first as runnable', () => {
    const kinds = new Set(snippets.map((snippet) => snippet.language));
    assert.ok(kinds.has('sh') && kinds.has('js'), `shell and Node snippets are marked (found: ${[...kinds].join(', ')})`);
    assert.ok(snippets.length >= 5, `at least 5 runnable snippets, found ${snippets.length}`);
    for (const snippet of snippets) assert.ok(['sh', 'js'].includes(snippet.language), `README.md:${snippet.line}: a runnable snippet is sh or js`);
  });

  for (const snippet of snippets) {
    // Outside CI a machine without a tool a shell snippet calls skips it with a message; in CI (.ci/run installs them) it must run.
    const tools = snippet.language === 'sh' ? ['curl', 'openssl'].filter((tool) => new RegExp(`\\b${tool}\\b`).test(snippet.code)) : [];
    const missing = tools.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0);
    const skip = missing.length > 0 && !process.env.CI ? `${missing.join(' and ')} not found (apt-get install ${missing.join(' ')})` : false;
    it(`runs the ${snippet.language} snippet of "${snippet.heading}" (README.md:${snippet.line})`, { skip }, async () => {
      const code = localized(snippet.code);
      const expected = promises(snippet.code);
      const cwd = join(project!, `snippet-${snippet.line}`);
      mkdirSync(cwd);
      // No registry: npx must find the linked command, never download one.
      const env = { ...process.env, npm_config_offline: 'true', npm_config_update_notifier: 'false', NO_COLOR: '1' };
      let outcome: Outcome;
      if (snippet.language === 'sh') {
        outcome = await run('bash', ['-c', code], cwd, env, expected);
      } else {
        const file = join(cwd, 'snippet.mjs');
        writeFileSync(file, code);
        outcome = await run(process.execPath, [file], cwd, env, expected);
      }
      const shown = `\n--- the snippet, as run ---\n${code}--- what it printed ---\n${outcome.output}`;
      assert.equal(outcome.code, 0, `it exits 0${shown}`);
      assert.deepEqual(outcome.missing.map((pieces) => pieces.join(' … ')), [], `what it promises appears${shown}`);
    });
  }
});
