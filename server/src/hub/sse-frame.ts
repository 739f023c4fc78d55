/**
 * The SSE wire format as pure functions. Every frame the server writes is built here, so
 * nothing a worker or a user sends can add a field or break the framing.
 */
import { encodeCompactToken, isCompactToken, withFullText } from '../../../protocol/compact.js';
import { tagJson } from '../../../protocol/mux.js';

/** Headers of every stream. `X-Accel-Buffering: no` tells nginx not to hold events back. */
export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
} as const;

/** A line break in any of the three forms the SSE spec accepts. */
const LINE_BREAK = /\r\n|\r|\n/;
/** Characters that may not appear in a field value that must stay on one line. */
const UNSAFE_IN_FIELD = /[\r\n\0]/g;

export interface SSEEvent {
  id?: string | undefined;
  event?: string | undefined;
  /** Any text; each of its lines becomes its own `data:` line. */
  data: string;
}

/**
 * [spec] "If the field name is 'id' and the value contains U+0000 NULL, ignore the field": we strip
 * CR, LF and NUL from `id` and `event`, and split `data` into one `data:` line per line, which a
 * parser joins back with LF — so the data round-trips and can never inject a field.
 */
export function formatEvent({ id, event, data }: SSEEvent): string {
  let frame = '';
  if (id !== undefined && id !== '') frame += `id: ${id.replace(UNSAFE_IN_FIELD, '')}\n`;
  if (event !== undefined && event !== '') frame += `event: ${event.replace(UNSAFE_IN_FIELD, '')}\n`;
  // One line, as every compact JSON message is: no split (and no array of one) per message.
  if (data.indexOf('\n') < 0 && data.indexOf('\r') < 0) return `${frame}data: ${data}\n\n`;
  for (const line of data.split(LINE_BREAK)) frame += `data: ${line}\n`;
  return frame + '\n';
}

/** A comment line: ignored by parsers, used as the heartbeat. */
export function formatComment(text: string): string {
  return `: ${text.replace(UNSAFE_IN_FIELD, ' ')}\n\n`;
}

/** Tells EventSource-compatible clients how long to wait before reconnecting. */
export function formatRetry(ms: number): string {
  return `retry: ${Math.max(0, Math.floor(ms))}\n\n`;
}

export const HEARTBEAT_FRAME = formatComment('ping');

/** What the hub needs to know about a payload from the broker, computed once per message. */
export interface ParsedPayload {
  /** The SSE frame of the payload as it came, identical for every client. For a linear token, see {@link originalFrame}. */
  frame: string;
  /** The payload as it came. */
  data: string;
  id: string | undefined;
  type: string;
  /** The stage the message names, if any. */
  stage: string | undefined;
  /** The message's `timestamp` (seconds since the epoch, when it was published), if it is a number. */
  timestamp: number | undefined;
  /** The parsed message, when it was a JSON object. */
  fields?: Record<string, unknown>;
  /**
   * A token in linear form (publish.lua's header): its piece and where it starts in the stage's text, and no
   * `full_text`. Its frame is the compact one; clients in the original format get {@link originalFrame}.
   */
  linear?: { content: string; offset: number };
  /**
   * A linear token's text so far, this piece included, set by whoever keeps the stage's text (the topic's
   * LiveTexts, a resume's ReplayTexts); null when it cannot be known (a message was lost): then no frame in the
   * original format exists, and none is ever made up.
   */
  fullText?: string | null | undefined;
  /** Cache of {@link originalFrame}. */
  originalFrame?: string | null;
  /** Cache of {@link compactTokenFrame}: computed once per message, shared by every compact client. */
  compactFrame?: string | null;
  /**
   * Cache of {@link taggedFrame}, by form and subscription id (`o:<id>`, `c:<id>`): the clients of the
   * multiplexed stream use few distinct ids (the shared worker's are deterministic), so many connections share each.
   */
  taggedFrames?: Map<string, string | null>;
}

/** Event names are the message `type` when it is a short plain word; anything else is refused as a name. */
const EVENT_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Turns a broker payload into its frame. A JSON object becomes `event: <type>` with the JSON as data;
 * anything else (not JSON, or JSON that is not an object) is delivered as event `message` with the raw
 * text as data, framed line by line.
 */
export function parsePayload(payload: string): ParsedPayload {
  let message: unknown;
  try {
    message = JSON.parse(payload);
  } catch {
    message = undefined;
  }
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    return { frame: formatEvent({ event: 'message', data: payload }), data: payload, id: undefined, type: 'message', stage: undefined, timestamp: undefined };
  }
  const fields = message as Record<string, unknown>;
  const type = typeof fields.type === 'string' && EVENT_NAME.test(fields.type) ? fields.type : 'message';
  const id = typeof fields.id === 'string' && fields.id.length <= 64 ? fields.id : undefined;
  const stage = typeof fields.stage === 'string' ? fields.stage : undefined;
  const timestamp = typeof fields.timestamp === 'number' && Number.isFinite(fields.timestamp) ? fields.timestamp : undefined;
  const parsed: ParsedPayload = { frame: formatEvent({ id, event: type, data: payload }), data: payload, id, type, stage, timestamp, fields };
  if (type === 'token' && isCompactToken(fields)) parsed.linear = { content: fields.content, offset: fields.offset };
  return parsed;
}

/**
 * The frame in the original format, the bytes such a client got before tokens went linear: a linear token with
 * `"offset":N` turned back into `"full_text":…` (see withFullText), built once, and only when some client wants
 * it; any other message's own frame. Null for a linear token whose text is not known ({@link ParsedPayload.fullText}).
 */
export function originalFrame(message: ParsedPayload): string | null {
  if (!message.linear) return message.frame;
  if (message.originalFrame !== undefined) return message.originalFrame;
  const fullText = message.fullText;
  if (typeof fullText !== 'string') return null;
  return (message.originalFrame = formatEvent({ id: message.id, event: 'token', data: withFullText(message.data, fullText) }));
}

/**
 * The compact form of a token message, for clients that ask for it (`?compact=1`): `full_text` is left out
 * and `offset` (where `content` starts in it) added, so a long generation costs each viewer its text once
 * instead of once per token. The client rebuilds `full_text`. Null when the message is not a well-formed token.
 */
export function compactTokenFrame(message: ParsedPayload): string | null {
  // A linear token is compact already: the cheap path, end to end.
  if (message.linear) return message.frame;
  if (message.compactFrame !== undefined) return message.compactFrame;
  const compact = compactTokenData(message);
  const frame = compact && formatEvent({ id: message.id, event: 'token', data: compact });
  message.compactFrame = frame;
  return frame;
}

/** The JSON of a token's compact form (see compactTokenFrame), or null when the message is not a well-formed token. */
function compactTokenData(message: ParsedPayload): string | null {
  if (message.linear) return message.data;
  const compact = message.type === 'token' && message.fields ? encodeCompactToken(message.fields) : null;
  return compact && JSON.stringify(compact);
}

/** The two forms a message is written in: the original format, and compact tokens. */
export type FrameForm = 'original' | 'compact';

/**
 * A message's frame on the multiplexed stream, for the subscription `subscription`: the frame of
 * {@link originalFrame} or {@link compactTokenFrame} (null where that one is), whose JSON data ends with
 * `"subscription":"<id>"` (tagJson: appended to the text, never parsed again). A payload that is not a JSON object
 * goes as event `message` with data `{"raw":"<its text>","subscription":"<id>"}`. Built once per message, form and id.
 */
export function taggedFrame(message: ParsedPayload, form: FrameForm, subscription: string): string | null {
  const key = `${form === 'original' ? 'o' : 'c'}:${subscription}`;
  const cache = (message.taggedFrames ??= new Map());
  const cached = cache.get(key);
  if (cached !== undefined) return cached;
  const data = form === 'original' ? originalData(message) : compactTokenData(message);
  const event = form === 'compact' || message.linear ? 'token' : message.type;
  const frame = data === null ? null : formatEvent({ id: message.id, event, data: tagJson(data, subscription) });
  cache.set(key, frame);
  return frame;
}

/** The JSON object text {@link originalFrame} carries (a raw payload wrapped as `{"raw":…}`), or null for a linear token without its text. */
function originalData(message: ParsedPayload): string | null {
  if (!message.fields) return JSON.stringify({ raw: message.data });
  if (!message.linear) return message.data;
  return typeof message.fullText === 'string' ? withFullText(message.data, message.fullText) : null;
}

/**
 * The bytes of one batch of live messages (see Hub's fan-out), each form and subscription id built once, and only
 * when some client wants it: every client of the same kind gets the same buffer.
 */
export class BatchFrames {
  readonly #messages: readonly ParsedPayload[];
  #full: Buffer | null | undefined;
  #compact: Buffer | undefined;
  #tagged: Map<string, Buffer | null> | undefined;

  constructor(messages: readonly ParsedPayload[]) {
    this.#messages = messages;
  }

  /**
   * The frames in the original format, joined; null when one of them has none (a linear token whose text is
   * not known). With `subscription`, tagged for it.
   */
  full(subscription?: string): Buffer | null {
    if (subscription !== undefined) return this.#taggedBytes('original', subscription);
    if (this.#full !== undefined) return this.#full;
    const frames = this.#messages.map(originalFrame);
    return (this.#full = frames.includes(null) ? null : Buffer.from(frames.join('')));
  }

  /** The frames with compact tokens, joined. With `subscription`, tagged for it. */
  compact(subscription?: string): Buffer {
    if (subscription !== undefined) return this.#taggedBytes('compact', subscription)!;
    return (this.#compact ??= Buffer.from(this.#messages.map((m) => compactTokenFrame(m) ?? m.frame).join('')));
  }

  #taggedBytes(form: FrameForm, subscription: string): Buffer | null {
    const key = `${form === 'original' ? 'o' : 'c'}:${subscription}`;
    const tagged = (this.#tagged ??= new Map());
    const cached = tagged.get(key);
    if (cached !== undefined) return cached;
    const frames = this.#messages.map((message) =>
      form === 'original' ? taggedFrame(message, 'original', subscription) : (taggedFrame(message, 'compact', subscription) ?? taggedFrame(message, 'original', subscription)),
    );
    // A compact batch always has its frames: any message that is not a compact token has its original frame (a
    // linear token is compact already).
    const bytes = frames.includes(null) ? null : Buffer.from(frames.join(''));
    tagged.set(key, bytes);
    return bytes;
  }
}
