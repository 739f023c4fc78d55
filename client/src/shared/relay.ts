/**
 * The messages between a tab and the place that holds the shared connection (a SharedWorker, or the leader tab),
 * and the two ends that speak them: {@link RelayHost} runs the connections ({@link MuxCore}, one per server) for
 * every tab; {@link RelayTab} is a tab's side, which keeps its own subscriptions and their cursors so that it can
 * give them to a new host (a new leader) and resume with no gap.
 */
import { MuxCore, type MuxHandle, type MuxSink, type MuxSpec, type MuxStatus, type Transport } from './mux-core.js';

/** What a tab sends. */
export type TabMessage =
  | { op: 'hello'; tab: string }
  | { op: 'add'; tab: string; key: number; baseUrl: string; spec: MuxSpec }
  | { op: 'remove'; tab: string; key: number }
  | { op: 'token'; tab: string; nonce: number; token: string | null; error?: string }
  | { op: 'bye'; tab: string };

/** What the host sends to one tab. */
export type HostMessage =
  | { op: 'status'; tab: string; key: number; status: MuxStatus }
  | { op: 'event'; tab: string; key: number; type: string; id: string | undefined; data: unknown }
  | { op: 'token?'; tab: string; key: number; nonce: number };

/** A subscriber as a tab holds it: a sink, and its cursor now (the last id it took). */
export interface MuxSubscriber extends MuxSink {
  cursor(): string;
}

/** The host: the connections, shared by every tab that talks to it. */
export class RelayHost {
  readonly #cores = new Map<string, MuxCore>();
  readonly #handles = new Map<string, MuxHandle>();
  readonly #pendingTokens = new Map<number, { tab: string; resolve: (token: string | null) => void; reject: (error: Error) => void }>();
  readonly #send: (message: HostMessage) => void;
  #nonce = 0;

  /** `send` delivers a message to the tab it names. */
  constructor(send: (message: HostMessage) => void) {
    this.#send = send;
  }

  /** The connection to `baseUrl` over `transport` (made on first use): also what a leader tab's own clients use directly. */
  core(baseUrl: string, transport: Transport = 'sse'): MuxCore {
    const key = `${transport} ${baseUrl}`;
    let core = this.#cores.get(key);
    if (!core) this.#cores.set(key, (core = new MuxCore(baseUrl, { transport })));
    return core;
  }

  /** Subscriptions held for tabs, in all. */
  get size(): number {
    return this.#handles.size;
  }

  receive(message: TabMessage): void {
    switch (message.op) {
      case 'add': {
        const { tab, key } = message;
        const handleKey = `${tab}/${key}`;
        this.#handles.get(handleKey)?.remove();
        const sink: MuxSink = {
          token: () => this.#askToken(tab, key),
          status: (status) => this.#send({ op: 'status', tab, key, status }),
          event: (type, id, data) => this.#send({ op: 'event', tab, key, type, id, data }),
        };
        this.#handles.set(handleKey, this.core(message.baseUrl, message.spec.transport).add(message.spec, sink));
        break;
      }
      case 'remove':
        this.#drop(`${message.tab}/${message.key}`);
        break;
      case 'token': {
        const pending = this.#pendingTokens.get(message.nonce);
        this.#pendingTokens.delete(message.nonce);
        if (message.error !== undefined) pending?.reject(new Error(message.error));
        else pending?.resolve(message.token);
        break;
      }
      case 'bye':
        this.dropTab(message.tab);
        break;
    }
  }

  /** A tab closed: its subscriptions go (the connection stays while other tabs need it). */
  dropTab(tab: string): void {
    for (const key of [...this.#handles.keys()]) if (key.startsWith(`${tab}/`)) this.#drop(key);
    // A token asked of it never comes: its subscribes must not wait for it (the others' go in the same request).
    this.#refuseTokens((pending) => pending.tab === tab);
  }

  /** Ends every subscription (a leader stepping down). */
  close(): void {
    for (const key of [...this.#handles.keys()]) this.#drop(key);
    this.#refuseTokens(() => true);
  }

  #refuseTokens(which: (pending: { tab: string }) => boolean): void {
    for (const [nonce, pending] of this.#pendingTokens) {
      if (!which(pending)) continue;
      this.#pendingTokens.delete(nonce);
      pending.reject(new Error('the tab that holds this subscription is gone'));
    }
  }

  #drop(handleKey: string): void {
    this.#handles.get(handleKey)?.remove();
    this.#handles.delete(handleKey);
  }

  /** Each subscription is authorised with its own token: the tab that holds it is asked, each time. */
  #askToken(tab: string, key: number): Promise<string | null> {
    const nonce = ++this.#nonce;
    return new Promise((resolve, reject) => {
      this.#pendingTokens.set(nonce, { tab, resolve, reject });
      this.#send({ op: 'token?', tab, key, nonce });
    });
  }
}

/** A tab's side: its subscriptions by key, sent to whichever host it talks to now. */
export class RelayTab {
  readonly tab: string;
  readonly #subs = new Map<number, { baseUrl: string; spec: MuxSpec; subscriber: MuxSubscriber }>();
  #send: (message: TabMessage) => void;
  #key = 0;

  constructor(tab: string, send: (message: TabMessage) => void) {
    this.tab = tab;
    this.#send = send;
  }

  add(baseUrl: string, spec: MuxSpec, subscriber: MuxSubscriber): MuxHandle {
    const key = ++this.#key;
    this.#subs.set(key, { baseUrl, spec, subscriber });
    this.#send({ op: 'add', tab: this.tab, key, baseUrl, spec: { ...spec, cursor: subscriber.cursor() } });
    return {
      remove: () => {
        if (!this.#subs.delete(key)) return;
        this.#send({ op: 'remove', tab: this.tab, key });
      },
    };
  }

  /** Talks to another host from now on, and hands it every subscription, each resuming from its own cursor. */
  redirect(send: (message: TabMessage) => void): void {
    this.#send = send;
    send({ op: 'hello', tab: this.tab });
    for (const [key, { baseUrl, spec, subscriber }] of this.#subs) {
      this.#send({ op: 'add', tab: this.tab, key, baseUrl, spec: { ...spec, cursor: subscriber.cursor() } });
    }
  }

  /** Every subscription, for a tab that moves them elsewhere (see SharedWorker failure). */
  take(): Array<{ baseUrl: string; spec: MuxSpec; subscriber: MuxSubscriber }> {
    const all = [...this.#subs.values()];
    this.#subs.clear();
    return all;
  }

  receive(message: HostMessage): void {
    if (message.tab !== this.tab) return;
    const entry = this.#subs.get(message.key);
    if (!entry) return;
    const { subscriber } = entry;
    switch (message.op) {
      case 'status':
        subscriber.status(message.status);
        break;
      case 'event':
        subscriber.event(message.type, message.id, message.data);
        break;
      case 'token?':
        subscriber.token().then(
          (token) => this.#send({ op: 'token', tab: this.tab, nonce: message.nonce, token: token ?? null }),
          (error: unknown) => this.#send({ op: 'token', tab: this.tab, nonce: message.nonce, token: null, error: String(error) }),
        );
        break;
    }
  }
}

/** A random id for a tab. */
export function newTabId(): string {
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}
