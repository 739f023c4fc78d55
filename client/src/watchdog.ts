/**
 * Declares a connection dead when no byte arrived for a while. A half-open connection (a laptop that slept,
 * a NAT that forgot the flow) otherwise looks open forever; the server's heartbeats keep a live one fed.
 */
import type { Clock } from './clock.js';

export class Watchdog {
  readonly #clock: Clock;
  readonly #limitMs: number;
  readonly #onSilence: () => void;
  #lastByteAt = 0;
  #timer: unknown;

  /** Calls `onSilence` once `limitMs` pass without {@link feed}. A `limitMs` of 0, below or not finite turns it off. */
  constructor(clock: Clock, limitMs: number, onSilence: () => void) {
    this.#clock = clock;
    this.#limitMs = limitMs;
    this.#onSilence = onSilence;
  }

  /** Starts (or restarts) watching, counting from now. */
  start(): void {
    this.stop();
    if (!(this.#limitMs > 0) || !Number.isFinite(this.#limitMs)) return;
    this.#lastByteAt = this.#clock.now();
    this.#timer = this.#clock.setTimeout(this.#check, this.#limitMs);
  }

  /** Bytes arrived. */
  feed(): void {
    this.#lastByteAt = this.#clock.now();
  }

  /** Stops watching; `onSilence` will not be called until the next `start()`. */
  stop(): void {
    if (this.#timer === undefined) return;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  // One timer per silence window rather than one per chunk: it re-arms itself for the remainder.
  #check = (): void => {
    this.#timer = undefined;
    const idle = this.#clock.now() - this.#lastByteAt;
    if (idle >= this.#limitMs) this.#onSilence();
    else this.#timer = this.#clock.setTimeout(this.#check, this.#limitMs - idle);
  };
}
