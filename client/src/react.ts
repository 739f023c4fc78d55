/**
 * JSX types of the kit's tags for React 19 (`ai-story-sse/react`): attributes, properties and events.
 * Types only; load them once, e.g. `import type {} from 'ai-story-sse/react';`, and register the tags
 * with `import 'ai-story-sse/define';`.
 *
 * React 19 sets a custom element's properties when it has them and attributes otherwise, and listens to
 * `on<event>` props with the event's exact name: `ondone`, `onstage_update`, `ontoken`.
 */
import type { DetailedHTMLProps, HTMLAttributes } from 'react';
import type { SseStreamProvider } from './components/sse-stream-provider/sse-stream-provider.component.js';
import type { SseStreamViewer, SseStreamViewerEventMap } from './components/sse-stream-viewer/sse-stream-viewer.component.js';
import type { ViewerLabels } from './labels.js';
import type { TokenSource } from './token-source.js';

/** `on<event>` props, one per DOM event of the element, typed with its `detail`. */
export type ReactEventProps<EventMap> = { [K in keyof EventMap as `on${K & string}`]?: (event: EventMap[K]) => void };

/** Attributes and properties of `<sse-stream-viewer>`; see its class for each one's meaning and default. */
export interface SseStreamViewerProps {
  'project-id'?: string;
  'stage-name'?: string;
  'base-url'?: string;
  'auto-connect'?: boolean;
  'show-logs'?: boolean;
  'max-log-entries'?: number;
  /** A property: a token, or a function asked for one before every connection attempt. */
  token?: TokenSource | undefined;
  /** A property: overrides of the built-in labels. */
  labels?: Partial<ViewerLabels> | undefined;
}

/** Attributes and properties of `<sse-stream-provider>`. */
export interface SseStreamProviderProps {
  'project-id'?: string;
  'base-url'?: string;
  /** A property: a token, or a function asked for one before every connection attempt. */
  token?: TokenSource | undefined;
}

type ElementProps<E extends HTMLElement> = DetailedHTMLProps<HTMLAttributes<E>, E>;

declare module 'react' {
  namespace JSX {
    interface IntrinsicElements {
      'sse-stream-viewer': ElementProps<SseStreamViewer> & SseStreamViewerProps & ReactEventProps<SseStreamViewerEventMap>;
      'sse-stream-provider': ElementProps<SseStreamProvider> & SseStreamProviderProps;
    }
  }
}
