import type { Transport } from '../../shared/mux-core.js';
import { LitElement, html, nothing, type TemplateResult } from 'lit';
import { property } from 'lit/decorators.js';
import { ref } from 'lit/directives/ref.js';
import { repeat } from 'lit/directives/repeat.js';
import { classMap } from 'lit/directives/class-map.js';
import { styleMap } from 'lit/directives/style-map.js';
import { labelsFor, mergeLabels, type ViewerLabelOverrides, type ViewerLabels } from '../../labels.js';
import { ColorSchemeController } from '../../color-scheme-controller.js';
import { LangController } from '../../lang-controller.js';
import { booleanAttribute } from '../../boolean-attribute.js';
import {
  StageStatus,
  type CancelledMessage,
  type ConnectedMessage,
  type DoneMessage,
  type ErrorMessage,
  type ProgressMessage,
  type ResetMessage,
  type SnapshotMessage,
  type StageUpdateMessage,
  type TokenMessage,
} from '../../../../protocol/messages.js';
import { EventLogController, type LogEntry } from '../../event-log-controller.js';
import { ConnectionState, DisconnectReason, SSEClient, type DisconnectedEvent } from '../../sse-client.js';
import type { StageView } from '../../stage-store.js';
import { StreamController } from '../../stream-controller.js';
import type { TokenSource } from '../../token-source.js';
import styles from './sse-stream-viewer.styles.js';

/** The DOM events of `<sse-stream-viewer>`: one per message, `detail` being the message. */
export interface SseStreamViewerEventMap {
  connected: CustomEvent<ConnectedMessage>;
  token: CustomEvent<TokenMessage>;
  stage_update: CustomEvent<StageUpdateMessage>;
  progress: CustomEvent<ProgressMessage>;
  done: CustomEvent<DoneMessage>;
  /** The task failed (not a connection problem: see `disconnected`). */
  error: CustomEvent<ErrorMessage>;
  disconnected: CustomEvent<DisconnectedEvent>;
  /** The server could not replay from the last event id and sent the latest state instead; the viewer redrew from it. */
  reset: CustomEvent<ResetMessage>;
  /** The current state of the stages, first on a fresh stream of a project with history; the viewer drew it at once. */
  snapshot: CustomEvent<SnapshotMessage>;
  /** The cancel button (`cancelable`) was pressed: `detail` is the server's answer (`status`, `body`), or the `error`. */
  cancel: CustomEvent<CancelDetail>;
  /** A stage was cancelled (the hub's `cancelled` message). */
  cancelled: CustomEvent<CancelledMessage>;
}

/** The detail of the viewer's `cancel` event. */
export interface CancelDetail {
  stage: string;
  /** The HTTP status of the cancel request (200: cancelled; 409: finished or not running; 401/403: not allowed). */
  status?: number;
  body?: Record<string, unknown>;
  error?: unknown;
}

type ViewerListener<K extends keyof SseStreamViewerEventMap> = (this: SseStreamViewer, event: SseStreamViewerEventMap[K]) => unknown;
type ElementListener<K extends keyof HTMLElementEventMap> = (this: SseStreamViewer, event: HTMLElementEventMap[K]) => unknown;

/** Failed attempts in a row before the viewer says why beside its countdown (one failure is often a blip). */
const FAILURES_BEFORE_REASON = 2;

function emptyStage(name: string): StageView {
  return { name, status: undefined, message: '', stageProgress: undefined, progress: undefined, done: undefined, error: undefined, text: '' };
}

/** True when `server` is on another origin than the page (so CORS applies). */
function isCrossOrigin(server: string): boolean {
  try {
    return new URL(server, location.href).origin !== location.origin;
  } catch {
    return false;
  }
}

/** A log line's text, after its event's name. */
function logText(labels: ViewerLabels, entry: LogEntry): string {
  const text = labels.log(entry.event);
  return text ? ` ${text}` : '';
}

function clock(time: number): string {
  return new Date(time).toTimeString().slice(0, 8);
}

/**
 * Connects with `connect()` or the `auto-connect` attribute; disconnects with `disconnect()` or when removed from the page,
 * and reconnects when `project-id`, `stage-name`, `base-url` or whether a `token` is set change. Inside an
 * `<sse-stream-provider>` it uses the provider's one shared connection (filtered by its `stage-name`) instead of its own;
 * its own `project-id`, `base-url` and `token` are then not used.
 * Resilience (backoff, `Last-Event-ID` resume, heartbeat watchdog, offline handling) comes from `SSEClient`.
 *
 * Stable hooks for tests and styling, inside the open shadow root:
 * - `[part="badge"]`: the connection badge; `data-state` is `connecting`, `open`, `reconnecting`, `offline` or `closed`.
 * - `[data-stage="<name>"]`: one `section[part="stage"]` per stage, in pipeline order; `data-status` is the stage status.
 *   A single-stage viewer always has its panel, even before the first message.
 * - `[data-stage="<name>"] [part="text"]`: the streamed text; its `textContent` is exactly the text so far
 *   (the cursor is a CSS pseudo-element). Text is written once per animation frame: await `textUpdateComplete()`.
 * - `[data-stage="<name>"] [part="status"]`: the status chip, with `data-status`.
 * - `[data-stage="<name>"] [role="progressbar"]`: `aria-valuenow` 0-100; `[part="progress-label"]` shows `current / total · item`.
 * - `[data-stage="<name>"] [part="done"]`, `[part="metadata"] [data-key="<key>"]`, `[part="error"]`, `[part="retry-count"]`.
 * - `[data-stage="<name>"] [part="cancel-button"]` (with `cancelable`, while the stage runs).
 * - `[part="notice"]`: why the connection closed, or why its attempts keep failing (after two in a row, beside the countdown).
 * - `[part="retry-button"]`, `[part="connect-button"]`, `[part="disconnect-button"]`, `[part="logs"]`.
 *
 * @summary Shows a long AI job live: one stage (`stage-name`) or every stage of a project, streamed over Server-Sent Events.
 * @tag sse-stream-viewer
 *
 * @event {CustomEvent<ConnectedMessage>} connected - The server confirmed the subscription (also after each reconnect).
 * @event {CustomEvent<TokenMessage>} token - A piece of generated text.
 * @event {CustomEvent<StageUpdateMessage>} stage_update - A stage changed status or progress.
 * @event {CustomEvent<ProgressMessage>} progress - An item of a stage finished (`current` of `total`).
 * @event {CustomEvent<DoneMessage>} done - A stage finished, with its full text and metadata.
 * @event {CustomEvent<ErrorMessage>} error - A stage failed. Not a connection problem: those are `disconnected`.
 * @event {CustomEvent<DisconnectedEvent>} disconnected - The connection ended; `detail.willReconnect` says whether it retries, `detail.failure` why attempts fail (`kind` network, http or token; `status`, `code`, `message`, `attempts`).
 * @event {CustomEvent<ResetMessage>} reset - The server could not replay what was missed and sent the latest state of each stage instead; the viewer redrew from it.
 * @event {CustomEvent<CancelDetail>} cancel - The cancel button was pressed; `detail` has the server's answer (`status`, `body`) or the `error`.
 * @event {CustomEvent<CancelledMessage>} cancelled - A stage was cancelled (the hub's `cancelled` message).
 * @event {CustomEvent<SnapshotMessage>} snapshot - A fresh stream (opened or reloaded mid-job, or after it) started with the current state of each stage; the viewer drew it in one update. The `token`, `done`, ... events are not fired for that history.
 *
 * @csspart base - The wrapper of everything.
 * @csspart header - The row with the badge and the buttons.
 * @csspart badge - The connection badge (has `data-state`).
 * @csspart retry-button - "Retry now", while reconnecting or after a failure.
 * @csspart cancel-button - "Cancel" on a running stage (`cancelable`).
 * @csspart connect-button - Shown when not `auto-connect` and not connected.
 * @csspart disconnect-button - Shown when not `auto-connect` and connected or trying.
 * @csspart notice - Why the connection closed, why it could not start, or why its attempts keep failing (e.g. the server cannot be reached).
 * @csspart empty - The placeholder before the first stage of an all-stages viewer.
 * @csspart stage - One stage's panel (has `data-stage` and `data-status`).
 * @csspart stage-title - The stage's name.
 * @csspart status - The stage's status chip (has `data-status`).
 * @csspart message - The latest `stage_update` message.
 * @csspart progress - The progress row.
 * @csspart progress-bar - The progress bar track (`role="progressbar"`).
 * @csspart progress-label - `current / total · item_name`.
 * @csspart text - The streamed text (`role="log"`); gets the `streaming` class and a blinking cursor while the stage runs.
 * @csspart done - The summary after `done`.
 * @csspart metadata - The `done` metadata list.
 * @csspart error - The task error (`role="alert"`).
 * @csspart retry-count - The error's `retry_count`.
 * @csspart logs - The event log (`show-logs`).
 * @csspart log-list - The list inside the event log.
 *
 * @cssprop [--sse-viewer-font=14px/1.5 system-ui] - Font of the element.
 * @cssprop [--sse-viewer-text-font=inherit] - Font of the streamed text.
 * @cssprop [--sse-viewer-bg=#ffffff] - Background (dark scheme: #0d1117; see `color-scheme`).
 * @cssprop [--sse-viewer-fg=#1f2328] - Text color (dark scheme: #e6edf3).
 * @cssprop [--sse-viewer-muted=#59636e] - Secondary text.
 * @cssprop [--sse-viewer-border=#d1d9e0] - Borders.
 * @cssprop [--sse-viewer-panel-bg=#f6f8fa] - Background of stage panels and buttons.
 * @cssprop [--sse-viewer-accent=#0969da] - Progress fill, cursor and focus ring.
 * @cssprop [--sse-viewer-track=#d1d9e0] - Progress track.
 * @cssprop --sse-viewer-success-bg - Live badge, completed chip and done summary background; `--sse-viewer-success-fg` their text.
 * @cssprop --sse-viewer-success-fg - Text on success backgrounds.
 * @cssprop --sse-viewer-warning-bg - Connecting/reconnecting badge and processing chip background.
 * @cssprop --sse-viewer-warning-fg - Text on warning backgrounds.
 * @cssprop --sse-viewer-danger-bg - Failed chip and error background.
 * @cssprop --sse-viewer-danger-fg - Text on danger backgrounds.
 * @cssprop --sse-viewer-neutral-bg - Closed/offline badge and pending chip background.
 * @cssprop --sse-viewer-neutral-fg - Text on neutral backgrounds.
 * @cssprop [--sse-viewer-radius=8px] - Corner radius.
 * @cssprop [--sse-viewer-text-max-height=24em] - Height after which the text scrolls (it follows the end while scrolled to the bottom).
 * @cssprop [--sse-viewer-log-max-height=12em] - Height after which the event log scrolls.
 */
export class SseStreamViewer extends LitElement {
  static override styles = styles;

  readonly #internals = this.attachInternals();

  /** The project to watch. Required unless inside an `<sse-stream-provider>`. Default `''`. */
  @property({ attribute: 'project-id', reflect: true }) projectId = '';

  /** The stage to watch; empty means every stage of the project. Default `''`. */
  @property({ attribute: 'stage-name', reflect: true }) stageName = '';

  /** Origin (and path prefix) of the server; empty means this page's origin. Default `''`. */
  @property({ attribute: 'base-url' }) baseUrl = '';

  /** Connect as soon as the element is in the page (and has a `project-id`). Default false. */
  /**
   * Open a connection of its own instead of subscribing on the browser's shared one (one connection for every
   * viewer of every tab of the origin, see `configureSharing`). Inside a provider, the provider's setting counts.
   * Default false.
   */
  @property({ attribute: 'own-connection', type: Boolean, converter: booleanAttribute }) ownConnection = false;

  /**
   * How the connection reaches the server: `sse` (default), `websocket` (one WebSocket, for networks that mangle
   * long HTTP responses) or `auto` (the WebSocket first, SSE when it cannot open).
   */
  @property() transport: Transport = 'sse';

  /** Only these message types, comma-separated (`progress,done`: no tokens), filtered on the server. Default all. */
  @property() types = '';

  /** Without `stage-name`: only these stages, comma-separated (`rewrite,storyboard`). Default all. */
  @property() stages = '';

  @property({ attribute: 'auto-connect', type: Boolean, converter: booleanAttribute }) autoConnect = false;

  /**
   * Show a Cancel button on each running stage: it POSTs `…/stages/{stage}/cancel/` (with `token`, as the stream)
   * and fires `cancel` with the answer; the stage shows Cancelled once the hub's `cancelled` message arrives. Default false.
   */
  @property({ type: Boolean, converter: booleanAttribute }) cancelable = false;

  /** Show the event log under the stages. Default false. */
  @property({ attribute: 'show-logs', type: Boolean, converter: booleanAttribute }) showLogs = false;

  /** Lines kept in the event log; older ones are dropped. Default 200. */
  @property({ attribute: 'max-log-entries', type: Number }) maxLogEntries = 200;

  /**
   * Bearer token for the authenticated endpoints, or a function returning one (asked before every connection
   * attempt, so expiring tokens can be refreshed). Setting it switches to the `.../stream/` endpoints. Default none.
   */
  @property({ attribute: false }) token: TokenSource | undefined = undefined;

  /**
   * Overrides of the built-in labels (English or Chinese, picked from the closest `lang`, followed as it changes),
   * deep-merged over them: `{ state: { open: 'On air' } }` changes that one badge text and keeps the others. Default none.
   */
  @property({ attribute: false }) labels: ViewerLabelOverrides | undefined = undefined;

  /**
   * `light` or `dark` forces that look. `auto` (the default) follows the page's CSS `color-scheme` where the element sits
   * when it names one scheme only (`:root { color-scheme: light }` keeps it light on a dark OS), else the OS preference
   * (`prefers-color-scheme`). The page's scheme is read when the element is attached and when this attribute changes.
   */
  @property({ attribute: 'color-scheme', reflect: true }) colorScheme: 'auto' | 'light' | 'dark' = 'auto';

  readonly #lang = new LangController(this);
  // Sets the custom states of the page's own colour scheme, which the styles read.
  readonly #scheme = new ColorSchemeController(this, this.#internals);
  #labels: { lang: string; overrides: ViewerLabelOverrides | undefined; merged: ViewerLabels } | undefined;
  readonly #log = new EventLogController(this, () => this.renderRoot?.querySelector('.log-list'));
  readonly #stream = new StreamController(this, (event) => this.#log.record(event));
  readonly #textRefs = new Map<string, (element: Element | undefined) => void>();

  /** The connection state as shown by the badge. */
  get connectionState(): ConnectionState {
    return this.#stream.state;
  }

  /** Connects now (or retries at once if the connection failed or waits to retry). */
  connect(): void {
    this.#stream.connect();
  }

  /** Disconnects and stays disconnected until `connect()` (even with `auto-connect`). */
  disconnect(): void {
    this.#stream.disconnect();
  }

  /** Cancels `stage` (see `cancelable`); resolves to the detail of the `cancel` event it fires. */
  async cancel(stage: string): Promise<CancelDetail> {
    let detail: CancelDetail;
    try {
      const client = new SSEClient(this.projectId, stage, { baseUrl: this.baseUrl || undefined, token: this.token, shared: false });
      detail = { stage, ...(await client.cancel(stage)) };
    } catch (error) {
      detail = { stage, error };
    }
    this.dispatchEvent(new CustomEvent('cancel', { detail }));
    return detail;
  }

  /** Resolves once the streamed text received so far is in the DOM (text is written once per animation frame). */
  async textUpdateComplete(): Promise<void> {
    await this.updateComplete;
    await this.#stream.text.flushed();
  }

  override addEventListener<K extends keyof SseStreamViewerEventMap>(type: K, listener: ViewerListener<K>, options?: boolean | AddEventListenerOptions): void;
  override addEventListener<K extends keyof HTMLElementEventMap>(type: K, listener: ElementListener<K>, options?: boolean | AddEventListenerOptions): void;
  override addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
  override addEventListener(type: string, listener: unknown, options?: boolean | AddEventListenerOptions): void {
    super.addEventListener(type, listener as EventListenerOrEventListenerObject, options);
  }

  override removeEventListener<K extends keyof SseStreamViewerEventMap>(type: K, listener: ViewerListener<K>, options?: boolean | EventListenerOptions): void;
  override removeEventListener<K extends keyof HTMLElementEventMap>(type: K, listener: ElementListener<K>, options?: boolean | EventListenerOptions): void;
  override removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
  override removeEventListener(type: string, listener: unknown, options?: boolean | EventListenerOptions): void {
    super.removeEventListener(type, listener as EventListenerOrEventListenerObject, options);
  }

  protected override render(): TemplateResult {
    const labels = this.#currentLabels();
    const store = this.#stream.store;
    const stages = this.stageName ? [store.get(this.stageName) ?? emptyStage(this.stageName)] : store.list();
    const notice = this.#notice(labels);
    return html`
      <div part="base" class="viewer">
        <div part="header" class="header">${this.#renderBadge(labels)} ${this.#renderControls(labels)}</div>
        ${notice ? html`<p part="notice" class="notice">${notice}</p>` : nothing}
        ${stages.length
          ? repeat(stages, (stage) => stage.name, (stage) => this.#renderStage(stage, labels))
          : html`<p part="empty" class="empty">${labels.waiting}</p>`}
        ${this.showLogs ? this.#renderLogs(labels) : nothing}
      </div>
    `;
  }

  /** The language's labels with `labels` merged over them, merged again only when either changed. */
  #currentLabels(): ViewerLabels {
    const lang = this.#lang.value;
    const cached = this.#labels;
    if (cached?.lang === lang && cached.overrides === this.labels) return cached.merged;
    const merged = mergeLabels(labelsFor(lang), this.labels);
    this.#labels = { lang, overrides: this.labels, merged };
    return merged;
  }

  #notice(labels: ViewerLabels): string {
    const stream = this.#stream;
    if (stream.configError) return stream.configError;
    const last = stream.lastDisconnect;
    if (stream.state === ConnectionState.closed && last) return labels.disconnected(last);
    const failure = last?.failure;
    // Kept while the next attempt is under way too, so the reason does not blink at every retry.
    const retrying = stream.state === ConnectionState.reconnecting || stream.state === ConnectionState.connecting;
    if (retrying && failure && !failure.fatal && failure.attempts >= FAILURES_BEFORE_REASON) {
      return labels.failing(failure, { crossOrigin: isCrossOrigin(failure.server) });
    }
    return '';
  }

  #renderBadge(labels: ViewerLabels): TemplateResult {
    const { state } = this.#stream;
    const seconds = this.#stream.retryInSeconds;
    const text = state === ConnectionState.reconnecting && seconds !== undefined ? labels.reconnectingIn(seconds) : labels.state[state];
    return html`<span part="badge" class="badge" data-state=${state} role="status">${text}</span>`;
  }

  #renderControls(labels: ViewerLabels): TemplateResult | typeof nothing {
    const { state, lastDisconnect } = this.#stream;
    const failed =
      state === ConnectionState.closed &&
      lastDisconnect !== undefined &&
      lastDisconnect.reason !== DisconnectReason.disconnect &&
      lastDisconnect.reason !== DisconnectReason.done;
    const showConnect = !this.autoConnect && state === ConnectionState.closed;
    const showRetry = !showConnect && (state === ConnectionState.reconnecting || state === ConnectionState.offline || failed);
    return html`
      ${showRetry ? html`<button part="retry-button" type="button" @click=${() => this.connect()}>${labels.retry}</button>` : nothing}
      ${showConnect ? html`<button part="connect-button" type="button" @click=${() => this.connect()}>${labels.connect}</button>` : nothing}
      ${!this.autoConnect && !showConnect
        ? html`<button part="disconnect-button" type="button" @click=${() => this.disconnect()}>${labels.disconnect}</button>`
        : nothing}
    `;
  }

  #renderStage(stage: StageView, labels: ViewerLabels): TemplateResult {
    const status = stage.status ?? StageStatus.pending;
    const streaming = status === StageStatus.processing && !stage.done && !stage.error;
    return html`
      <section part="stage" class="stage" data-stage=${stage.name} data-status=${status} aria-label=${labels.stage(stage.name)}>
        <div class="stage-header">
          <h3 part="stage-title" class="stage-title">${labels.stage(stage.name)}</h3>
          <span part="status" class="status" data-status=${status}>${stage.cancelled ? labels.cancelled : (labels.status[status] ?? status)}</span>
          ${this.cancelable && streaming && !stage.cancelled
            ? html`<button part="cancel-button" type="button" @click=${() => void this.cancel(stage.name)}>${labels.cancel}</button>`
            : nothing}
        </div>
        ${stage.message ? html`<p part="message" class="message">${stage.message}</p>` : nothing}
        ${this.#renderProgress(stage, labels)}
        <div
          part="text"
          class=${classMap({ text: true, streaming })}
          role="log"
          tabindex="0"
          aria-label=${labels.output(stage.name)}
          ${ref(this.#textRef(stage.name))}
        ></div>
        ${stage.done ? this.#renderDone(stage.done, labels) : nothing}
        ${stage.error
          ? html`<div part="error" class="error" role="alert">
              <strong>${labels.error}:</strong> ${stage.error.error}
              <span part="retry-count">(${labels.retryCount(stage.error.retry_count ?? 0)})</span>
            </div>`
          : nothing}
      </section>
    `;
  }

  #renderProgress(stage: StageView, labels: ViewerLabels): TemplateResult | typeof nothing {
    const raw = stage.progress?.progress ?? stage.stageProgress;
    if (typeof raw !== 'number' || Number.isNaN(raw)) return nothing;
    const value = Math.round(Math.min(100, Math.max(0, raw)));
    const items = stage.progress ? labels.items(stage.progress.current, stage.progress.total) : '';
    const label = [items, stage.progress?.item_name].filter(Boolean).join(' · ');
    return html`
      <div part="progress" class="progress">
        <div
          part="progress-bar"
          class="track"
          role="progressbar"
          aria-label=${labels.progress(stage.name)}
          aria-valuemin="0"
          aria-valuemax="100"
          aria-valuenow=${value}
          aria-valuetext=${label ? `${value}% · ${label}` : `${value}%`}
        >
          <div class="fill" style=${styleMap({ width: `${value}%` })}></div>
        </div>
        ${label ? html`<span part="progress-label" class="progress-label">${label}</span>` : nothing}
      </div>
    `;
  }

  #renderDone(done: DoneMessage, labels: ViewerLabels): TemplateResult {
    const metadata = Object.entries(done.metadata ?? {});
    return html`
      <div part="done" class="done">
        <strong>✓ ${labels.done}</strong>
        ${metadata.length
          ? html`<dl part="metadata" class="metadata">
              ${metadata.map(([key, value]) => html`<dt>${labels.metadataKey(key)}</dt><dd data-key=${key}>${labels.metadataValue(key, value)}</dd>`)}
            </dl>`
          : nothing}
      </div>
    `;
  }

  #renderLogs(labels: ViewerLabels): TemplateResult {
    const entries: LogEntry[] = this.#log.entries;
    return html`
      <details part="logs" class="logs" open>
        <summary>${labels.logs} (${entries.length})</summary>
        <ol part="log-list" class="log-list" tabindex="0" aria-label=${labels.logs}>
          ${repeat(
            entries,
            (entry) => entry.id,
            (entry) =>
              html`<li data-type=${entry.type}>
                <time>${clock(entry.time)}</time> <b>${entry.type}</b>${entry.stage ? ` [${entry.stage}]` : ''}${entry.count > 1
                  ? ` ×${entry.count}`
                  : ''}${logText(labels, entry)}
              </li>`,
          )}
        </ol>
      </details>
    `;
  }

  /** One stable ref callback per stage, so Lit binds each text element once. */
  #textRef(stage: string): (element: Element | undefined) => void {
    let callback = this.#textRefs.get(stage);
    if (!callback) {
      callback = (element) => {
        const text = this.#stream.store.get(stage)?.text ?? '';
        this.#stream.text.attach(stage, element as HTMLElement | undefined, text);
      };
      this.#textRefs.set(stage, callback);
    }
    return callback;
  }
}
