/**
 * Replay-log ids: Redis stream ids (`<ms>-<seq>`), one ordered id space per project.
 * Shared by both brokers so that their ids, and the id-ful message text, are identical.
 */
import { parseLogId } from '../../../protocol/log-id.js';
import { InvalidArgumentError } from './errors.js';

// The id syntax and ordering are the protocol's (protocol/log-id.ts).
export { compareLogIds, isLogId } from '../../../protocol/log-id.js';

/** The id Redis's `XADD *` would assign after `previous` at time `nowMs`: monotonic even if the clock goes back. */
export function nextLogId(previous: string | null, nowMs: number): string {
  const now = BigInt(Math.max(0, Math.floor(nowMs)));
  const last = previous === null ? null : (parseLogId(previous) ?? fail('previous', previous));
  if (last && last[0] >= now) return `${last[0]}-${last[1] + 1n}`;
  return `${now}-0`;
}

/**
 * The message text with `"id"` inserted as its first field: the exact text the live channel carries.
 * Mirrors the insertion in publish.lua byte for byte; replay rebuilds its entries with it.
 */
export function withId(message: string, id: string): string {
  const rest = message.slice(1);
  // An empty object (`{}` or `{ }`) gets no separating comma.
  return /^[ \t\r\n]*\}/.test(rest) ? `{"id":"${id}"}` : `{"id":"${id}",${rest}`;
}

function fail(name: string, value: string): never {
  throw new InvalidArgumentError(name, `${JSON.stringify(value)} is not a stream id (<ms>-<seq>)`);
}
