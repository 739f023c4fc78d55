import vue from '@vitejs/plugin-vue';
import { defineConfig } from 'vite';

/** Where the hub runs in development: `npx ai-story-sse` (port 8000), or your own server with mountSse. */
const hub = process.env.SSE_HUB_URL ?? 'http://127.0.0.1:8000';

export default defineConfig({
  plugins: [
    vue({
      // The kit's tags are custom elements, not Vue components. Said here, to the compiler of the
      // single-file components, because their templates are compiled at build time.
      template: { compilerOptions: { isCustomElement: (tag) => tag.startsWith('sse-') } },
    }),
  ],
  // The hub's paths through the dev server, so the page and the hub share an origin and need no CORS;
  // `vite preview` proxies the same way.
  server: { proxy: { '/api/v1/': { target: hub, ws: true } } },
});
