import { SseStreamProvider } from './sse-stream-provider.component.js';

export { SseStreamProvider };

if (!customElements.get('sse-stream-provider')) customElements.define('sse-stream-provider', SseStreamProvider);

declare global {
  interface HTMLElementTagNameMap {
    'sse-stream-provider': SseStreamProvider;
  }
}
