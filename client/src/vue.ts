/**
 * Vue 3 types of the kit's tags (`ai-story-sse/vue`), so Vue's language tools check their props and
 * `@event` handlers. Types only; load them once, e.g. `import type {} from 'ai-story-sse/vue';`.
 *
 * Vue must also be told that the tags are custom elements, not components:
 * `compilerOptions.isCustomElement: (tag) => tag.startsWith('sse-')` (in `app.config` with the runtime
 * compiler, or in `@vitejs/plugin-vue`'s `template.compilerOptions`).
 */
import type { DefineComponent } from 'vue';
import type { SseStreamViewerEventMap } from './components/sse-stream-viewer/sse-stream-viewer.component.js';
import type { ViewerLabels } from './labels.js';
import type { TokenSource } from './token-source.js';

/** `@event` handlers (`onDone`, `onStage_update`, ...), one per DOM event of the element, typed with its `detail`. */
export type VueEventProps<EventMap> = { [K in keyof EventMap as `on${Capitalize<K & string>}`]?: (event: EventMap[K]) => void };

/** Props of `<sse-stream-viewer>`, written `project-id` or `projectId` in templates; see its class for each one. */
export interface SseStreamViewerVueProps {
  projectId?: string;
  stageName?: string;
  baseUrl?: string;
  autoConnect?: boolean;
  showLogs?: boolean;
  maxLogEntries?: number;
  token?: TokenSource | undefined;
  labels?: Partial<ViewerLabels> | undefined;
}

/** Props of `<sse-stream-provider>`. */
export interface SseStreamProviderVueProps {
  projectId?: string;
  baseUrl?: string;
  token?: TokenSource | undefined;
}

declare module 'vue' {
  interface GlobalComponents {
    'sse-stream-viewer': DefineComponent<SseStreamViewerVueProps & VueEventProps<SseStreamViewerEventMap>>;
    'sse-stream-provider': DefineComponent<SseStreamProviderVueProps>;
  }
}
