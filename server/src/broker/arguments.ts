/** The checks of what callers give both brokers, so that both refuse the same arguments with the same messages. */
import type { PublishControl, TokenPiece } from './broker.js';
import { InvalidArgumentError } from './errors.js';
import { ID_RULE, isValidId } from '../channels.js';

/**
 * Checks what `Broker.publish` receives, before anything is sent: the project, the stage and the type follow the
 * id rule (the state field is `<stage>|<type>`), and the message is a JSON object text, from `{` (no leading
 * whitespace: publish.lua inserts the id right after it) to `}`, without an `id` field of its own.
 *
 * Without a JSON.parse of each message: a key `id` is written `"id"`, or with a `\u` escape, so a text with
 * neither has no `id` key at any depth, and is not parsed. StreamPublisher's messages (JSON.stringify of an object
 * it checked) rarely hold either; a text that does is parsed, and refused unless it is a JSON object without an
 * own `id`. A text without either that is not JSON inside its braces goes out as it is, as publish.lua takes it from
 * any worker: viewers get it as a `message` event, the contract's rule for text that is not JSON.
 */
export function checkPublishArguments(projectId: string, stage: string, type: string, message: string): void {
  if (!isValidId(projectId)) throw new InvalidArgumentError('projectId', `${JSON.stringify(projectId)} must be ${ID_RULE}`);
  if (!isValidId(stage)) throw new InvalidArgumentError('stage', `${JSON.stringify(stage)} must be ${ID_RULE}`);
  if (!isValidId(type)) throw new InvalidArgumentError('type', `${JSON.stringify(type)} must be ${ID_RULE}`);
  if (typeof message !== 'string' || !message.startsWith('{')) {
    throw new InvalidArgumentError('message', 'must be a JSON object text starting with "{" (no leading whitespace)');
  }
  if (!endsWithBrace(message)) throw new InvalidArgumentError('message', 'must be a JSON object text ending with "}"');
  if (!message.includes('"id"') && !message.includes('\\u')) return;
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
  if (Object.hasOwn(parsed, 'id')) throw new InvalidArgumentError('message', 'must not carry an "id" field: the broker assigns it');
}

/**
 * Checks the `linear` argument of `Broker.publish`, before anything is sent: a string piece, an integer offset
 * >= 0, and a whole text, when given, that ends with the piece at that offset. Whether the offset continues the
 * stage's text only the broker knows (TokenOffsetError).
 */
export function checkTokenPiece(linear: TokenPiece): void {
  if (typeof linear !== 'object' || linear === null) throw new InvalidArgumentError('linear', 'must be an object { content, offset, wholeText? }');
  const { content, offset, wholeText } = linear;
  if (typeof content !== 'string') throw new InvalidArgumentError('linear.content', `must be a string, got ${typeof content}`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError('linear.offset', `${String(offset)} must be an integer >= 0`);
  if (wholeText === undefined || wholeText === '') return;
  if (typeof wholeText !== 'string') throw new InvalidArgumentError('linear.wholeText', `must be a string, got ${typeof wholeText}`);
  if (!wholeText.endsWith(content) || wholeText.length - content.length !== offset) {
    throw new InvalidArgumentError('linear.wholeText', `must end with the piece, at its offset ${offset} (it has ${wholeText.length} UTF-16 code units)`);
  }
}

/** Checks the `control` of `Broker.publish`: ids of 1-128 characters, a positive integer sequence and lease. */
export function checkPublishControl(control: PublishControl): void {
  if (typeof control !== 'object' || control === null) throw new InvalidArgumentError('control', 'must be an object { producer?, seq?, run?, leaseMs?, final? }');
  for (const name of ['producer', 'run'] as const) {
    const value = control[name];
    if (value !== undefined && (typeof value !== 'string' || value.length < 1 || Buffer.byteLength(value) > 128)) {
      throw new InvalidArgumentError(`control.${name}`, 'must be a string of 1 to 128 bytes');
    }
  }
  for (const name of ['seq', 'leaseMs'] as const) {
    const value = control[name];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) throw new InvalidArgumentError(`control.${name}`, `${String(value)} must be a positive integer`);
  }
}

/** Entries one `Broker.replay` call returns when the caller gives no `limit`. */
export const DEFAULT_REPLAY_LIMIT = 1000;

/** Checks the `limit` `Broker.replay` receives and returns it, or the default. */
export function checkReplayLimit(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_REPLAY_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new InvalidArgumentError('limit', `${String(limit)} must be a positive integer`);
  return limit;
}

/** Checks an option that counts something (entries, seconds, milliseconds) and returns it. */
export function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(name, `${value} must be a positive integer`);
  return value;
}

/** True when the last character other than JSON whitespace is `}`. */
function endsWithBrace(text: string): boolean {
  let end = text.length - 1;
  while (end >= 0 && ' \t\r\n'.includes(text[end]!)) end--;
  return text[end] === '}';
}
