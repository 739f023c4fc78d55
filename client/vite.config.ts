// The single-file ESM build of the client kit (npm run build:client): dist/client/sse-kit.js, with Lit and
// the SSE parser inside, for `<script type="module" src="/static/sse-kit.js">` on a page without a bundler.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
  root,
  // Nothing to copy: the bundle is the only output.
  publicDir: false,
  logLevel: 'warn',
  // The SharedWorker that holds one connection for every tab (client/src/shared/worker.ts): a file of its own,
  // under a name that stays, to copy beside sse-kit.js (it must come from the kit's own origin).
  worker: {
    format: 'es',
    rolldownOptions: { output: { entryFileNames: 'sse-kit-worker.js', minify: true } },
  },
  build: {
    target: 'es2022',
    outDir: 'dist/client',
    emptyOutDir: true,
    minify: 'oxc',
    rolldownOptions: {
      // One file, fully minified: Vite keeps whitespace in ES libraries for bundlers' tree-shaking,
      // but this file is loaded as it is.
      output: { minify: true, codeSplitting: false },
    },
    lib: {
      entry: fileURLToPath(new URL('./src/bundle.ts', import.meta.url)),
      formats: ['es'],
      fileName: () => 'sse-kit.js',
    },
  },
});
