/**
 * Checks what a viewer received, event by event, for the demo's counters: a resumed stream must
 * bring every message exactly once. Pure: fed from the viewer's DOM events, tested in node.
 */

export interface AuditCounts {
  /** Stream messages received (everything but `connected`). */
  events: number;
  /** Token messages whose `full_text` is not the previous `full_text` plus `content`: something was lost. */
  gaps: number;
  /** Messages whose `id` was already received. */
  duplicates: number;
  /** `connected` events with `resumed: true`. */
  resumes: number;
  /** `reset` events: the replay log no longer covered the resume point. */
  resets: number;
}

/** What {@link StreamAudit.observe} found wrong with one event. */
export type Finding = 'gap' | 'duplicate' | undefined;

type Fields = Record<string, unknown>;

export function emptyCounts(): AuditCounts {
  return { events: 0, gaps: 0, duplicates: 0, resumes: 0, resets: 0 };
}

export class StreamAudit {
  readonly counts: AuditCounts = emptyCounts();
  readonly #seenIds = new Set<string>();
  /** stage -> the `full_text` of its last token; absent until the first token of a run was seen. */
  readonly #text = new Map<string, string>();

  /** Feeds one event (its type and the message, i.e. the DOM event's `detail`). */
  observe(type: string, message: unknown): Finding {
    const fields: Fields = message !== null && typeof message === 'object' ? (message as Fields) : {};
    if (type === 'connected') {
      if (fields.resumed === true) this.counts.resumes++;
      return undefined;
    }
    if (type === 'disconnected' || type === 'reconnecting' || type === 'state') return undefined;
    this.counts.events++;

    const id = typeof fields.id === 'string' ? fields.id : undefined;
    if (id !== undefined) {
      if (this.#seenIds.has(id)) {
        this.counts.duplicates++;
        return 'duplicate';
      }
      this.#seenIds.add(id);
    }

    const stage = typeof fields.stage === 'string' ? fields.stage : '';
    switch (type) {
      case 'reset':
        // The server could not replay; it sent the latest state instead. Start over from the next token.
        this.counts.resets++;
        this.#text.clear();
        return undefined;
      case 'snapshot':
        // A fresh stream starts with each stage's text so far: the next token must continue it.
        this.#text.clear();
        for (const [name, state] of Object.entries((fields.stages as Record<string, Fields> | undefined) ?? {})) {
          const text = (state.done as Fields | undefined)?.full_text ?? state.text;
          if (typeof text === 'string' && !state.done && !state.error) this.#text.set(name, text);
        }
        return undefined;
      case 'stage_update':
        // A new run of the stage starts its text from scratch.
        if (fields.status === 'processing' && fields.progress === 0) this.#text.delete(stage);
        return undefined;
      case 'token': {
        const previous = this.#text.get(stage);
        const fullText = String(fields.full_text ?? '');
        this.#text.set(stage, fullText);
        // The first token seen of a run (or after connecting mid-run) is the baseline.
        if (previous !== undefined && fullText !== previous + String(fields.content ?? '')) return this.#gap();
        return undefined;
      }
      case 'done': {
        const previous = this.#text.get(stage);
        this.#text.delete(stage);
        if (previous !== undefined && fields.full_text !== previous) return this.#gap();
        return undefined;
      }
      case 'error':
        this.#text.delete(stage);
        return undefined;
      default:
        return undefined;
    }
  }

  #gap(): Finding {
    this.counts.gaps++;
    return 'gap';
  }
}
