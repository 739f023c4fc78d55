import type { Transport } from '../../shared/mux-core.js';
import { ContextProvider } from '@lit/context';
import { LitElement, html, type TemplateResult } from 'lit';
import { property } from 'lit/decorators.js';
import { booleanAttribute } from '../../boolean-attribute.js';
import { streamHubContext } from '../../context.js';
import { createSSEClient, type SSEClient } from '../../sse-client.js';
import { StreamHub } from '../../stream-hub.js';
import { liveToken, type TokenSource } from '../../token-source.js';
import styles from './sse-stream-provider.styles.js';

/**
 * Browsers allow six HTTP/1.1 connections per origin across all tabs, so a page with one viewer per stage
 * would starve. The provider owns one all-stages `SSEClient` and provides it through `@lit/context`; every
 * viewer inside uses it (filtered by the viewer's `stage-name`) instead of opening its own. The connection
 * is open while at least one viewer inside is connected (`auto-connect` or `connect()`), and a viewer that
 * connects late draws the current state at once. Changing `project-id`, `base-url` or whether a `token`
 * is set moves the viewers to a new connection.
 *
 * @summary Shares one all-stages connection with every `<sse-stream-viewer>` inside it.
 * @tag sse-stream-provider
 *
 * @slot - The viewers, and any other content.
 */
export class SseStreamProvider extends LitElement {
  static override styles = styles;

  /** The project whose stages the viewers inside show. Default `''` (no connection). */
  @property({ attribute: 'project-id', reflect: true }) projectId = '';

  /** Origin (and path prefix) of the server; empty means this page's origin. Default `''`. */
  @property({ attribute: 'base-url' }) baseUrl = '';

  /** Bearer token, or a function returning one, asked before every connection attempt. Default none. */
  @property({ attribute: false }) token: TokenSource | undefined = undefined;

  /**
   * Open a connection of its own instead of subscribing on the browser's shared one (one connection for every
   * client of every tab, see `configureSharing`). Default false.
   */
  @property({ attribute: 'own-connection', type: Boolean, converter: booleanAttribute }) ownConnection = false;

  /**
   * How the connection reaches the server: `sse` (default), `websocket` (one WebSocket, for networks that mangle
   * long HTTP responses) or `auto` (the WebSocket first, SSE when it cannot open).
   */
  @property() transport: Transport = 'sse';

  readonly #provider = new ContextProvider(this, { context: streamHubContext, initialValue: undefined });
  #key: string | undefined;

  /** The shared connection, or undefined without a valid `project-id`. */
  get client(): SSEClient | undefined {
    return this.#provider.value?.client;
  }

  override connectedCallback(): void {
    // Provide the connection before the viewers inside ask for it (they ask when they connect, right after this).
    this.#syncHub();
    super.connectedCallback();
  }

  protected override willUpdate(): void {
    this.#syncHub();
  }

  protected override render(): TemplateResult {
    return html`<slot></slot>`;
  }

  #syncHub(): void {
    const key = JSON.stringify([this.projectId, this.baseUrl, this.token !== undefined, this.ownConnection, this.transport]);
    if (key === this.#key) return;
    this.#key = key;
    let hub: StreamHub | undefined;
    if (this.projectId) {
      try {
        const token = liveToken(() => this.token);
        hub = new StreamHub(createSSEClient(this.projectId, null, { baseUrl: this.baseUrl, token, shared: !this.ownConnection, transport: this.transport }));
      } catch (error) {
        console.error(error);
      }
    }
    // Subscribed viewers move to the new hub; the old one disconnects when its last viewer leaves.
    this.#provider.setValue(hub);
  }
}
