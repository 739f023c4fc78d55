#!/usr/bin/env node
// `npm run build:lib`: the package's modules and declarations (tsconfig.build.json), laid out as the product
// reads: protocol/ → dist/protocol, client/src/ → dist/client, server/src/ → dist/server, plus the Lua
// scripts the Redis broker loads beside its modules. `--out-dir DIR` builds into DIR instead of dist/.
//
// tsc can only mirror the source tree (rootDir "."), so it emits into a temporary folder; each file is then
// written to its new place with every relative module specifier that crosses trees re-pointed: resolved
// against the file's old place, mapped to the new layout, written as a path relative to the new place.
// The specifiers are found in the syntax tree (imports, exports, import() calls and types), not by pattern.
//
// The server's packages are optional peer dependencies (a client-only install has none of them), so the server's
// entry points are guarded: dist/server/entry.js (`ai-story-sse/server`) and dist/server/bin.js (the command) are
// written here around the real modules. Each checks the peers its module's graph imports (server/src/peers.ts),
// then loads the module with import(): a missing peer is one error that says what to install. Every package a
// built module imports must be a dependency (client, protocol) or a dependency or peer (server), or the build fails.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
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

/**
 * The guarded entry points: the real module, the guard written beside it, what it is, and who needs the peers (the
 * error's first words). An `exports` guard re-exports the module's named exports (its declarations: `export *`);
 * a `run` guard is a command (its error is one line on stderr and exit code 2).
 */
const GUARDS = [
  { module: 'server/index.js', guard: 'server/entry.js', title: 'ai-story-sse/server', needs: 'ai-story-sse/server', kind: 'exports' },
  { module: 'server/main.js', guard: 'server/bin.js', title: 'The ai-story-sse command', needs: 'the server', kind: 'run' },
];

const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const dependencies = new Set(Object.keys(manifest.dependencies ?? {}));
const peers = manifest.peerDependencies ?? {};

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

/** The package a bare specifier names (`lit/decorators.js` → `lit`, `@lit/context` → itself), or undefined for a relative one or a builtin. */
function packageOf(specifier) {
  if (specifier.startsWith('.') || isBuiltin(specifier)) return undefined;
  return specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/');
}

/** Every package the built module `file` and the modules it imports (statically or by import()) import. */
function packagesOfGraph(file, seen = new Set(), found = new Set()) {
  if (seen.has(file)) return found;
  seen.add(file);
  for (const { text: specifier } of moduleSpecifiers(file, readFileSync(file, 'utf8'))) {
    if (specifier.startsWith('./') || specifier.startsWith('../')) packagesOfGraph(resolve(dirname(file), specifier), seen, found);
    else if (packageOf(specifier)) found.add(packageOf(specifier));
  }
  return found;
}

/** The names a built barrel module exports; it may only re-export by name (`export { a, b } from './x.js'`). */
function namedExports(file) {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  return source.statements.flatMap((statement) => {
    if (!ts.isExportDeclaration(statement)) return [];
    if (!statement.exportClause || !ts.isNamedExports(statement.exportClause)) {
      throw new Error(`${relative(outDir, file)}: \`${statement.getText()}\`: a guarded entry point re-exports by name only (its guard lists the names)`);
    }
    return statement.exportClause.elements.map((element) => element.name.text);
  });
}

/** The relative paths of a file's `new URL('./x', import.meta.url)` (a worker script, a Lua file beside its module). */
function urlReferences(file, text) {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const found = [];
  const visit = (node) => {
    const [path, base] = ts.isNewExpression(node) && node.expression.getText() === 'URL' ? (node.arguments ?? []) : [];
    if (path && ts.isStringLiteralLike(path) && /^\.\.?\//.test(path.text) && base?.getText() === 'import.meta.url') found.push(path.text);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/**
 * Fails the build when a built module imports a package users would not have installed, or refers with
 * `new URL(…, import.meta.url)` to a file of the package that is not there (one no module imports: a worker).
 */
function checkImports() {
  for (const [, target] of TREES) {
    for (const file of filesUnder(join(outDir, target)).filter((path) => path.endsWith('.js') && !NOT_OURS(relative(join(outDir, target), path)))) {
      const text = readFileSync(file, 'utf8');
      for (const path of urlReferences(file, text)) {
        const referenced = resolve(dirname(file), path);
        if (!relative(outDir, referenced).startsWith('..') && !existsSync(referenced)) {
          throw new Error(`${relative(outDir, file)} refers to ${path}, which the build did not write (add its source to tsconfig.build.json)`);
        }
      }
      for (const { text: specifier } of moduleSpecifiers(file, text)) {
        const name = packageOf(specifier);
        if (!name || dependencies.has(name) || (target === 'server' && name in peers)) continue;
        const allowed = target === 'server' ? 'a dependency or a peer dependency' : 'a dependency (the peers are the server\'s)';
        throw new Error(`${relative(outDir, file)} imports ${specifier}, but ${name} is not ${allowed} in package.json`);
      }
    }
  }
}

/** Writes each guard of GUARDS beside its module (see the top of this file). */
function writeGuards() {
  for (const { module, guard, title, needs, kind } of GUARDS) {
    const modulePath = join(outDir, module);
    const guardPath = join(outDir, guard);
    if (existsSync(guardPath)) throw new Error(`${guard} is a guard this script writes, but tsc emitted one: rename its source`);
    const peersNeeded = [...packagesOfGraph(modulePath)].filter((name) => name in peers).sort();
    const list = JSON.stringify(peersNeeded.map((name) => ({ name, range: peers[name] })));
    const specifier = `./${relative(dirname(guardPath), modulePath)}`;
    const comment = `// ${title}, written by scripts/build-lib.mjs: checks the peer dependencies ${specifier} imports, then loads it.`;
    const lines =
      kind === 'run'
        ? ['#!/usr/bin/env node', comment, `import { exitUnlessPeers } from './peers.js';`, `exitUnlessPeers(${JSON.stringify(needs)}, ${list});`, `await import('${specifier}');`]
        : [
            comment,
            `import { requirePeers } from './peers.js';`,
            `requirePeers(${JSON.stringify(needs)}, ${list});`,
            `export const { ${namedExports(modulePath).join(', ')} } = await import('${specifier}');`,
          ];
    writeFileSync(guardPath, `${lines.join('\n')}\n`, { mode: kind === 'run' ? 0o755 : 0o644 });
    if (kind === 'exports') writeFileSync(guardPath.replace(/\.js$/, '.d.ts'), `export * from '${specifier}';\n`);
  }
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
  checkImports();
  writeGuards();
  count += GUARDS.length + GUARDS.filter(({ kind }) => kind === 'exports').length;
  const shown = relative(process.cwd(), outDir) || outDir;
  console.log(`${shown}: ${count} files in ${TREES.map(([, t]) => `${t}/`).join(', ')}, the modules and declarations of ".", "./client", "./define", "./server", "./react", "./vue" and "./protocol"`);
} finally {
  rmSync(emitted, { recursive: true, force: true });
}
