import { createContext } from '@lit/context';
import type { StreamHub } from './stream-hub.js';

/**
 * The connection an `<sse-stream-provider>` shares with the viewers inside it.
 * `undefined` while the provider has no usable `project-id`.
 */
export const streamHubContext = createContext<StreamHub | undefined>('sse-stream-hub');
