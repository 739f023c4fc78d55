// Builds the Vue and React examples to examples/dist (served by examples/server.ts at /vue/ and /react/).
// In your project, `ai-story-sse/...` resolves through the package's exports; here they point at the sources.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const path = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));

export default defineConfig({
  root: path('.'),
  base: '/',
  publicDir: false,
  logLevel: 'warn',
  resolve: {
    alias: [
      { find: /^ai-story-sse(\/client)?$/, replacement: path('../client/src/index.ts') },
      { find: /^ai-story-sse\/define$/, replacement: path('../client/src/define.ts') },
      // Vue's full build compiles the examples' templates in the browser (no single-file components).
      { find: /^vue$/, replacement: 'vue/dist/vue.esm-bundler.js' },
    ],
  },
  define: {
    __VUE_OPTIONS_API__: 'true',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    rolldownOptions: {
      input: { vue: path('vue/index.html'), react: path('react/index.html') },
    },
  },
});
