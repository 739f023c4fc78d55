/**
 * Writes streamed text into the DOM at most once per animation frame, by appending to one Text
 * node per stage. Lit never renders the text itself: re-rendering a 20,000-token text per token
 * would be quadratic, and a token rate above the frame rate would waste layouts.
 */
import type { TextChange } from './stage-store.js';

interface Pending {
  /** When set, the element's whole text becomes this before `append`. */
  replace: string | undefined;
  append: string;
}

/** Lines of slack under which a scrolled text area counts as "at the bottom" and keeps following. */
const FOLLOW_SLACK_PX = 24;

export class TextRenderer {
  readonly #targets = new Map<string, HTMLElement>();
  readonly #pending = new Map<string, Pending>();
  #frame: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #waiters: Array<() => void> = [];

  /** Queues a change of `stage`'s text for the next frame. */
  push(stage: string, change: TextChange): void {
    const pending = this.#pending.get(stage);
    if (change.kind === 'replace') this.#pending.set(stage, { replace: change.text, append: '' });
    else if (pending) pending.append += change.text;
    else this.#pending.set(stage, { replace: undefined, append: change.text });
    this.#schedule();
  }

  /**
   * Binds `stage`'s text element (or unbinds it with `undefined`). A newly bound element is written
   * with `text`, the stage's whole text so far; changes queued before are part of it and dropped.
   */
  attach(stage: string, element: HTMLElement | undefined, text: string): void {
    if (!element) {
      this.#targets.delete(stage);
      return;
    }
    if (this.#targets.get(stage) === element) return;
    this.#targets.set(stage, element);
    this.#pending.delete(stage);
    element.textContent = text;
  }

  /** Resolves after the next flush (immediately when nothing is queued). For tests and for `updateComplete`-style waits. */
  flushed(): Promise<void> {
    if (this.#frame === undefined && this.#timer === undefined) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Writes everything queued now. */
  flush(): void {
    if (this.#frame !== undefined) cancelAnimationFrame(this.#frame);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#frame = this.#timer = undefined;
    for (const [stage, pending] of this.#pending) {
      const element = this.#targets.get(stage);
      if (element) write(element, pending);
    }
    this.#pending.clear();
    for (const resolve of this.#waiters.splice(0)) resolve();
  }

  #schedule(): void {
    if (this.#frame !== undefined || this.#timer !== undefined) return;
    // Hidden tabs get no animation frames: flush on a slow timer there so the text is current when shown.
    if (typeof document !== 'undefined' && document.visibilityState === 'hidden') this.#timer = setTimeout(() => this.flush(), 250);
    else this.#frame = requestAnimationFrame(() => this.flush());
  }
}

function write(element: HTMLElement, { replace, append }: Pending): void {
  const follow = element.scrollHeight - element.scrollTop - element.clientHeight <= FOLLOW_SLACK_PX;
  if (replace !== undefined) {
    element.textContent = replace + append;
  } else if (append) {
    const node = element.lastChild;
    if (node instanceof Text) node.appendData(append);
    else element.append(append);
  }
  if (follow) element.scrollTop = element.scrollHeight;
}
