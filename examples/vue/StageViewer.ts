/**
 * A Vue 3 component (no single-file component, no build step of Vue's own) that shows one stage live with
 * `<sse-stream-viewer>` and reacts to its events with `@stage_update` and `@done`.
 * Its template is compiled in the browser: use Vue's full build (`vue/dist/vue.esm-bundler.js`) and tell Vue
 * that `sse-*` tags are custom elements (see main.ts).
 */
import { defineComponent, ref } from 'vue';
import type { DoneMessage, StageUpdateMessage } from 'ai-story-sse';
import 'ai-story-sse/define';

export const StageViewer = defineComponent({
  name: 'StageViewer',
  props: {
    projectId: { type: String, required: true },
    stage: { type: String, default: 'rewrite' },
  },
  emits: {
    finished: (message: DoneMessage) => typeof message.full_text === 'string',
  },
  setup(_props, { emit }) {
    const status = ref('waiting for the worker');
    const result = ref('');
    const onStageUpdate = (event: CustomEvent<StageUpdateMessage>) => {
      status.value = `${event.detail.status} · ${event.detail.progress}%`;
    };
    const onDone = (event: CustomEvent<DoneMessage>) => {
      result.value = `Done: ${event.detail.full_text.length} characters, ${String(event.detail.metadata.tokens_used)} tokens.`;
      emit('finished', event.detail);
    };
    return { status, result, onStageUpdate, onDone };
  },
  template: `
    <section>
      <p class="status">{{ status }}</p>
      <sse-stream-viewer
        :project-id="projectId"
        :stage-name="stage"
        auto-connect
        @stage_update="onStageUpdate"
        @done="onDone"
      ></sse-stream-viewer>
      <p v-if="result" id="result">{{ result }}</p>
    </section>
  `,
});
