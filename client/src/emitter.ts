/**
 * The handler table behind {@link SSEClient.on}: handlers by event name, called in the order they were added.
 * A throwing handler cannot break the code that emits (the stream keeps flowing): its error is reported and the
 * other handlers still run.
 */

type Handler = (data: never) => void;

/** Reports a handler's exception the way an uncaught one would be: `reportError` where it exists, else the console. */
export function reportHandlerError(error: unknown): void {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else console.error(error);
}

export class Emitter {
  readonly #handlers = new Map<string, Set<Handler>>();
  readonly #onHandlerError: (error: unknown) => void;

  /** `onHandlerError` receives what a handler throws. Default {@link reportHandlerError}. */
  constructor(onHandlerError: (error: unknown) => void = reportHandlerError) {
    this.#onHandlerError = onHandlerError;
  }

  /** Adds `handler` for `type`; adding the same handler twice keeps one. */
  on(type: string, handler: Handler): void {
    let handlers = this.#handlers.get(type);
    if (!handlers) this.#handlers.set(type, (handlers = new Set()));
    handlers.add(handler);
  }

  off(type: string, handler: Handler): void {
    this.#handlers.get(type)?.delete(handler);
  }

  /** Calls the handlers of `type` with `data`: those added when the emit began, so a handler may add or remove handlers. */
  emit(type: string, data: unknown): void {
    const handlers = this.#handlers.get(type);
    if (!handlers?.size) return;
    // One handler (a hub's, per event type) is the per-token case: call it without copying the set.
    if (handlers.size === 1) this.#call(handlers.values().next().value!, data);
    else for (const handler of [...handlers]) this.#call(handler, data);
  }

  #call(handler: Handler, data: unknown): void {
    try {
      (handler as (data: unknown) => void)(data);
    } catch (error) {
      this.#onHandlerError(error);
    }
  }
}
