// The demo page: built to demo/dist and served by the server under /sse-demo.
// `npm run dev` serves it with hot reload and proxies the API to a server on :8000 (`npm start`).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));
const api = process.env.SSE_DEMO_API ?? 'http://127.0.0.1:8000';

export default defineConfig({
  root,
  base: '/sse-demo/',
  publicDir: 'public',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
  },
  server: {
    host: '127.0.0.1',
    port: 5173,
    // The client kit lives outside the demo's root.
    fs: { allow: [fileURLToPath(new URL('..', import.meta.url))] },
    proxy: {
      '/api': { target: api, changeOrigin: false },
      '/healthz': { target: api, changeOrigin: false },
    },
  },
});
