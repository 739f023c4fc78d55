/**
 * The timers the client uses, behind an interface so tests can drive time by hand
 * (see client/test/fake-clock.ts) instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since some fixed origin; only differences are used. */
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock: `Date.now` and the global timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
};
