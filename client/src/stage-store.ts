/**
 * The state a viewer shows for each stage, folded from the stream's messages.
 * Text changes are reported separately (append or replace) so the DOM can be appended to
 * instead of re-rendering a 20,000-token text on every token.
 */
import { PIPELINE_STAGES } from './stage-order.js';
import {
  StageStatus,
  type CancelledMessage,
  type DoneMessage,
  type ErrorMessage,
  type ProgressMessage,
  type ResetMessage,
  type SnapshotMessage,
  type StageMessage,
  type TokenMessage,
} from '../../protocol/messages.js';

/** What a viewer shows for one stage. */
export interface StageView {
  readonly name: string;
  /** From `stage_update`, or inferred: a token means processing, `done` completed, `error` failed. */
  status: StageStatus | undefined;
  /** The latest `stage_update.message`. */
  message: string;
  /** The latest `stage_update.progress` (0-100). */
  stageProgress: number | undefined;
  /** The latest `progress` message (items). */
  progress: ProgressMessage | undefined;
  done: DoneMessage | undefined;
  error: ErrorMessage | undefined;
  /** The stage was cancelled (by a user, through the hub); its status is then `failed`. */
  cancelled?: CancelledMessage | undefined;
  /** Everything generated so far. */
  text: string;
}

/** A change of a stage's text: append `text`, or replace the whole text with it. */
export interface TextChange {
  kind: 'append' | 'replace';
  text: string;
}

export type TextListener = (stage: string, change: TextChange) => void;

const TERMINAL: ReadonlySet<StageStatus | undefined> = new Set([StageStatus.completed, StageStatus.failed]);
const PIPELINE_INDEX = new Map<string, number>(PIPELINE_STAGES.map((name, index) => [name, index]));

function emptyStage(name: string): StageView {
  return { name, status: undefined, message: '', stageProgress: undefined, progress: undefined, done: undefined, error: undefined, text: '' };
}

/** The latest messages of one stage, oldest first, so folding them replays the stage's story. */
function chronological(latest: ResetMessage['stages'][string]): StageMessage[] {
  const order = ['stage_update', 'progress', 'token', 'done', 'error', 'cancelled'];
  return Object.values(latest)
    .filter((message): message is StageMessage => message !== undefined)
    .sort((a, b) => a.timestamp - b.timestamp || order.indexOf(a.type) - order.indexOf(b.type));
}

/**
 * A snapshot's stages in a reset's shape (the latest message of each type per stage): its text so far becomes one
 * token holding the whole text, timed with the stage's latest update so that folding puts it after them.
 * The objects are prototype-less: stage names come from the network (`"__proto__"`).
 */
export function latestOfSnapshot(stages: SnapshotMessage['stages'] | undefined, projectId = ''): ResetMessage['stages'] {
  const latest: ResetMessage['stages'] = Object.create(null);
  for (const [name, state] of Object.entries(stages ?? {})) {
    if (typeof state !== 'object' || state === null) continue;
    const messages: Partial<Record<string, StageMessage>> = Object.create(null);
    for (const type of ['stage_update', 'progress', 'done', 'error', 'cancelled'] as const) {
      const message = state[type];
      if (typeof message === 'object' && message !== null) messages[type] = message;
    }
    if (typeof state.text === 'string' && !messages['done']) {
      const timestamp = Math.max(0, ...[messages['stage_update'], messages['progress']].map((message) => message?.timestamp ?? 0));
      messages['token'] = { type: 'token', stage: name, project_id: projectId, timestamp, content: '', full_text: state.text } satisfies TokenMessage;
    }
    latest[name] = messages;
  }
  return latest;
}

export class StageStore {
  readonly #stages = new Map<string, StageView>();
  readonly #onText: TextListener;

  constructor(onText: TextListener = () => {}) {
    this.#onText = onText;
  }

  get(name: string): StageView | undefined {
    return this.#stages.get(name);
  }

  /** Stages in pipeline order; stages the pipeline does not know follow, in order of appearance. */
  list(): StageView[] {
    const rank = (name: string) => PIPELINE_INDEX.get(name) ?? PIPELINE_STAGES.length;
    return [...this.#stages.values()].sort((a, b) => rank(a.name) - rank(b.name));
  }

  /**
   * Folds one message in. Returns true when something besides the text changed
   * (the caller re-renders), false for a plain token (the caller only appends text).
   */
  apply(message: StageMessage): boolean {
    const stage = this.#ensure(message.stage);
    const created = stage.created;
    const view = stage.view;
    switch (message.type) {
      case 'token': {
        const content = typeof message.content === 'string' ? message.content : '';
        const full = typeof message.full_text === 'string' ? message.full_text : view.text + content;
        // full_text is authoritative; appending `content` is the fast path when they agree.
        if (full.length === view.text.length + content.length) this.#append(view, content, full);
        else this.#replace(view, full);
        if (view.status === undefined || view.status === StageStatus.pending) {
          view.status = StageStatus.processing;
          return true;
        }
        return created;
      }
      case 'stage_update':
        if (!TERMINAL.has(message.status) && (view.done || view.error || view.cancelled)) this.#restart(view); // a new run of the stage
        view.status = message.status;
        view.message = typeof message.message === 'string' ? message.message : '';
        view.stageProgress = typeof message.progress === 'number' ? message.progress : view.stageProgress;
        return true;
      case 'progress':
        view.progress = message;
        if (view.status === undefined || view.status === StageStatus.pending) view.status = StageStatus.processing;
        return true;
      case 'done':
        view.done = message;
        view.status = StageStatus.completed;
        if (typeof message.full_text === 'string' && message.full_text !== view.text) this.#replace(view, message.full_text);
        return true;
      case 'error':
        view.error = message;
        view.status = StageStatus.failed;
        return true;
      case 'cancelled':
        view.cancelled = message;
        view.status = StageStatus.failed;
        return true;
      default:
        return created;
    }
  }

  /** Replaces everything with a reset's per-stage latest messages (see `ResetMessage`). */
  restore(stages: ResetMessage['stages'], only?: string): void {
    for (const view of this.#stages.values()) if (view.text) this.#onText(view.name, { kind: 'replace', text: '' });
    this.#stages.clear();
    for (const [name, latest] of Object.entries(stages)) {
      if (only && name !== only) continue;
      for (const message of chronological(latest)) this.apply(message);
    }
  }

  /**
   * Replaces everything with a snapshot's state of each stage (see `SnapshotMessage`): each stage's text is one
   * `replace`, never token by token, and the caller renders once.
   */
  restoreSnapshot(stages: SnapshotMessage['stages'], only?: string): void {
    this.restore(latestOfSnapshot(stages), only);
  }

  #ensure(name: string): { view: StageView; created: boolean } {
    let view = this.#stages.get(name);
    if (view) return { view, created: false };
    view = emptyStage(name);
    this.#stages.set(name, view);
    return { view, created: true };
  }

  #append(view: StageView, content: string, full: string): void {
    view.text = full;
    if (content) this.#onText(view.name, { kind: 'append', text: content });
  }

  #replace(view: StageView, text: string): void {
    view.text = text;
    this.#onText(view.name, { kind: 'replace', text });
  }

  #restart(view: StageView): void {
    view.done = undefined;
    view.error = undefined;
    view.cancelled = undefined;
    view.progress = undefined;
    view.stageProgress = undefined;
    if (view.text) this.#replace(view, '');
  }
}
