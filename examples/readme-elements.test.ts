/**
 * The README documents the elements' whole public surface: every attribute, event and CSS custom property that
 * custom-elements.json (generated from the elements' doc blocks) names for a tag must be mentioned, as code, in the
 * README's "In the browser" section, where users look. A new attribute or custom property without a line
 * in the README fails here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Named {
  name: string;
}
interface Declaration {
  tagName?: string;
  attributes?: Named[];
  events?: Named[];
  cssProperties?: Named[];
}
interface Manifest {
  modules: Array<{ declarations?: Declaration[] }>;
}

/** The text from the `## In the browser` heading to the next `## ` heading. */
function browserSection(readme: string): string {
  const start = readme.search(/^## In the browser$/m);
  assert.ok(start >= 0, 'README.md has a "## In the browser" section');
  const next = readme.slice(start + 1).search(/^## /m);
  return next < 0 ? readme.slice(start) : readme.slice(start, start + 1 + next);
}

/** Mentioned as code: a backtick, the name, then no further name character (`` `stage-name` ``, `` `types="…"` ``). */
function mentions(text: string, name: string): boolean {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp('`' + escaped + '(?![\\w-])').test(text);
}

const manifest = JSON.parse(readFileSync(`${ROOT}custom-elements.json`, 'utf8')) as Manifest;
const section = browserSection(readFileSync(`${ROOT}README.md`, 'utf8'));
const elements = manifest.modules.flatMap((module) => module.declarations ?? []).filter((declaration) => declaration.tagName);

describe('README.md documents what custom-elements.json declares', () => {
  it('finds the elements in the manifest', () => {
    assert.deepEqual(elements.map((element) => element.tagName).sort(), ['sse-stream-provider', 'sse-stream-viewer']);
  });

  for (const element of elements) {
    for (const [kind, list] of [
      ['attribute', element.attributes],
      ['event', element.events],
      ['CSS custom property', element.cssProperties],
    ] as const) {
      it(`mentions every ${kind} of <${element.tagName}> in "In the browser"`, () => {
        const missing = (list ?? []).map((item) => item.name).filter((name) => !mentions(section, name));
        assert.deepEqual(missing, [], `<${element.tagName}> ${kind}s that README.md's "In the browser" section never mentions as \`code\``);
      });
    }
  }
});
