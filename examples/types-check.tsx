/**
 * Compile-time checks of the tags' JSX and Vue types (`npm run lint` type-checks this file; it never runs):
 * what editors accept and what they refuse.
 */
import type { JSX } from 'react';
import type { GlobalComponents } from 'vue';
import type { DoneMessage, ErrorMessage, ProgressMessage, StageUpdateMessage } from 'ai-story-sse';
import type {} from 'ai-story-sse/react';
import type {} from 'ai-story-sse/vue';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const check = <T extends true>(): T | undefined => undefined;

// React 19: attributes, properties, and `on<event>` props with typed details.
type ViewerJSX = JSX.IntrinsicElements['sse-stream-viewer'];
check<Equal<Parameters<NonNullable<ViewerJSX['ondone']>>[0], CustomEvent<DoneMessage>>>();
check<Equal<Parameters<NonNullable<ViewerJSX['onstage_update']>>[0], CustomEvent<StageUpdateMessage>>>();
check<Equal<Parameters<NonNullable<ViewerJSX['onerror']>>[0], CustomEvent<ErrorMessage>>>();
check<Equal<Parameters<NonNullable<ViewerJSX['onprogress']>>[0], CustomEvent<ProgressMessage>>>();
export const accepted = [
  <sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect show-logs token={() => 'jwt'} ondone={(event) => event.detail.full_text} />,
  // The element's events: lowercase, the exact event name. React's own handlers (onClick, ...) still work.
  <sse-stream-viewer onerror={(event) => event.detail.retry_count} onprogress={(event) => event.detail.current} onreset={() => {}} onClick={() => {}} />,
  <sse-stream-viewer color-scheme="dark" labels={{ state: { open: 'On air' } }} cancelable own-connection />,
  <sse-stream-provider project-id="1">
    <sse-stream-viewer stage-name="rewrite" className="wide" />
  </sse-stream-provider>,
];
export const refused = [
  // @ts-expect-error auto-connect is a boolean attribute
  <sse-stream-viewer auto-connect="yes" />,
  // @ts-expect-error a done event's detail is a DoneMessage, whose full_text is a string
  <sse-stream-viewer ondone={(event) => event.detail.full_text.toFixed()} />,
  // @ts-expect-error color-scheme is light, dark or auto
  <sse-stream-viewer color-scheme="sepia" />,
  // React's camelCase handlers never fire for the element's events (React keeps them for its synthetic events, or
  // listens to "Done", "StageUpdate"): they are left out, so each one is a type error.
  // @ts-expect-error onError: use onerror
  <sse-stream-viewer onError={() => {}} />,
  // @ts-expect-error onProgress: use onprogress
  <sse-stream-viewer onProgress={() => {}} />,
  // @ts-expect-error onReset: use onreset
  <sse-stream-viewer onReset={() => {}} />,
  // @ts-expect-error onErrorCapture: use onerror
  <sse-stream-viewer onErrorCapture={() => {}} />,
  // @ts-expect-error onDone: use ondone
  <sse-stream-viewer onDone={() => {}} />,
  // @ts-expect-error onStageUpdate: use onstage_update
  <sse-stream-viewer onStageUpdate={() => {}} />,
  // @ts-expect-error onCancel: use oncancel
  <sse-stream-viewer onCancel={() => {}} />,
];

// Vue 3: the global components Volar reads; `@done` is `onDone`, `@stage_update` is `onStage_update`.
type ViewerVue = InstanceType<GlobalComponents['sse-stream-viewer']>['$props'];
check<Equal<Parameters<NonNullable<ViewerVue['onDone']>>[0], CustomEvent<DoneMessage>>>();
check<Equal<Parameters<NonNullable<ViewerVue['onStage_update']>>[0], CustomEvent<StageUpdateMessage>>>();
check<Equal<ViewerVue['projectId'], string | undefined>>();
check<Equal<ViewerVue['colorScheme'], 'auto' | 'light' | 'dark' | undefined>>();
// `@stage-update` / `@stageUpdate` listen to "stage-update", which never fires: `never`, so a handler is refused.
check<Equal<ViewerVue['onStageUpdate'], undefined>>();
// @ts-expect-error a handler for onStageUpdate does not compile: use @stage_update
export const misnamed: ViewerVue = { onStageUpdate: () => {} };
