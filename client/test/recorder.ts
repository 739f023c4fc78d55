import type { SSEClient, SSEClientEventMap } from '../src/sse-client.js';

/** Records a client's events so tests can wait for them ("until two tokens arrived") instead of sleeping. */
export class Recorder {
  readonly events: Array<{ type: string; data: unknown }> = [];
  readonly #waiters = new Set<() => void>();

  constructor(client: SSEClient, types: string[] = ['connected', 'reset', 'snapshot', 'token', 'stage_update', 'progress', 'done', 'error', 'message', 'disconnected', 'reconnecting', 'state']) {
    for (const type of types) {
      client.on(type, (data) => {
        this.events.push({ type, data });
        for (const wake of [...this.#waiters]) wake();
      });
    }
  }

  of<K extends keyof SSEClientEventMap>(type: K): Array<SSEClientEventMap[K]>;
  of(type: string): unknown[];
  of(type: string): unknown[] {
    return this.events.filter((event) => event.type === type).map((event) => event.data);
  }

  /** Resolves once `predicate` holds; re-checked after every recorded event. */
  async until(predicate: () => boolean): Promise<void> {
    while (!predicate()) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          resolve();
        };
        this.#waiters.add(wake);
      });
    }
  }

  /** Resolves once `count` events of `type` were recorded. */
  count(type: string, count: number): Promise<void> {
    return this.until(() => this.of(type).length >= count);
  }
}
