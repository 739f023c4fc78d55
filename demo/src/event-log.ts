/** The live event log: one row per event (newest first), capped so a long run cannot grow the page. */

export interface LogRow {
  /** Which viewer received it: `single`, `all`, `auth`. */
  source: string;
  type: string;
  stage?: string | null | undefined;
  id?: string | undefined;
  /** Short text shown in the last column. */
  summary: string;
  /** Marks the row, e.g. `gap`, `duplicate`, `error`. */
  flag?: string | undefined;
}

const MAX_SUMMARY = 90;

/** A one-line summary of a message: the fields a reader looks for first, for each type. */
export function summarize(type: string, message: unknown): string {
  const m = message !== null && typeof message === 'object' ? (message as Record<string, unknown>) : {};
  let text: string;
  switch (type) {
    case 'token':
      text = JSON.stringify(m.content ?? '');
      break;
    case 'stage_update':
      text = `${String(m.status)} ${String(m.progress)}% ${String(m.message ?? '')}`;
      break;
    case 'progress':
      text = `${String(m.current)}/${String(m.total)} ${String(m.item_name ?? '')}`;
      break;
    case 'done':
      text = `${String(m.full_text ?? '').length} chars ${JSON.stringify(m.metadata ?? {})}`;
      break;
    case 'error':
      text = `${String(m.error)} (retry_count ${String(m.retry_count)})`;
      break;
    case 'connected':
      text = m.resumed ? 'resumed' : 'new stream';
      break;
    case 'disconnected':
      text = `${String(m.reason ?? '')}${m.willReconnect ? ', will reconnect' : ''}${m.status ? ` (HTTP ${String(m.status)})` : ''}`;
      break;
    case 'reset':
      text = `replay unavailable (${String(m.reason)}): latest state of ${Object.keys((m.stages as object | undefined) ?? {}).length} stage(s)`;
      break;
    case 'snapshot': {
      const stages = Object.entries((m.stages as Record<string, Record<string, unknown>> | undefined) ?? {});
      const chars = stages.reduce((sum, [, state]) => sum + String((state.done as Record<string, unknown> | undefined)?.full_text ?? state.text ?? '').length, 0);
      text = `current state of ${stages.length} stage(s), ${chars} chars of text`;
      break;
    }
    default:
      text = typeof message === 'string' ? message : JSON.stringify(message);
  }
  return text.length > MAX_SUMMARY ? `${text.slice(0, MAX_SUMMARY - 1)}…` : text;
}

export class EventLog {
  readonly #body: HTMLElement;
  readonly #max: number;
  #paused = false;

  /** `body` is the `<tbody>` (or list) that receives the rows. */
  constructor(body: HTMLElement, max = 200) {
    this.#body = body;
    this.#max = max;
  }

  get paused(): boolean {
    return this.#paused;
  }

  set paused(value: boolean) {
    this.#paused = value;
  }

  add(row: LogRow): void {
    if (this.#paused) return;
    const tr = document.createElement('tr');
    tr.dataset.type = row.type;
    if (row.flag) tr.dataset.flag = row.flag;
    const time = new Date();
    const cells = [
      `${time.toLocaleTimeString([], { hour12: false })}.${String(time.getMilliseconds()).padStart(3, '0')}`,
      row.source,
      row.type,
      row.stage ?? '—',
      row.id ?? '—',
      row.flag ? `${row.flag.toUpperCase()}: ${row.summary}` : row.summary,
    ];
    for (const text of cells) {
      const td = document.createElement('td');
      // textContent, never innerHTML: the payload is data from the stream.
      td.textContent = text;
      tr.append(td);
    }
    this.#body.prepend(tr);
    while (this.#body.childElementCount > this.#max) this.#body.lastElementChild?.remove();
  }

  clear(): void {
    this.#body.replaceChildren();
  }
}
