/**
 * Replay-log ids: Redis stream ids (`<ms>-<seq>`), one ordered id space per project. Every message published
 * through publish.lua (or the embedded broker) carries one as `id`, and so does its SSE event.
 */

/** Syntax of a stream id. Both parts are unsigned 64-bit integers in Redis. */
const LOG_ID_PATTERN = /^(\d{1,20})-(\d{1,20})$/;
const MAX_U64 = 2n ** 64n - 1n;

/** The two parts of a log id, or null when `id` is not one Redis would accept. */
export function parseLogId(id: string): [ms: bigint, seq: bigint] | null {
  const match = LOG_ID_PATTERN.exec(id);
  if (!match) return null;
  const ms = BigInt(match[1]!);
  const seq = BigInt(match[2]!);
  return ms <= MAX_U64 && seq <= MAX_U64 ? [ms, seq] : null;
}

/** True for a well-formed stream id that Redis would accept; anything else must never reach Redis. */
export function isLogId(value: unknown): value is string {
  return typeof value === 'string' && parseLogId(value) !== null;
}

/** Negative, zero or positive as `a` is older than, equal to or newer than `b`. Throws a TypeError unless both are log ids. */
export function compareLogIds(a: string, b: string): number {
  const [aMs, aSeq] = parseLogId(a) ?? notALogId(a);
  const [bMs, bSeq] = parseLogId(b) ?? notALogId(b);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

function notALogId(value: string): never {
  throw new TypeError(`${JSON.stringify(value)} is not a stream id (<ms>-<seq>)`);
}
