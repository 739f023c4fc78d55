/** Runs mock pipeline stages in the background; runs may overlap, on one project too. */
import { randomUUID } from 'node:crypto';
import type { Broker } from '../broker/broker.js';
import { stageChannel } from '../channels.js';
import { StreamPublisher } from '../publisher.js';
import { runMockStage, type MockStage } from './mock-stage.js';

export interface StartedTask {
  task_id: string;
  channel: string;
}

export class TaskRunner {
  readonly #broker: Broker;
  readonly #running = new Map<string, AbortController>();
  readonly #onError: (error: unknown, task: StartedTask) => void;

  constructor(broker: Broker, onError: (error: unknown, task: StartedTask) => void = () => {}) {
    this.#broker = broker;
    this.#onError = onError;
  }

  get running(): number {
    return this.#running.size;
  }

  start(projectId: string, stage: MockStage, options: { speed: number; fail: boolean }): StartedTask {
    const task = { task_id: randomUUID(), channel: stageChannel(this.#broker.prefix, projectId, stage) };
    const abort = new AbortController();
    this.#running.set(task.task_id, abort);
    const publisher = new StreamPublisher({ projectId, stage, broker: this.#broker });
    runMockStage(stage, publisher, { ...options, signal: abort.signal })
      .catch((error: unknown) => {
        if (!abort.signal.aborted) this.#onError(error, task);
      })
      .finally(() => {
        this.#running.delete(task.task_id);
        return publisher.close();
      })
      .catch(() => {});
    return task;
  }

  /** Stops every run (on shutdown). */
  stopAll(): void {
    for (const abort of this.#running.values()) abort.abort();
    this.#running.clear();
  }
}
