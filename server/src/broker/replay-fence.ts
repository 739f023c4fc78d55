/**
 * Reads of RedisBroker's log that resolve only once live delivery has caught up with them, so that replay and
 * live messages merge without a duplicate (see ReplayFence.readInStep).
 */
import type { ChainableCommander } from 'ioredis';
import type { CommandRunner } from './command-runner.js';
import { BrokerUnavailableError } from './errors.js';

export interface ReplayFenceOptions {
  runner: CommandRunner;
  /**
   * Cluster only: a channel of this broker's own for its fences, which the subscriber connection must subscribe.
   * Undefined on one Redis, where a PING on the subscriber connection is the fence.
   */
  channel: string | undefined;
  /** True while the subscriber connection is up with its subscriptions restored. */
  subscribed: () => boolean;
  /** How long a fence may take to come back, in milliseconds. */
  timeoutMs: number;
}

export class ReplayFence {
  /** See {@link ReplayFenceOptions.channel}. */
  readonly channel: string | undefined;

  constructor(options: ReplayFenceOptions) {
    this.#options = options;
    this.channel = options.channel;
  }

  /**
   * A read of the log (one transaction) that resolves only once live delivery has caught up with it: every
   * message logged before the read has been dispatched to the listeners by then.
   *
   * Why: the hub holds live messages back while it replays, then drops those the replay covered. A message
   * that reaches the subscriber connection after the read returned would reach its client twice. On one Redis
   * that happens when Redis writes the read's reply before the subscriber's pending messages (both served in one
   * turn of its event loop): a PING sent on the subscriber connection after the read is answered after them.
   * On a cluster, the subscriber usually sits on another node than the project's master, and the messages travel
   * there over the cluster bus: a PUBLISH of a fence on this broker's own channel, in the same transaction on the
   * same master, travels the same ordered link after all of them. Rejects with {@link BrokerUnavailableError}
   * when the fence is not back within `timeoutMs` (the hub then ends the stream; the client resumes again).
   *
   * `needsStep` says from the read's results whether to wait: a full replay page does not end a replay, and the
   * page that does (not full) waits, which covers every message logged before it, those of earlier pages included.
   */
  async readInStep(
    build: (multi: ChainableCommander) => ChainableCommander,
    needsStep: (results: unknown[]) => boolean = () => true,
  ): Promise<unknown[]> {
    const { runner, subscribed, timeoutMs } = this.#options;
    // Without a live subscription there is nothing to be in step with.
    if (!subscribed()) return runner.transaction(build);
    const channel = this.channel;
    if (channel === undefined) {
      const results = await runner.transaction(build);
      if (needsStep(results)) await runner.run('subscriber', (subscriber) => subscriber.ping());
      return results;
    }
    const token = String(++this.#count);
    let timer: NodeJS.Timeout | undefined;
    const back = new Promise<void>((resolve, reject) => {
      this.#waiting.set(token, resolve);
      timer = setTimeout(
        () => reject(new BrokerUnavailableError(`live delivery did not catch up with the log within ${timeoutMs} ms`, { sent: true })),
        timeoutMs,
      );
    });
    back.catch(() => {}); // awaited below, unless the read itself fails first
    try {
      const results = await runner.transaction((multi) => build(multi).publish(channel, token));
      // The fence went out with the read; when it is not waited for, its echo finds no waiter and is ignored.
      if (needsStep(results)) await back;
      return results;
    } finally {
      clearTimeout(timer);
      this.#waiting.delete(token);
    }
  }

  /** A message on the subscriber connection: true when it is a fence's echo (for this class, not for listeners). */
  echo(channel: string, payload: string): boolean {
    if (channel !== this.channel) return false;
    this.#waiting.get(payload)?.();
    return true;
  }

  readonly #options: ReplayFenceOptions;
  /** Fences sent and not back yet, by token. */
  readonly #waiting = new Map<string, () => void>();
  #count = 0;
}
