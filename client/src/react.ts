/**
 * JSX types of the kit's tags for React 19 (`ai-story-sse/react`): attributes, properties and events.
 * Types only; load them once, e.g. `import type {} from 'ai-story-sse/react';`, and register the tags
 * with `import 'ai-story-sse/define';`.
 *
 * React 19 sets a custom element's properties when it has them and attributes otherwise, and listens to
 * `on<event>` props with the event's exact name: `ondone`, `onstage_update`, `ontoken`, `onerror`.
 *
 * **Event props are lowercase.** The camelCase names React's own elements use do not reach these events:
 * React keeps `onError`, `onProgress`, `onReset` (and their `…Capture`) for its synthetic events, which never see
 * the element's non-bubbling events, and any other camelCase name listens to another event (`onDone` would
 * listen to "Done"). So every camelCase name of one of the element's events is left out of these types:
 * `onError={…}` is a type error, `onerror={…}` works.
 */
import type { DetailedHTMLProps, HTMLAttributes } from 'react';
import type { SseStreamProvider } from './components/sse-stream-provider/sse-stream-provider.component.js';
import type { SseStreamViewer, SseStreamViewerEventMap } from './components/sse-stream-viewer/sse-stream-viewer.component.js';
import type { ColorSchemeSetting } from './color-scheme-controller.js';
import type { ViewerLabelOverrides } from './labels.js';
import type { Transport } from './shared/mux-core.js';
import type { TokenSource } from './token-source.js';

/** `on<event>` props, one per DOM event of the element, typed with its `detail`. */
export type ReactEventProps<EventMap> = { [K in keyof EventMap as `on${K & string}`]?: (event: EventMap[K]) => void };

/** `snake_case` → `camelCase`, as a React user would write an event name. */
type Camel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S;

/**
 * The camelCase props that look like a handler of one of the element's events but never fire for it (`onError`,
 * `onProgress`, `onReset`, `onDone`, `onStageUpdate`, and their `…Capture`): left out of the element's props.
 */
export type MisleadingEventProps<EventMap> = {
  [K in keyof EventMap & string]: `on${Capitalize<K>}` | `on${Capitalize<K>}Capture` | `on${Capitalize<Camel<K>>}` | `on${Capitalize<Camel<K>>}Capture`;
}[keyof EventMap & string];

/** Attributes and properties of `<sse-stream-viewer>`; see its class for each one's meaning and default. */
export interface SseStreamViewerProps {
  'project-id'?: string;
  'stage-name'?: string;
  'base-url'?: string;
  'auto-connect'?: boolean;
  'show-logs'?: boolean;
  'max-log-entries'?: number;
  'own-connection'?: boolean;
  /** `light` or `dark` forces that look; `auto` (default) follows the page's `color-scheme`, else the OS. */
  'color-scheme'?: ColorSchemeSetting;
  cancelable?: boolean;
  transport?: Transport;
  /** Comma-separated message types, filtered on the server (`progress,done`). */
  types?: string;
  /** Comma-separated stages, without `stage-name`. */
  stages?: string;
  /** A property: a token, or a function asked for one before every connection attempt. */
  token?: TokenSource | undefined;
  /** A property: overrides of the built-in labels, deep-merged over them. */
  labels?: ViewerLabelOverrides | undefined;
}

/** Attributes and properties of `<sse-stream-provider>`. */
export interface SseStreamProviderProps {
  'project-id'?: string;
  'base-url'?: string;
  'own-connection'?: boolean;
  transport?: Transport;
  /** A property: a token, or a function asked for one before every connection attempt. */
  token?: TokenSource | undefined;
}

type ElementProps<E extends HTMLElement, EventMap = object> = Omit<DetailedHTMLProps<HTMLAttributes<E>, E>, MisleadingEventProps<EventMap>>;

declare module 'react' {
  namespace JSX {
    interface IntrinsicElements {
      'sse-stream-viewer': ElementProps<SseStreamViewer, SseStreamViewerEventMap> & SseStreamViewerProps & ReactEventProps<SseStreamViewerEventMap>;
      'sse-stream-provider': ElementProps<SseStreamProvider> & SseStreamProviderProps;
    }
  }
}
