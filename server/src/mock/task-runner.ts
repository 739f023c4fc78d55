/** Runs mock pipeline stages in the background; runs may overlap, on one project too. */
import { randomUUID } from 'node:crypto';
import type { Broker } from '../broker/broker.js';
import { stageChannel } from '../channels.js';
import { DEFAULTS } from '../defaults.js';
import { StageCancelledError } from '../broker/errors.js';
import { StreamPublisher } from '../publisher.js';
import { runMockStage, type MockStage } from './mock-stage.js';

export interface StartedTask {
  task_id: string;
  channel: string;
}

/** Mock stages that may run at once by default: a demo, not a load generator anyone on the network can start. */
export const DEFAULT_MAX_TASKS = DEFAULTS.maxDemoTasks;

export class TaskRunner {
  /** Runs that may be under way at once; `start` beyond it throws (the route answers 429 first). */
  readonly maxRunning: number;
  readonly #broker: Broker;
  readonly #running = new Map<string, AbortController>();
  readonly #onError: (error: unknown, task: StartedTask) => void;

  readonly #leaseMs: number | undefined;

  constructor(broker: Broker, onError: (error: unknown, task: StartedTask) => void = () => {}, maxRunning = DEFAULT_MAX_TASKS, leaseMs?: number) {
    this.#broker = broker;
    this.#leaseMs = leaseMs;
    this.#onError = onError;
    this.maxRunning = maxRunning;
  }

  get running(): number {
    return this.#running.size;
  }

  /** True when no further run may start. */
  get full(): boolean {
    return this.#running.size >= this.maxRunning;
  }

  start(projectId: string, stage: MockStage, options: { speed: number; fail: boolean }): StartedTask {
    if (this.full) throw new RangeError(`at most ${this.maxRunning} mock stages run at once`);
    const task = { task_id: randomUUID(), channel: stageChannel(this.#broker.prefix, projectId, stage) };
    const abort = new AbortController();
    this.#running.set(task.task_id, abort);
    const publisher = new StreamPublisher({ projectId, stage, broker: this.#broker, leaseMs: this.#leaseMs });
    // A cancel (POST …/cancel/) aborts the run at once, as a shutdown does; the run then says where it stopped.
    const signal = AbortSignal.any([abort.signal, publisher.signal]);
    runMockStage(stage, publisher, { ...options, signal })
      .catch(async (error: unknown) => {
        if (publisher.cancelled || error instanceof StageCancelledError) {
          await publisher.publishCancelled(`${stage} cancelled`).catch(() => {});
        } else if (!signal.aborted) this.#onError(error, task);
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
