/**
 * The connection of a viewer, as a Lit ReactiveController: it decides which stream the host listens
 * to (the provider's shared one, or its own), folds the messages into a {@link StageStore}, writes
 * text through a {@link TextRenderer}, and re-dispatches the messages as DOM events on the host.
 * Each event that concerns the host is then handed on to `onEvent` (the viewer's event log).
 * The host only renders.
 */
import { ContextConsumer } from '@lit/context';
import type { ReactiveController, ReactiveControllerHost } from 'lit';
import type { StageMessageType } from '../../protocol/messages.js';
import { streamHubContext } from './context.js';
import { isStageMessageType } from './event-names.js';
import { StageStore } from './stage-store.js';
import { ConnectionState, DisconnectReason, createSSEClient, type DisconnectedEvent } from './sse-client.js';
import { StreamHub, type HubEvent, type HubListener } from './stream-hub.js';
import type { Transport } from './shared/mux-core.js';
import { TextRenderer } from './text-renderer.js';
import { liveToken, type TokenSource } from './token-source.js';

/** What the controller reads from its host. */
export interface StreamHost extends ReactiveControllerHost, HTMLElement {
  projectId: string;
  /** Empty: all stages. */
  stageName: string;
  baseUrl: string;
  token: TokenSource | undefined;
  autoConnect: boolean;
  /** A connection of its own instead of the browser's shared one. */
  ownConnection: boolean;
  /** SSE, a WebSocket, or `auto`. */
  transport: Transport;
  /** Comma-separated: only these message types / stages (empty: all). */
  types: string;
  stages: string;
}

/** A comma-separated attribute as a list; undefined when empty. */
function listOf(value: string): string[] | undefined {
  const items = value.split(',').map((item) => item.trim()).filter(Boolean);
  return items.length > 0 ? items : undefined;
}

const PROVIDER_TAG = 'sse-stream-provider';

type StageMessageEvent = Extract<HubEvent, { type: StageMessageType }>;

function isStageMessageEvent(event: HubEvent): event is StageMessageEvent {
  return isStageMessageType(event.type);
}

export class StreamController implements ReactiveController {
  readonly store: StageStore;
  readonly text: TextRenderer;
  /** The connection state as this host sees it (`closed` while not attached to a stream). */
  state: ConnectionState = ConnectionState.closed;
  /** When the pending retry fires (`Date.now()` time), while reconnecting. */
  retryAt: number | undefined;
  /** Why the connection last ended; cleared when it opens again. */
  lastDisconnect: DisconnectedEvent | undefined;
  /** Why no connection could be made from the host's attributes (e.g. an invalid `project-id`). */
  configError: string | undefined;

  readonly #host: StreamHost;
  readonly #onEvent: HubListener;
  readonly #consumer: ContextConsumer<typeof streamHubContext, StreamHost>;
  /** What `connect()`/`disconnect()` asked for; `undefined` follows `auto-connect`. */
  #wanted: boolean | undefined;
  #ownHub: { key: string; hub: StreamHub } | undefined;
  #attached: { hub: StreamHub; stage: string; detach: () => void } | undefined;
  #countdown: ReturnType<typeof setInterval> | undefined;
  #waitingForProvider = false;

  /** `onEvent` gets each event that concerns the host (its stage's messages, the connection's), after the controller applied it. */
  constructor(host: StreamHost, onEvent: HubListener = () => {}) {
    this.#host = host;
    this.#onEvent = onEvent;
    this.store = new StageStore((stage, change) => this.text.push(stage, change));
    this.text = new TextRenderer();
    // Added before this controller, so the provided hub is known when hostConnected runs.
    this.#consumer = new ContextConsumer(host, { context: streamHubContext, subscribe: true, callback: () => this.#reconcile() });
    host.addController(this);
  }

  /** Seconds until the pending retry, rounded up. */
  get retryInSeconds(): number | undefined {
    return this.retryAt === undefined ? undefined : Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000));
  }

  /** Connects (or retries at once when the stream is closed or waiting to retry). */
  connect(): void {
    this.#wanted = true;
    this.#reconcile();
    this.#attached?.hub.retry();
  }

  disconnect(): void {
    this.#wanted = false;
    this.#reconcile();
  }

  hostConnected(): void {
    this.#reconcile();
  }

  hostDisconnected(): void {
    this.#reconcile();
  }

  hostUpdate(): void {
    this.#reconcile();
  }

  /** Attaches to the stream the host's properties call for, if it is not the current one. */
  #reconcile(): void {
    const host = this.#host;
    const want = host.isConnected && (this.#wanted ?? host.autoConnect);
    const provided = this.#consumer.value;
    // Inside a provider, always use its connection, even before the provider is defined or configured.
    const inProvider = provided !== undefined || (host.isConnected && host.closest(PROVIDER_TAG) !== null);
    if (inProvider && provided === undefined) this.#waitForProvider();
    const hub = !want ? undefined : inProvider ? provided : this.#ownHubFor(host);
    const stage = host.stageName;
    if (this.#attached?.hub === hub && this.#attached?.stage === stage) return;
    this.#detach();
    if (hub) this.#attach(hub, stage);
  }

  #ownHubFor(host: StreamHost): StreamHub | undefined {
    const key = JSON.stringify([host.projectId, host.stageName, host.baseUrl, host.token !== undefined, host.ownConnection, host.transport, host.types, host.stages]);
    if (this.#ownHub?.key === key) return this.#ownHub.hub;
    this.#ownHub = undefined;
    this.configError = undefined;
    try {
      const client = createSSEClient(host.projectId, host.stageName || null, {
        baseUrl: host.baseUrl,
        token: liveToken(() => host.token),
        shared: !host.ownConnection,
        transport: host.transport,
        ...(listOf(host.types) && { types: listOf(host.types) }),
        ...(listOf(host.stages) && { stages: listOf(host.stages) }),
      });
      this.#ownHub = { key, hub: new StreamHub(client) };
      return this.#ownHub.hub;
    } catch (error) {
      this.configError = error instanceof Error ? error.message : String(error);
      return undefined;
    }
  }

  /** A provider element that is not upgraded yet cannot answer the context request: ask again once it is. */
  #waitForProvider(): void {
    if (this.#waitingForProvider || customElements.get(PROVIDER_TAG)) return;
    this.#waitingForProvider = true;
    void customElements.whenDefined(PROVIDER_TAG).then(() => {
      this.#waitingForProvider = false;
      if (!this.#host.isConnected || this.#consumer.value !== undefined) return;
      this.#consumer.hostDisconnected();
      this.#consumer.hostConnected();
    });
  }

  #attach(hub: StreamHub, stage: string): void {
    this.store.restore(hub.snapshot, stage || undefined);
    this.state = hub.state;
    this.retryAt = hub.retryAt;
    this.lastDisconnect = hub.lastDisconnect;
    const detach = hub.attach((event) => this.#receive(event, hub, stage));
    this.#attached = { hub, stage, detach };
    this.#syncCountdown();
    this.#host.requestUpdate();
  }

  #detach(): void {
    const attached = this.#attached;
    if (!attached) return;
    this.#attached = undefined;
    attached.detach();
    const wasActive = this.state !== ConnectionState.closed;
    this.state = ConnectionState.closed;
    this.retryAt = undefined;
    this.#syncCountdown();
    if (wasActive) this.#dispatch('disconnected', { reason: DisconnectReason.disconnect, willReconnect: false } satisfies DisconnectedEvent);
    this.#host.requestUpdate();
  }

  #receive(event: HubEvent, hub: StreamHub, stage: string): void {
    if (isStageMessageEvent(event) && stage && event.data.stage !== stage) return; // another stage's message
    const changed = this.#apply(event, hub, stage);
    this.#onEvent(event);
    if (changed) this.#host.requestUpdate();
  }

  /** Applies an event to the state the host renders; true when the host must render again. */
  #apply(event: HubEvent, hub: StreamHub, stage: string): boolean {
    switch (event.type) {
      case 'state':
        this.state = event.data.state;
        if (this.state === ConnectionState.open) this.lastDisconnect = undefined;
        if (this.state !== ConnectionState.reconnecting) this.retryAt = undefined;
        this.#syncCountdown();
        return true;
      case 'reconnecting':
        this.retryAt = Date.now() + event.data.delayMs;
        this.#syncCountdown();
        return true;
      case 'disconnected':
        this.lastDisconnect = event.data;
        this.#dispatch('disconnected', event.data);
        return true;
      case 'connected':
        this.#dispatch('connected', event.data);
        return true;
      // The hub has already folded a reset's or a snapshot's stages into its own (prototype-less) snapshot, before
      // handing the event on: draw from that, as #attach does, rather than convert the message a second time.
      case 'reset':
        this.store.restore(hub.snapshot, stage || undefined);
        this.#dispatch('reset', event.data);
        return true;
      case 'snapshot':
        // The history at once, in this one update: no `token`/`done`/... events for it, one `snapshot` instead.
        this.store.restore(hub.snapshot, stage || undefined);
        this.#dispatch('snapshot', event.data);
        return true;
      case 'token_expired': // the client fetches a fresh token and resumes at once: nothing to show
      case 'message': // every event again, wrapped
        return false;
      default: {
        const message = event.data;
        const changed = this.store.apply(message);
        this.#dispatch(message.type, message);
        return changed; // false for a plain token: the TextRenderer shows it
      }
    }
  }

  #dispatch(type: string, detail: unknown): void {
    // Not bubbling, not composed: the names are generic (`error`, `progress`) and must not reach ancestors' handlers.
    this.#host.dispatchEvent(new CustomEvent(type, { detail, bubbles: false, composed: false }));
  }

  /** A one-second tick that re-renders the "reconnecting in N s" badge; runs only while reconnecting. */
  #syncCountdown(): void {
    const needed = this.state === ConnectionState.reconnecting && this.retryAt !== undefined && this.#host.isConnected;
    if (needed && this.#countdown === undefined) this.#countdown = setInterval(() => this.#host.requestUpdate(), 1000);
    if (!needed && this.#countdown !== undefined) {
      clearInterval(this.#countdown);
      this.#countdown = undefined;
    }
  }
}
