/**
 * Replay-log ids: Redis stream ids (`<ms>-<seq>`), one ordered id space per project.
 * Shared by both brokers so that their ids, and the id-ful message text, are identical.
 */
import { InvalidArgumentError } from './errors.js';
import { ID_RULE, RESERVED_IDS, isValidId } from '../channels.js';

/** Syntax of a stream id. Both parts are unsigned 64-bit integers in Redis. */
const LOG_ID_PATTERN = /^(\d{1,20})-(\d{1,20})$/;
const MAX_U64 = 2n ** 64n - 1n;

function parts(id: string): [bigint, bigint] | null {
  const match = LOG_ID_PATTERN.exec(id);
  if (!match) return null;
  const ms = BigInt(match[1]!);
  const seq = BigInt(match[2]!);
  return ms <= MAX_U64 && seq <= MAX_U64 ? [ms, seq] : null;
}

/** True for a well-formed stream id that Redis would accept; anything else must never reach Redis. */
export function isLogId(value: unknown): value is string {
  return typeof value === 'string' && parts(value) !== null;
}

/** Negative, zero or positive as `a` is older than, equal to or newer than `b`. Both must be log ids. */
export function compareLogIds(a: string, b: string): number {
  const [aMs, aSeq] = parts(a) ?? fail('a', a);
  const [bMs, bSeq] = parts(b) ?? fail('b', b);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

/** The id Redis's `XADD *` would assign after `previous` at time `nowMs`: monotonic even if the clock goes back. */
export function nextLogId(previous: string | null, nowMs: number): string {
  const now = BigInt(Math.max(0, Math.floor(nowMs)));
  const last = previous === null ? null : (parts(previous) ?? fail('previous', previous));
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

/**
 * Checks what `Broker.publish` receives and returns the message type (the state-hash field is `<stage>|<type>`).
 * The message must be a JSON object text, starting with `{`, without an `id` field.
 */
export function checkPublishArguments(projectId: string, stage: string, message: string): string {
  if (!isValidId(projectId)) throw new InvalidArgumentError('projectId', `${JSON.stringify(projectId)} must be ${ID_RULE}`);
  if (!isValidId(stage)) throw new InvalidArgumentError('stage', `${JSON.stringify(stage)} must be ${ID_RULE}`);
  if (typeof message !== 'string' || !message.startsWith('{')) {
    throw new InvalidArgumentError('message', 'must be a JSON object text starting with "{" (no leading whitespace)');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(message);
  } catch {
    throw new InvalidArgumentError('message', 'is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError('message', 'must be a JSON object');
  }
  // Own fields only: what the JSON says, whatever Object.prototype holds.
  const fields = parsed as Record<string, unknown>;
  if (Object.hasOwn(fields, 'id')) throw new InvalidArgumentError('message', 'must not carry an "id" field: the broker assigns it');
  const type = Object.hasOwn(fields, 'type') ? fields.type : undefined;
  // The type names a field of the state hash, and so a key of every snapshot built from it.
  if (typeof type === 'string' && RESERVED_IDS.includes(type)) {
    throw new InvalidArgumentError('message', `must not have the type ${JSON.stringify(type)}: ${RESERVED_IDS.map((name) => `"${name}"`).join(', ')} name an object's internals`);
  }
  return typeof type === 'string' ? type : 'message';
}

/** Entries one `Broker.replay` call returns when the caller gives no `limit`. */
export const DEFAULT_REPLAY_LIMIT = 1000;

/** Checks the `limit` `Broker.replay` receives and returns it, or the default. */
export function checkReplayLimit(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_REPLAY_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new InvalidArgumentError('limit', `${String(limit)} must be a positive integer`);
  return limit;
}

function fail(name: string, value: string): never {
  throw new InvalidArgumentError(name, `${JSON.stringify(value)} is not a stream id (<ms>-<seq>)`);
}
