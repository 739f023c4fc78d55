/**
 * Priorities under pressure: what a slow but live client is sent while its unsent bytes are above the soft bound
 * (ClientStream). Instead of writing each live message, the stream holds them here until its socket drains, and
 * then writes them at once, fewer and in priority:
 * - a stage's tokens merge into one (the pieces joined; its offset the first piece's, its text the last one's),
 *   carrying the id of the last token it covers;
 * - only the latest `progress` of a stage is kept;
 * - every other message (`stage_update`, `done`, `error`, `cancelled`, unknown types) is kept, in order, never
 *   merged or dropped, and goes out ahead of the held tokens of other stages; a stage's own tokens and progress
 *   held before it go just before it, so each stage's order stays as published.
 *
 * Ids stay resumable: a message written ahead of held ones with smaller ids goes without its `id:` line (its
 * data keeps its `id`, by which a client that sees it again after a resume drops it), and the flush ends with an
 * id-only `cursor` event at the newest id written, once everything up to it is out.
 */
import { formatEvent, parsePayload, type ParsedPayload } from './sse-frame.js';

/** A stage's consecutive tokens, merged. */
interface TokenRun {
  first: ParsedPayload;
  last: ParsedPayload;
  pieces: string[];
  /** Where the next piece must start to continue the run (its text's length so far). */
  end: number;
}

/** Held messages of one stage since its last kept message, in the order they go out. */
interface StageHeld {
  runs: TokenRun[];
  progress: ParsedPayload | undefined;
}

export class HeldMessages {
  /** Kept messages, each with the stage's held tokens and progress that came before it. */
  readonly #kept: { before: ParsedPayload[]; message: ParsedPayload }[] = [];
  /** Per stage, what is held since its last kept message; insertion order is the order stages first held. */
  #stages = new Map<string, StageHeld>();
  /** Bytes held (message data), to bound what a slow client costs. */
  bytes = 0;

  add(message: ParsedPayload): void {
    this.bytes += message.data.length;
    const stage = message.stage;
    if (stage !== undefined && message.type === 'token' && this.#addToken(stage, message)) return;
    if (stage !== undefined && message.type === 'progress') {
      this.#held(stage).progress = message;
      return;
    }
    const held = stage === undefined ? undefined : this.#stages.get(stage);
    if (stage !== undefined) this.#stages.delete(stage);
    this.#kept.push({ before: held ? this.#out(held) : [], message });
  }

  get empty(): boolean {
    return this.#kept.length === 0 && this.#stages.size === 0;
  }

  /**
   * What to write, in order, and for each whether it may carry its `id:` (all with smaller ids are written
   * before it); then the id the `cursor` event must carry (undefined when the last written id is the newest).
   */
  drain(compare: (a: string, b: string) => number, isId: (id: string | undefined) => id is string): { messages: ParsedPayload[]; cursor: string | undefined } {
    const order: ParsedPayload[] = [];
    for (const { before, message } of this.#kept) order.push(...before, message);
    for (const held of this.#stages.values()) order.push(...this.#out(held));
    this.#kept.length = 0;
    this.#stages = new Map();
    this.bytes = 0;
    // From the end: a message may carry its id when every message after it has a larger one.
    const messages: ParsedPayload[] = new Array(order.length);
    let smallestAfter: string | undefined;
    let newest: string | undefined;
    let lastWithId: string | undefined;
    for (let i = order.length - 1; i >= 0; i--) {
      const message = order[i]!;
      const id = message.id;
      if (!isId(id)) {
        messages[i] = message;
        continue;
      }
      if (newest === undefined || compare(id, newest) > 0) newest = id;
      const ahead = smallestAfter !== undefined && compare(id, smallestAfter) > 0;
      messages[i] = ahead ? withoutId(message) : message;
      if (!ahead && lastWithId === undefined) lastWithId = id;
      if (smallestAfter === undefined || compare(id, smallestAfter) < 0) smallestAfter = id;
    }
    const cursor = newest !== undefined && newest !== lastWithId ? newest : undefined;
    return { messages, cursor };
  }

  #held(stage: string): StageHeld {
    let held = this.#stages.get(stage);
    if (!held) this.#stages.set(stage, (held = { runs: [], progress: undefined }));
    return held;
  }

  /** Joins a token to its stage's last run when it continues it; false for one that is not a well-formed token. */
  #addToken(stage: string, message: ParsedPayload): boolean {
    const piece = pieceOf(message);
    if (!piece) return false;
    const held = this.#held(stage);
    const run = held.runs.at(-1);
    if (run && piece.start === run.end) {
      run.pieces.push(piece.content);
      run.last = message;
      run.end += piece.content.length;
    } else {
      // The first held token of the stage, or one that starts the text over: a run of its own.
      held.runs.push({ first: message, last: message, pieces: [piece.content], end: piece.start + piece.content.length });
    }
    return true;
  }

  #out(held: StageHeld): ParsedPayload[] {
    const out = held.runs.map(merged);
    if (held.progress) out.push(held.progress);
    return out;
  }
}

/** Where a token's piece starts in its stage's text, and the piece: from `offset` (linear) or `full_text`. */
function pieceOf(message: ParsedPayload): { start: number; content: string } | undefined {
  if (message.linear) return { start: message.linear.offset, content: message.linear.content };
  const fields = message.fields;
  if (!fields || typeof fields.content !== 'string' || typeof fields.full_text !== 'string') return undefined;
  if (!fields.full_text.endsWith(fields.content)) return undefined;
  return { start: fields.full_text.length - fields.content.length, content: fields.content };
}

/** A run as one token: the last token's message with the joined pieces (and the first piece's offset). */
function merged(run: TokenRun): ParsedPayload {
  if (run.pieces.length === 1) return run.first;
  const fields: Record<string, unknown> = { ...run.last.fields, content: run.pieces.join('') };
  if (run.first.linear) fields.offset = run.first.linear.offset;
  const message = parsePayload(JSON.stringify(fields));
  if (run.last.linear) message.fullText = run.last.fullText;
  return message;
}

/** The message without its `id:` line (its data keeps its `id`). */
function withoutId(message: ParsedPayload): ParsedPayload {
  const copy: ParsedPayload = { ...message, id: undefined, frame: formatEvent({ event: message.type, data: message.data }) };
  delete copy.originalFrame;
  delete copy.compactFrame;
  delete copy.taggedFrames;
  return copy;
}
