/**
 * The event log of a viewer (`show-logs`), as a Lit ReactiveController: one line per event the viewer received,
 * consecutive tokens of a stage on one line that counts up, the oldest lines dropped beyond `maxLogEntries`.
 * Fed by the viewer's {@link StreamController}; re-renders its host while the log is shown, and keeps the newest
 * line in view unless the reader scrolled up. A line keeps the event it shows, and the viewer writes its text in the
 * viewer's language (`labels.log`) when it renders, so a change of `lang` relabels the lines already there.
 */
import type { ReactiveController, ReactiveControllerHost } from 'lit';
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
  /** The (first) event of the line, which `labels.log` writes as text. */
  event: HubEvent;
  count: number;
}

/** Pixels of slack under which a scrolled log counts as "at the bottom" and keeps following. */
const FOLLOW_SLACK_PX = 24;

type Line = Pick<LogEntry, 'type' | 'stage' | 'event'>;

/** The line an event writes, or undefined for a `message` that repeats an event already logged by name. */
function lineOf(event: HubEvent): Line | undefined {
  switch (event.type) {
    case 'state':
    case 'reconnecting':
    case 'disconnected':
    case 'connected':
    case 'reset':
    case 'snapshot':
    case 'token_expired':
      return { type: event.type, stage: undefined, event };
    case 'message':
      // Events the protocol does not define reach the viewer only wrapped: log them by their own name.
      return isStreamEvent(event.data.type) ? undefined : { type: event.data.type, stage: undefined, event };
    default:
      return { type: event.data.type, stage: event.data.stage, event };
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

  #add({ type, stage, event }: Line): void {
    this.entries.push({ id: ++this.#lastId, time: Date.now(), type, stage, event, count: 1 });
    const excess = this.entries.length - Math.max(1, this.#host.maxLogEntries);
    if (excess > 0) this.entries.splice(0, excess);
  }
}
