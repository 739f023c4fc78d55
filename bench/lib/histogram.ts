/** Latency histogram with fixed 20 µs buckets up to 20 s: recording is one array increment. */
const BUCKET_MS = 0.02;
const BUCKETS = 1_000_000;

export class LatencyHistogram {
  readonly #counts = new Uint32Array(BUCKETS + 1);
  count = 0;
  max = 0;

  record(ms: number): void {
    const bucket = ms <= 0 ? 0 : Math.floor(ms / BUCKET_MS);
    this.#counts[bucket < BUCKETS ? bucket : BUCKETS]!++;
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  reset(): void {
    this.#counts.fill(0);
    this.count = 0;
    this.max = 0;
  }

  /** The latency (ms) below which `q` (0..1) of the samples lie; NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i <= BUCKETS; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return i >= BUCKETS ? this.max : (i + 1) * BUCKET_MS;
    }
    return this.max;
  }
}
