/**
 * Each stage's text so far, for giving linear tokens their `full_text` back (publish.lua's header describes the
 * linear form): what a hub topic keeps for its live messages, and what StreamSubscriber keeps. Built on the
 * protocol's TokenTexts; this adds what a live listener needs around it: priming from the broker's read of the
 * texts, and the messages that raced that read.
 */
import { TokenTexts, isCompactToken } from '../../../protocol/compact.js';
import type { IdOrder, StageText } from '../broker/broker.js';

/** A message as the trackers need it: its stage, its log id, and its token fields if it is a token. */
export interface TrackedMessage {
  stage: string | undefined;
  id: string | undefined;
  fields?: Record<string, unknown> | undefined;
}

/** A token's text, in one of the two forms: a linear piece, or the original format's whole text. */
export type TokenForm = { linear: { content: string; offset: number } } | { fullText: string; content: string };

/** The token form of a message's fields, or undefined when it is no token (or a token of neither form). */
export function tokenForm(fields: Record<string, unknown> | undefined): TokenForm | undefined {
  if (!fields || fields.type !== 'token' || typeof fields.content !== 'string') return undefined;
  if (typeof fields.full_text === 'string') return { fullText: fields.full_text, content: fields.content };
  if (isCompactToken(fields)) return { linear: { content: fields.content, offset: fields.offset } };
  return undefined;
}

/**
 * Finds where a stage's text starts over, reading its tokens in log order: a linear token at offset 0, one whose
 * offset does not continue the token before it (a publisher that joined mid-run and rewrote the kept text), or a
 * whole token (an original-format publisher: the kept text may be rewritten around it). The first token seen of a
 * stage is no break: it belongs to whatever run was going on.
 */
export class BreakFinder {
  readonly #ends = new Map<string, number>();

  /** True when the token starts the stage's text over. */
  observe(stage: string, form: TokenForm): boolean {
    const end = this.#ends.get(stage);
    if ('fullText' in form) {
      this.#ends.set(stage, form.fullText.length);
      return true;
    }
    const { content, offset } = form.linear;
    this.#ends.set(stage, offset + content.length);
    return offset === 0 || (end !== undefined && offset !== end);
  }
}

/**
 * The live side: primed once from `Broker.texts` (read after the subscription was active), then fed every message
 * in order. Until primed, the caller holds its messages and hands them to {@link prime}.
 *
 * Messages that raced the read (logged before it, delivered after the subscription began) are in the kept text
 * already; TokenTexts checks them against it. One of them may start the stage's text over (a restart, a publisher
 * that joined mid-run): the text read is then not the text of the tokens before it, so a stage is primed only at
 * its last such break among the held messages (before it, its tokens can only continue a run that began in them).
 */
export class LiveTexts {
  readonly #ids: IdOrder;
  readonly #texts: TokenTexts;
  /** Stages to prime from the read when their message with this id comes (the last break the read holds). */
  readonly #primeAt = new Map<string, { id: string; kept: StageText }>();
  /** Every stage whose text was ever set, so {@link current} can list them (TokenTexts cannot). */
  readonly #stages = new Set<string>();
  #primed = false;

  constructor(ids: IdOrder) {
    this.#ids = ids;
    this.#texts = new TokenTexts((a, b) => ids.compareIds(a, b));
  }

  /** False until {@link prime}: hold messages meanwhile. */
  get primed(): boolean {
    return this.#primed;
  }

  /**
   * Takes the broker's read of the texts and the messages held while it ran, in order (not yet {@link track}ed:
   * track them next, in the same order).
   */
  prime(kept: ReadonlyMap<string, StageText>, held: readonly TrackedMessage[]): void {
    this.#primed = true;
    const breaks = new BreakFinder();
    const lastBreak = new Map<string, string>();
    for (const message of held) {
      const form = tokenForm(message.fields);
      const stage = message.stage ?? '';
      const id = this.#logId(message.id);
      const read = kept.get(stage);
      if (!form || !breaks.observe(stage, form) || id === undefined || read?.id === undefined) continue;
      if (this.#ids.compareIds(id, read.id) <= 0) lastBreak.set(stage, id);
    }
    for (const [stage, read] of kept) {
      // A text without the id of its last token cannot be placed among the messages: leave the stage unknown.
      if (read.id === undefined) continue;
      const at = lastBreak.get(stage);
      this.#stages.add(stage);
      if (at === undefined) this.#texts.set(stage, read.text, read.id);
      else this.#primeAt.set(stage, { id: at, kept: read });
    }
  }

  /**
   * Feeds one message. A linear token: returns its text so far, this piece included, or null when that cannot be
   * known (a message was lost, or the stage's text was never read). A whole token: remembers its text. Anything
   * else: undefined.
   */
  track(message: TrackedMessage): string | null | undefined {
    const form = tokenForm(message.fields);
    if (!form) return undefined;
    const stage = message.stage ?? '';
    const id = this.#logId(message.id);
    this.#stages.add(stage);
    const waiting = this.#primeAt.get(stage);
    if (waiting && id !== undefined && this.#ids.compareIds(id, waiting.id) >= 0) {
      this.#primeAt.delete(stage);
      this.#texts.set(stage, waiting.kept.text, waiting.kept.id);
    }
    if ('fullText' in form) {
      this.#texts.set(stage, form.fullText, id);
      return undefined;
    }
    return this.#texts.apply(stage, { ...form.linear, id });
  }

  /**
   * Each known stage's text as of the messages tracked so far (a copy: it does not follow later ones). A stage
   * whose text is not known (lost, or waiting for its break to be tracked) is absent.
   */
  current(): Map<string, string> {
    const texts = new Map<string, string>();
    for (const stage of this.#stages) {
      const text = this.#texts.text(stage);
      if (text !== undefined) texts.set(stage, text);
    }
    return texts;
  }

  /** A foreign message's `id` has no place in the log's order. */
  #logId(id: string | undefined): string | undefined {
    return this.#ids.isId(id) ? id : undefined;
  }
}
