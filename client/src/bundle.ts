/**
 * The entry of the single-file build (`dist/client/sse-kit.js`, npm run build:client): the whole client
 * kit with its dependencies, registering the tags on import, for a plain `<script type="module">`.
 */
import './define.js';

export * from './index.js';
