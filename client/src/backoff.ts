/**
 * Reconnect delays: exponential growth, capped, with "full jitter"
 * (a uniformly random delay between 0 and the capped exponential), so that
 * many clients dropped by one server restart do not come back in lockstep.
 */

/** Input of a {@link BackoffStrategy}. */
export interface BackoffContext {
  /** 1 for the first retry after a failure, 2 for the second, and so on. Reset after a connection stayed up. */
  attempt: number;
  /** The base delay in ms: the server's last `retry:` field if it sent one, else the client's default. */
  baseMs: number;
}

/** Returns how long to wait, in ms, before reconnect attempt `attempt`. Must be pure apart from its randomness. */
export type BackoffStrategy = (context: BackoffContext) => number;

export interface ExponentialBackoffOptions {
  /** Upper bound of the delay before jitter, in ms. Default 30000. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Source of randomness in [0, 1); inject a constant in tests. Default `Math.random`. */
  random?: () => number;
}

/**
 * The un-jittered ceiling for an attempt: `baseMs * factor^(attempt - 1)`, capped at `maxMs`.
 * A server that asks for a `retry:` above the cap is obeyed: the cap never goes below `baseMs`.
 */
export function backoffCeiling(attempt: number, baseMs: number, maxMs = 30_000, factor = 2): number {
  const exponent = Math.max(0, attempt - 1);
  return Math.min(Math.max(maxMs, baseMs), baseMs * factor ** exponent);
}

/**
 * The default strategy: full jitter over a capped exponential.
 *
 * @example
 * createSSEClient('1', 'rewrite', { backoff: exponentialBackoff({ maxMs: 10_000 }) })
 */
export function exponentialBackoff(options: ExponentialBackoffOptions = {}): BackoffStrategy {
  const { maxMs = 30_000, factor = 2, random = Math.random } = options;
  return ({ attempt, baseMs }) => Math.floor(random() * backoffCeiling(attempt, baseMs, maxMs, factor));
}
