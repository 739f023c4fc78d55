import { createApp } from 'vue';
import StageViewer from './StageViewer.vue';

const projectId = new URLSearchParams(location.search).get('project') ?? 'example';

// Nothing about custom elements here: app.config.compilerOptions only reaches templates compiled in the
// browser, and a single-file component's template was compiled by @vitejs/plugin-vue (see vite.config.ts).
createApp(StageViewer, { projectId }).mount('#app');
