#!/usr/bin/env node
// `npm run build:lib`: the package's modules and declarations (tsconfig.build.json), laid out as the product
// reads: protocol/ → dist/protocol, client/src/ → dist/client, server/src/ → dist/server, plus the Lua
// scripts the Redis broker loads beside its modules. `--out-dir DIR` builds into DIR instead of dist/.
//
// tsc can only mirror the source tree (rootDir "."), so it emits into a temporary folder; each file is then
// written to its new place with every relative module specifier that crosses trees re-pointed: resolved
// against the file's old place, mapped to the new layout, written as a path relative to the new place.
// The specifiers are found in the syntax tree (imports, exports, import() calls and types), not by pattern.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

const root = new URL('..', import.meta.url).pathname;
const at = process.argv.indexOf('--out-dir');
const outDir = resolve(at > 0 ? process.argv[at + 1] : join(root, 'dist'));

/** Where each source tree goes in the package: [folder in the repository, folder under outDir]. */
const TREES = [
  ['protocol', 'protocol'],
  ['client/src', 'client'],
  ['server/src', 'server'],
];

/** dist/client also holds the single-file build (scripts/build-client.mjs); this script leaves it be. */
const NOT_OURS = (name) => name.startsWith('sse-kit.') || name.startsWith('sse-kit-worker.');

function filesUnder(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

/** The new place of a path under `from` (the tsc output or the sources), or undefined outside the trees. */
function mapped(path, from) {
  for (const [source, target] of TREES) {
    const rest = relative(join(from, source), path);
    if (!rest.startsWith('..') && !rest.startsWith(sep)) return join(outDir, target, rest);
  }
  return undefined;
}

/** The string literals of a file's module specifiers: import/export … from, import(), import("…") types. */
function moduleSpecifiers(file, text) {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith('.d.ts') ? ts.ScriptKind.TS : ts.ScriptKind.JS);
  const found = [];
  const visit = (node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      found.push(node.arguments[0]);
    } else if (ts.isModuleDeclaration(node) && ts.isStringLiteral(node.name)) {
      found.push(node.name);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The text of `file` (emitted at `oldPath` in `emitted`) with its relative specifiers re-pointed for `newPath`. */
function repointed(text, oldPath, newPath, emitted) {
  let result = '';
  let last = 0;
  for (const literal of moduleSpecifiers(oldPath, text)) {
    const specifier = literal.text;
    if (!specifier.startsWith('./') && !specifier.startsWith('../')) continue;
    const oldTarget = resolve(dirname(oldPath), specifier);
    // A declaration imports `./x.js` and finds `./x.d.ts`.
    if (!existsSync(oldTarget) && !existsSync(oldTarget.replace(/\.js$/, '.d.ts'))) {
      throw new Error(`${relative(emitted, oldPath)} imports ${specifier}, which tsc did not emit`);
    }
    const newTarget = mapped(oldTarget, emitted);
    if (!newTarget) throw new Error(`${relative(emitted, oldPath)} imports ${specifier}, which is outside ${TREES.map(([s]) => s).join(', ')}`);
    let next = relative(dirname(newPath), newTarget).split(sep).join('/');
    if (!next.startsWith('.')) next = `./${next}`;
    if (next === specifier) continue;
    // getStart() skips leading trivia; the literal's first and last characters are its quotes.
    result += text.slice(last, literal.getStart() + 1) + next;
    last = literal.getEnd() - 1;
  }
  return result + text.slice(last);
}

for (const [, target] of TREES) {
  const dir = join(outDir, target);
  if (!existsSync(dir)) continue;
  for (const name of readdirSync(dir)) if (!NOT_OURS(name)) rmSync(join(dir, name), { recursive: true, force: true });
}

const emitted = mkdtempSync(join(tmpdir(), 'ai-story-sse-lib-'));
try {
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', emitted], {
    stdio: 'inherit',
  });
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);

  let count = 0;
  for (const oldPath of filesUnder(emitted)) {
    const newPath = mapped(oldPath, emitted);
    if (!newPath) throw new Error(`tsc emitted ${relative(emitted, oldPath)}, outside ${TREES.map(([s]) => s).join(', ')}: an entry point imports it`);
    const text = readFileSync(oldPath, 'utf8');
    mkdirSync(dirname(newPath), { recursive: true });
    writeFileSync(newPath, /\.(d\.ts|js)$/.test(oldPath) ? repointed(text, oldPath, newPath, emitted) : text);
    count++;
  }
  // The broker reads its Lua beside its module (new URL('./publish.lua', import.meta.url)).
  for (const lua of filesUnder(join(root, 'server/src')).filter((path) => path.endsWith('.lua'))) {
    const newPath = mapped(lua, root);
    mkdirSync(dirname(newPath), { recursive: true });
    copyFileSync(lua, newPath);
    count++;
  }
  const shown = relative(process.cwd(), outDir) || outDir;
  console.log(`${shown}: ${count} files in ${TREES.map(([, t]) => `${t}/`).join(', ')}, the modules and declarations of ".", "./client", "./define", "./server", "./react", "./vue" and "./protocol"`);
} finally {
  rmSync(emitted, { recursive: true, force: true });
}
