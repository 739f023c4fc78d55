// Builds the Vue and React examples to examples/dist (served by examples/server.ts at /vue/ and /react/), from
// this repository's sources: `ai-story-sse/...` points at them here. Each example's own vite.config.ts is the one
// for your project (examples/package.test.ts builds them against the packed package).
import react from '@vitejs/plugin-react';
import vue from '@vitejs/plugin-vue';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const path = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));

export default defineConfig({
  root: path('.'),
  base: '/',
  publicDir: false,
  logLevel: 'warn',
  plugins: [vue({ template: { compilerOptions: { isCustomElement: (tag) => tag.startsWith('sse-') } } }), react()],
  resolve: {
    alias: [
      { find: /^ai-story-sse(\/client)?$/, replacement: path('../client/src/index.ts') },
      { find: /^ai-story-sse\/define$/, replacement: path('../client/src/define.ts') },
    ],
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
