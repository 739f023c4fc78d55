/**
 * Runs RedisBroker's commands within one time bound: waiting for a connection that is down counts, and so does
 * waiting for Redis's answer. Nothing is queued: a call either completes or rejects within the bound.
 */
import { ReplyError, type ChainableCommander } from 'ioredis';
import { BrokerClosedError, BrokerUnavailableError } from './errors.js';
import type { CommandClient } from './redis-connections.js';

/** Which of the broker's connections a command runs on. */
export type Role = 'commands' | 'subscriber';

export interface CommandRunnerOptions {
  /** The bound, in milliseconds, on each call. */
  timeoutMs: number;
  /** The connection of `role` as it is now, without opening one. */
  current(role: Role): CommandClient | undefined;
  /** The connection of `role`, opened if it is not yet; undefined while it cannot be (a cluster not ready yet). */
  open(role: Role): CommandClient | undefined;
}

interface Waiter {
  readonly role: Role;
  settle(error?: Error): void;
}

export class CommandRunner {
  constructor(options: CommandRunnerOptions) {
    this.#options = options;
  }

  /** Give it to every connection's 'error' event: the latest error is the cause of the next BrokerUnavailableError. */
  readonly onConnectionError = (error: unknown): void => {
    // ioredis reports every failed reconnect here.
    this.#lastError = error;
  };

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Runs one command (or transaction) on the connection of `role` within the time bound: waits for the
   * connection to be ready, then for the answer. Redis's own error replies pass through unchanged.
   */
  async run<T>(role: Role, command: (connection: CommandClient) => Promise<T>): Promise<T> {
    if (this.#closed) throw new BrokerClosedError();
    const timeoutMs = this.#options.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const connection = await this.#ready(role, deadline);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new BrokerUnavailableError(`Redis did not answer within ${timeoutMs} ms`, { sent: true })),
        Math.max(0, deadline - Date.now()),
      );
    });
    try {
      return await Promise.race([command(connection), timeout]);
    } catch (error) {
      if (error instanceof ReplyError || error instanceof BrokerUnavailableError) throw error;
      if (this.#closed) throw new BrokerClosedError();
      // ioredis fails a command in flight when the connection drops (maxRetriesPerRequest: 0).
      throw new BrokerUnavailableError(`the connection to Redis was lost: ${(error as Error).message}`, { sent: true, cause: error });
    } finally {
      clearTimeout(timer);
    }
  }

  /** One MULTI/EXEC on the command connection; the first command that failed rejects it. */
  async transaction(build: (multi: ChainableCommander) => ChainableCommander): Promise<unknown[]> {
    // On a cluster every key of one transaction must be in one slot: the log and the state of a project are.
    const results = await this.run('commands', (client) => build(client.multi()).exec());
    if (!results) throw new BrokerUnavailableError('the transaction was aborted', { sent: true });
    return results.map(([error, value]) => {
      if (error) throw error;
      return value;
    });
  }

  /** True while a call waits for the connection of `role` to get ready. */
  waiting(role: Role): boolean {
    for (const waiter of this.#waiters) if (waiter.role === role) return true;
    return false;
  }

  /** Call it from the one 'ready' listener of each connection: wakes every call waiting for a connection of that role. */
  wake(role: Role): void {
    for (const waiter of [...this.#waiters]) if (waiter.role === role) waiter.settle();
  }

  /** Rejects every waiting call and every later one with BrokerClosedError. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const waiter of [...this.#waiters]) waiter.settle(new BrokerClosedError());
  }

  readonly #options: CommandRunnerOptions;
  /** Calls waiting for a connection to be ready. */
  readonly #waiters = new Set<Waiter>();
  #lastError: unknown;
  #closed = false;

  /**
   * Resolves with the connection of `role` once it is ready; rejects at `deadline`, or at once on `close()`.
   * By role, not by connection: on a cluster the subscriber connection that gets ready may be a new one.
   */
  #ready(role: Role, deadline: number): Promise<CommandClient> {
    const connection = this.#options.open(role);
    if (connection?.status === 'ready') return Promise.resolve(connection);
    if (connection?.status === 'wait') connection.connect().catch(() => {});
    return new Promise<CommandClient>((resolve, reject) => {
      const waiter: Waiter = {
        role,
        settle: (error) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          const ready = this.#options.current(role);
          if (error) reject(error);
          else if (ready) resolve(ready);
          else reject(new BrokerClosedError());
        },
      };
      const timer = setTimeout(() => {
        const status = this.#options.current(role)?.status ?? 'not opened';
        waiter.settle(
          new BrokerUnavailableError(`Redis was unreachable for ${this.#options.timeoutMs} ms (connection ${status}); nothing was sent`, {
            sent: false,
            cause: this.#lastError,
          }),
        );
      }, Math.max(0, deadline - Date.now()));
      this.#waiters.add(waiter);
    });
  }
}
