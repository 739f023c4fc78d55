/**
 * The text so far of each replayed linear token, for one resume: what gives `full_text` back to tokens read from
 * the log for clients in the original format (and to a compact client's first token of each stage).
 *
 * Two sources, the exact one first:
 * - the replay itself: a run whose start (its offset-0 token, or a whole token) the replay holds is rebuilt from
 *   its own tokens;
 * - the stage's kept text (`Broker.texts`), read once, when the first token needs it: a token of the kept text's
 *   run is `text.slice(0, offset + content.length)`, once its piece is checked to be there. A token is of that run
 *   when no break (see BreakFinder) lies between it and the kept text's last token; to know it, the log up to that
 *   token is scanned once, reading only (one more read of the range the resume replays).
 * Neither: null. A token of an earlier run of the stage, whose start is before the resume point and whose text
 * was since overwritten by a later run, cannot be rebuilt: its text is no longer kept anywhere.
 */
import { TokenTexts } from '../../../protocol/compact.js';
import type { Broker, StageText } from '../broker/broker.js';
import { BreakFinder, tokenForm, type TrackedMessage } from './live-texts.js';

/** Entries one page of the scan for breaks reads. */
const SCAN_PAGE_ENTRIES = 1000;

export interface ReplayTextsOptions {
  /** The broker's reads and ids (the hub passes CoalescedReads.view(), which shares the reads). */
  broker: Pick<Broker, 'replay' | 'texts' | 'isId' | 'compareIds'>;
  projectId: string;
  /** The stream's stage, or null for every stage. */
  stage: string | null;
  /** The most log entries the scan for breaks reads; past it, the kept text is not used. */
  maxEntries: number;
}

export class ReplayTexts {
  readonly #options: ReplayTextsOptions;
  /** The runs the replay holds from their start. */
  readonly #seen: TokenTexts;
  /** The kept texts and, per stage, the last break at or before its kept text's last token; read once. */
  #kept: Promise<{ texts: Map<string, StageText>; lastBreak: Map<string, string>; scanned: boolean }> | undefined;

  constructor(options: ReplayTextsOptions) {
    this.#options = options;
    this.#seen = new TokenTexts((a, b) => options.broker.compareIds(a, b));
  }

  /** Feeds a replayed message that is no linear token, in log order: a whole token's text starts a run the replay holds. */
  note(message: TrackedMessage): void {
    const form = tokenForm(message.fields);
    if (form && 'fullText' in form) this.#seen.set(message.stage ?? '', form.fullText, this.#logId(message.id));
  }

  /**
   * Feeds a replayed linear token, in log order (with {@link note} for the other messages of the stream's
   * stages): returns its text so far, or null when it cannot be known. `afterId` is the log id just before it
   * (where a scan for breaks starts). `need` false: the caller wants no text from the kept one for this token (a
   * compact client's later token); the replay's own runs are still followed.
   */
  async track(message: TrackedMessage, afterId: string, need = true): Promise<string | null> {
    const form = tokenForm(message.fields);
    if (!form || !('linear' in form)) return null;
    const stage = message.stage ?? '';
    const { broker } = this.#options;
    const id = this.#logId(message.id);
    const token = { ...form.linear, id };
    // Within a run the replay holds from its start (or already placed in the kept text, below).
    const chained = this.#seen.apply(stage, token);
    if (chained !== null || !need || id === undefined) return chained;
    const { texts, lastBreak, scanned } = await (this.#kept ??= this.#readKept(afterId));
    const kept = texts.get(stage);
    if (!kept || kept.id === undefined || !scanned) return null;
    const at = lastBreak.get(stage);
    // Before the kept text's run began: another text.
    if (at !== undefined && broker.compareIds(id, at) < 0) return null;
    this.#seen.set(stage, kept.text, kept.id);
    return this.#seen.apply(stage, token);
  }

  #logId(id: string | undefined): string | undefined {
    return this.#options.broker.isId(id) ? id : undefined;
  }

  /** The kept texts, and the last break of each stage in the log from `afterId` up to its kept text's last token. */
  async #readKept(afterId: string): Promise<{ texts: Map<string, StageText>; lastBreak: Map<string, string>; scanned: boolean }> {
    const { broker, projectId, stage, maxEntries } = this.#options;
    const texts = await broker.texts(projectId, stage);
    const lastBreak = new Map<string, string>();
    let target: string | undefined;
    for (const kept of texts.values()) {
      if (kept.id !== undefined && broker.compareIds(kept.id, afterId) > 0 && (target === undefined || broker.compareIds(kept.id, target) > 0)) {
        target = kept.id;
      }
    }
    // Every kept text ends before the token: nothing between them to scan.
    if (target === undefined) return { texts, lastBreak, scanned: true };
    const breaks = new BreakFinder();
    let upTo = afterId;
    let read = 0;
    for (;;) {
      const page = await broker.replay(projectId, upTo, { limit: SCAN_PAGE_ENTRIES });
      if (!page.covered) return { texts, lastBreak, scanned: false };
      for (const entry of page.entries) {
        if (broker.compareIds(entry.id, target) > 0) return { texts, lastBreak, scanned: true };
        if (++read > maxEntries) return { texts, lastBreak, scanned: false };
        upTo = entry.id;
        if (stage !== null && entry.stage !== stage) continue;
        const form = tokenForm(parseObject(entry.data));
        const kept = texts.get(entry.stage);
        if (!form || !breaks.observe(entry.stage, form) || kept?.id === undefined) continue;
        if (broker.compareIds(entry.id, kept.id) <= 0) lastBreak.set(entry.stage, entry.id);
      }
      if (!page.more) return { texts, lastBreak, scanned: true };
    }
  }
}

function parseObject(json: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(json);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
