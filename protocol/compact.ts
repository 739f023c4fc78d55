/**
 * Compact token events: a token without `full_text`, with `offset` (where `content` starts in the text so far,
 * in UTF-16 code units). A 5,000-token answer then costs its text once instead of once per token. The server
 * encodes them; the client decodes them back to the original shape, so handlers see the same message.
 */

/** A token's fields as they travel: `content` and either `full_text` (the original format) or `offset` (compact). */
type Fields = Record<string, unknown>;

/**
 * The compact form of an original-format token: `full_text` left out, `offset` added after the other fields.
 * Null when `fields` is not a well-formed token (no string `content` and `full_text`, or a text that does not end with the piece).
 */
export function encodeCompactToken(fields: Fields): Fields | null {
  const { full_text: fullText, ...rest } = fields;
  const content = fields.content;
  if (fields.type !== 'token' || typeof content !== 'string' || typeof fullText !== 'string' || !fullText.endsWith(content)) return null;
  return { ...rest, offset: fullText.length - content.length };
}

/**
 * The text after a piece: `content` at `offset` of `known`. An offset of 0 starts a new run of the stage.
 * Null when the piece does not continue the text (a message was lost, or came twice): never a silently wrong text.
 */
export function continueText(known: string, offset: number, content: string): string | null {
  if (offset === 0) return content;
  return offset === known.length ? known + content : null;
}

/** True for a compact token's fields: a string `content`, an integer `offset` >= 0, and no `full_text`. */
export function isCompactToken(fields: Fields): fields is Fields & { content: string; offset: number } {
  return typeof fields.content === 'string' && Number.isInteger(fields.offset) && (fields.offset as number) >= 0 && fields.full_text === undefined;
}

/**
 * Each stage's text so far, kept by whoever decodes compact tokens. {@link apply} gives a compact token its
 * `full_text` back, in place (and drops `offset`), and remembers the text of original-format tokens.
 */
export class StageTexts {
  readonly #texts = new Map<string, string>();

  /** The text so far of `stage`, if known. */
  get(stage: string): string | undefined {
    return this.#texts.get(stage);
  }

  set(stage: string, text: string): void {
    this.#texts.set(stage, text);
  }

  /**
   * Takes a token event's data. Original format: remembers its `full_text`. Compact: rebuilds `full_text` and
   * removes `offset`. Returns false when a compact token does not continue the known text: the stream is out of
   * step and must reconnect. Anything that is not a token's fields is left alone (true).
   */
  apply(data: unknown): boolean {
    if (data === null || typeof data !== 'object') return true;
    const token = data as Fields;
    const stage = typeof token.stage === 'string' ? token.stage : '';
    if (typeof token.full_text === 'string') {
      this.#texts.set(stage, token.full_text);
      return true;
    }
    if (!isCompactToken(token)) return true;
    const fullText = continueText(this.#texts.get(stage) ?? '', token.offset, token.content);
    if (fullText === null) return false;
    this.#texts.set(stage, fullText);
    Reflect.deleteProperty(token, 'offset');
    token.full_text = fullText;
    return true;
  }
}

/**
 * The original-format text of a linear token: its JSON text with `"offset":N` (the last field, as every publisher
 * of this kit writes it) replaced by `"full_text":…`, so the bytes are exactly what the original format carried.
 * A token of another shape is re-serialised with `full_text` in place of `offset`.
 */
export function withFullText(json: string, fullText: string): string {
  const match = /,"offset":\d+\}$/.exec(json);
  if (match) return `${json.slice(0, match.index)},"full_text":${JSON.stringify(fullText)}}`;
  const { offset: _offset, ...fields } = JSON.parse(json) as Fields;
  return JSON.stringify({ ...fields, full_text: fullText });
}

/** A linear token as the trackers below need it: its piece, where it starts, and its log id if it has one. */
export interface LinearToken {
  content: string;
  offset: number;
  id?: string | undefined;
}

/**
 * Each stage's text so far, with the log id of the last token in it: what a hub (or a subscriber) keeps to give
 * linear tokens their `full_text` back. Prime a stage with the text read from the broker; tokens that the text
 * already holds (their id is not newer than the primed one) are checked against it instead of appended, so
 * messages that raced the read are neither lost nor counted twice.
 */
export class TokenTexts {
  readonly #stages = new Map<string, { text: string; id: string | undefined }>();
  readonly #compareIds: (a: string, b: string) => number;

  /** `compareIds` orders log ids (the broker's). */
  constructor(compareIds: (a: string, b: string) => number) {
    this.#compareIds = compareIds;
  }

  /** The text so far of `stage`, if known. */
  text(stage: string): string | undefined {
    return this.#stages.get(stage)?.text;
  }

  /** Sets a stage's text (read from the broker, or an original-format token's `full_text`) and the id it is current to. */
  set(stage: string, text: string, id: string | undefined): void {
    this.#stages.set(stage, { text, id });
  }

  /**
   * The stage's text including `token`, remembered for the next one; null when it cannot be known (a token was
   * lost, or the stage's text was never read): the caller must not invent one.
   */
  apply(stage: string, token: LinearToken): string | null {
    const known = this.#stages.get(stage);
    const end = token.offset + token.content.length;
    if (known && token.id !== undefined && known.id !== undefined && this.#compareIds(token.id, known.id) <= 0) {
      // Already in the text that was read: only check that it is.
      return known.text.slice(token.offset, end) === token.content ? known.text.slice(0, end) : null;
    }
    const next = continueText(known?.text ?? '', token.offset, token.content);
    if (next === null || (token.offset > 0 && !known)) {
      this.#stages.delete(stage);
      return null;
    }
    this.#stages.set(stage, { text: next, id: token.id ?? known?.id });
    return next;
  }
}
