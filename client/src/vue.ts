/**
 * Vue 3 types of the kit's tags (`ai-story-sse/vue`), so Vue's language tools check their props and
 * `@event` handlers. Types only; load them once, e.g. `import type {} from 'ai-story-sse/vue';`.
 *
 * Vue must also be told that the tags are custom elements, not components, by the compiler that compiles the
 * templates: for single-file components (built by `@vitejs/plugin-vue`),
 * `vue({ template: { compilerOptions: { isCustomElement: (tag) => tag.startsWith('sse-') } } })` in the Vite config;
 * for templates compiled in the browser (Vue's full build), `app.config.compilerOptions.isCustomElement` with the
 * same function. Setting `app.config.compilerOptions` does nothing for templates compiled at build time.
 *
 * Two traps these types guard against or the element absorbs:
 * - Event names are the element's exactly: `@stage_update`, not `@stage-update` or `@stageUpdate` (Vue listens to
 *   `stage-update` for both, which never fires); those are type errors here.
 * - Vue writes `:auto-connect="false"` as the attribute `auto-connect="false"`; the elements read the value `false`
 *   as off (an HTML boolean attribute would be on).
 */
import type { DefineComponent } from 'vue';
import type { SseStreamViewerEventMap } from './components/sse-stream-viewer/sse-stream-viewer.component.js';
import type { ColorSchemeSetting } from './color-scheme-controller.js';
import type { ViewerLabelOverrides } from './labels.js';
import type { Transport } from './shared/mux-core.js';
import type { TokenSource } from './token-source.js';

/** `@event` handlers (`onDone`, `onStage_update`, ...), one per DOM event of the element, typed with its `detail`. */
export type VueEventProps<EventMap> = { [K in keyof EventMap as `on${Capitalize<K & string>}`]?: (event: EventMap[K]) => void };

/** `snake_case` → `camelCase`. */
type Camel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S;

/**
 * `@stage-update` and `@stageUpdate` (both `onStageUpdate` to Vue's tools): handlers of an event the element never
 * fires (`stage-update`), typed `never` so they do not compile.
 */
export type VueMisnamedEventProps<EventMap> = {
  [K in keyof EventMap & string as K extends `${string}_${string}` ? `on${Capitalize<Camel<K>>}` : never]?: never;
};

/** Props of `<sse-stream-viewer>`, written `project-id` or `projectId` in templates; see its class for each one. */
export interface SseStreamViewerVueProps {
  projectId?: string;
  stageName?: string;
  baseUrl?: string;
  autoConnect?: boolean;
  showLogs?: boolean;
  maxLogEntries?: number;
  ownConnection?: boolean;
  /** `light` or `dark` forces that look; `auto` (default) follows the page's `color-scheme`, else the OS. */
  colorScheme?: ColorSchemeSetting;
  cancelable?: boolean;
  transport?: Transport;
  /** Comma-separated message types, filtered on the server (`progress,done`). */
  types?: string;
  /** Comma-separated stages, without `stage-name`. */
  stages?: string;
  token?: TokenSource | undefined;
  /** Overrides of the built-in labels, deep-merged over them. */
  labels?: ViewerLabelOverrides | undefined;
}

/** Props of `<sse-stream-provider>`. */
export interface SseStreamProviderVueProps {
  projectId?: string;
  baseUrl?: string;
  ownConnection?: boolean;
  transport?: Transport;
  token?: TokenSource | undefined;
}

declare module 'vue' {
  interface GlobalComponents {
    'sse-stream-viewer': DefineComponent<SseStreamViewerVueProps & VueEventProps<SseStreamViewerEventMap> & VueMisnamedEventProps<SseStreamViewerEventMap>>;
    'sse-stream-provider': DefineComponent<SseStreamProviderVueProps>;
  }
}
