/**
 * The event log of a viewer (`show-logs`), as a Lit ReactiveController: one line per event the viewer received,
 * consecutive tokens of a stage on one line that counts up, the oldest lines dropped beyond `maxLogEntries`.
 * Fed by the viewer's {@link StreamController}; re-renders its host while the log is shown, and keeps the newest
 * line in view unless the reader scrolled up.
 */
import type { ReactiveController, ReactiveControllerHost } from 'lit';
import type { StageMessage } from '../../protocol/messages.js';
import { isStreamEvent } from './event-names.js';
import type { HubEvent } from './stream-hub.js';

/** What the log reads from its host. */
export interface EventLogHost extends ReactiveControllerHost {
  /** Whether the log is shown; a hidden log still records, but does not re-render the host. */
  showLogs: boolean;
  /** Lines kept; at least one. */
  maxLogEntries: number;
}

/** One line of the log. Consecutive tokens of a stage share a line and count up. */
export interface LogEntry {
  id: number;
  /** `Date.now()` of the (last) event. */
  time: number;
  type: string;
  stage: string | undefined;
  text: string;
  count: number;
}

/** Pixels of slack under which a scrolled log counts as "at the bottom" and keeps following. */
const FOLLOW_SLACK_PX = 24;

/** A worker message in a few words. */
function summarize(message: StageMessage): string {
  switch (message.type) {
    case 'stage_update':
      return `${message.status} ${message.progress}%${message.message ? ` — ${message.message}` : ''}`;
    case 'progress':
      return `${message.current}/${message.total} ${message.item_name ?? ''}`.trim();
    case 'done':
      return `${message.full_text?.length ?? 0} characters`;
    case 'error':
      return `${message.error} (retry ${message.retry_count})`;
    default:
      return '';
  }
}

/** The line an event writes, or undefined for a `message` that repeats an event already logged by name. */
function lineOf(event: HubEvent): Pick<LogEntry, 'type' | 'text' | 'stage'> | undefined {
  const line = (text: string) => ({ type: event.type, text, stage: undefined });
  switch (event.type) {
    case 'state':
      return line(`${event.data.previous} → ${event.data.state}`);
    case 'reconnecting':
      return line(`attempt ${event.data.attempt} in ${event.data.delayMs} ms (${event.data.reason})`);
    case 'disconnected':
      return line(`${event.data.reason}${event.data.status ? ` ${event.data.status}` : ''}`);
    case 'connected':
      return line(event.data.resumed ? 'resumed' : '');
    case 'reset':
      return line(event.data.reason ?? '');
    case 'snapshot':
      return line(Object.keys(event.data.stages ?? {}).join(', '));
    case 'token_expired':
      return line('');
    case 'message': {
      // Events the protocol does not define reach the viewer only wrapped: log them by their own name.
      const { type, data } = event.data;
      return isStreamEvent(type) ? undefined : { type, text: typeof data === 'string' ? data : '', stage: undefined };
    }
    default:
      return { type: event.data.type, text: summarize(event.data), stage: event.data.stage };
  }
}

export class EventLogController implements ReactiveController {
  /** The lines, oldest first. */
  readonly entries: LogEntry[] = [];

  readonly #host: EventLogHost;
  readonly #list: () => Element | null | undefined;
  #lastId = 0;
  #follows = true;

  /** `list` finds the rendered list of entries, whose scroll position the controller keeps. */
  constructor(host: EventLogHost, list: () => Element | null | undefined) {
    this.#host = host;
    this.#list = list;
    host.addController(this);
  }

  hostUpdate(): void {
    const list = this.#host.showLogs ? this.#list() : null;
    this.#follows = !list || list.scrollHeight - list.scrollTop - list.clientHeight < FOLLOW_SLACK_PX;
  }

  hostUpdated(): void {
    if (!this.#host.showLogs) return;
    const list = this.#list();
    if (list && this.#follows) list.scrollTop = list.scrollHeight;
  }

  /** Logs an event the host received. */
  record(event: HubEvent): void {
    // The per-token path: a token that continues the last line only counts up, with no line built for it.
    if (!(event.type === 'token' && this.#countUp(event.data.stage))) {
      const line = lineOf(event);
      if (line) this.#add(line);
    }
    if (this.#host.showLogs) this.#host.requestUpdate();
  }

  /** Counts a token of `stage` on the last line when that line is a run of its tokens; false otherwise. */
  #countUp(stage: string): boolean {
    const last = this.entries.at(-1);
    if (last?.type !== 'token' || last.stage !== stage) return false;
    last.count++;
    last.time = Date.now();
    return true;
  }

  #add({ type, text, stage }: Pick<LogEntry, 'type' | 'text' | 'stage'>): void {
    this.entries.push({ id: ++this.#lastId, time: Date.now(), type, stage, text, count: 1 });
    const excess = this.entries.length - Math.max(1, this.#host.maxLogEntries);
    if (excess > 0) this.entries.splice(0, excess);
  }
}
