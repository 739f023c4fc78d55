/**
 * The browser's network status: `navigator.onLine` and the `online`/`offline` events of `window`. Outside a
 * browser (Node) there is no such signal: the network counts as up and nothing is watched.
 */

/** True when the browser reports no network. */
export function isOffline(): boolean {
  return (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine === false;
}

export interface NetworkHandlers {
  /** The network came back. */
  online: () => void;
  /** The network went away. */
  offline: () => void;
}

/** Calls its handlers when the browser goes offline or comes back online, between `start()` and `stop()`. */
export class NetworkWatcher {
  readonly #handlers: NetworkHandlers;
  #watching = false;

  constructor(handlers: NetworkHandlers) {
    this.#handlers = handlers;
  }

  /** Starts listening. Idempotent. */
  start(): void {
    this.#listen(true);
  }

  /** Stops listening. Idempotent. */
  stop(): void {
    this.#listen(false);
  }

  #onOnline = (): void => this.#handlers.online();
  #onOffline = (): void => this.#handlers.offline();

  #listen(on: boolean): void {
    if (on === this.#watching) return;
    const target = globalThis as { addEventListener?: unknown };
    if (typeof target.addEventListener !== 'function' || typeof (globalThis as { navigator?: unknown }).navigator === 'undefined') return;
    this.#watching = on;
    const method = on ? 'addEventListener' : 'removeEventListener';
    globalThis[method]('online', this.#onOnline);
    globalThis[method]('offline', this.#onOffline);
  }
}
