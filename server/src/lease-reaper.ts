/**
 * Marks the stages of dead workers lost. Every publisher with a lease renews it (each publish, and a heartbeat);
 * the hub looks in the lease index every `intervalMs` for leases that may have expired and asks the broker to reap
 * each: publish.lua checks the lease against the broker's clock and, when it expired with no `done` or `error`,
 * logs and publishes the stage's worker-lost `error` in one atomic step. However many hub processes run the
 * reaper, one of them wins each lease and the others get `gone`, so viewers get exactly one message.
 */
import type { StageControlBroker } from './broker/broker.js';

/** The `code` of the worker-lost error message. */
export const WORKER_LOST = 'worker_lost';

/** The worker-lost `error` message of a stage, as the reaper publishes it. */
export function workerLostMessage(projectId: string, stage: string, now = Date.now()): string {
  return JSON.stringify({
    type: 'error',
    stage,
    project_id: projectId,
    timestamp: now / 1000,
    error: 'The worker running this stage was lost: its lease expired without a publish or heartbeat.',
    code: WORKER_LOST,
    retry_count: 0,
  });
}

export interface LeaseReaperOptions {
  broker: StageControlBroker;
  /** How often to look for expired leases, in ms. */
  intervalMs: number;
  /** Leases looked at per round. Default 100. */
  batch?: number;
  /** Gets each stage reaped, and each failure of a round. */
  onReaped?: (projectId: string, stage: string, id: string) => void;
  onError?: (error: unknown) => void;
}

export class LeaseReaper {
  readonly #options: LeaseReaperOptions;
  readonly #timer: ReturnType<typeof setInterval>;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(options: LeaseReaperOptions) {
    this.#options = options;
    this.#timer = setInterval(() => void this.reap(), options.intervalMs);
    this.#timer.unref?.();
  }

  /** One round (the timer runs them; rounds never overlap). Resolves to the stages reaped. */
  async reap(): Promise<number> {
    if (this.#closed || this.#running) return 0;
    let reaped = 0;
    const round = (async () => {
      const { broker } = this.#options;
      const due = await broker.dueLeases(await broker.time(), this.#options.batch ?? 100);
      for (const { projectId, stage } of due) {
        if (this.#closed) return;
        const result = await broker.control(projectId, stage, 'reap', workerLostMessage(projectId, stage));
        if (result.outcome === 'alive' && result.deadline !== undefined) await broker.indexLease(projectId, stage, result.deadline);
        else await broker.unindexLease(projectId, stage);
        if (result.outcome === 'reaped' && result.id) {
          reaped++;
          this.#options.onReaped?.(projectId, stage, result.id);
        }
      }
    })();
    this.#running = round.catch((error: unknown) => this.#options.onError?.(error));
    await this.#running;
    this.#running = undefined;
    return reaped;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#running;
  }
}
