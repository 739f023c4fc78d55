/**
 * Compile-time checks of the tags' JSX and Vue types (`npm run lint` type-checks this file; it never runs):
 * what editors accept and what they refuse.
 */
import type { JSX } from 'react';
import type { GlobalComponents } from 'vue';
import type { DoneMessage, StageUpdateMessage } from 'ai-story-sse';
import type {} from 'ai-story-sse/react';
import type {} from 'ai-story-sse/vue';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const check = <T extends true>(): T | undefined => undefined;

// React 19: attributes, properties, and `on<event>` props with typed details.
type ViewerJSX = JSX.IntrinsicElements['sse-stream-viewer'];
check<Equal<Parameters<NonNullable<ViewerJSX['ondone']>>[0], CustomEvent<DoneMessage>>>();
check<Equal<Parameters<NonNullable<ViewerJSX['onstage_update']>>[0], CustomEvent<StageUpdateMessage>>>();
export const accepted = [
  <sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect show-logs token={() => 'jwt'} ondone={(event) => event.detail.full_text} />,
  <sse-stream-provider project-id="1">
    <sse-stream-viewer stage-name="rewrite" className="wide" />
  </sse-stream-provider>,
];
export const refused = [
  // @ts-expect-error auto-connect is a boolean attribute
  <sse-stream-viewer auto-connect="yes" />,
  // @ts-expect-error a done event's detail is a DoneMessage, whose full_text is a string
  <sse-stream-viewer ondone={(event) => event.detail.full_text.toFixed()} />,
];

// Vue 3: the global components Volar reads; `@done` is `onDone`, `@stage_update` is `onStage_update`.
type ViewerVue = InstanceType<GlobalComponents['sse-stream-viewer']>['$props'];
check<Equal<Parameters<NonNullable<ViewerVue['onDone']>>[0], CustomEvent<DoneMessage>>>();
check<Equal<Parameters<NonNullable<ViewerVue['onStage_update']>>[0], CustomEvent<StageUpdateMessage>>>();
check<Equal<ViewerVue['projectId'], string | undefined>>();
