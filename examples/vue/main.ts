import { createApp } from 'vue';
import { StageViewer } from './StageViewer.js';

const projectId = new URLSearchParams(location.search).get('project') ?? 'example';

const app = createApp({
  components: { StageViewer },
  setup: () => ({ projectId }),
  template: `<h1>Rewrite, live (Vue)</h1><StageViewer :project-id="projectId" />`,
});
// The kit's tags are custom elements, not Vue components.
app.config.compilerOptions.isCustomElement = (tag) => tag.startsWith('sse-');
app.mount('#app');
