/**
 * One connection per browser: where the kit's clients of this page send their subscriptions.
 * - `worker`: a SharedWorker holds the connection for every tab of the origin (Chromium, Firefox, Safari 16+).
 * - `leader`: without SharedWorker, the tabs elect a leader with the Web Locks API; it holds the connection and
 *   relays over a BroadcastChannel. When it closes or is frozen (it lets go on `freeze`), another tab takes over at
 *   once, and when it hangs (its heartbeat stops for 5 s), another takes its lock; every tab resumes from its own cursor.
 * - `page`: neither exists (or the page is on `file://`): one connection for this page.
 * `auto` (the default) picks the first that works. {@link configureSharing} changes it, or turns sharing off.
 */
import { MuxCore, type MuxHandle, type MuxSpec } from './mux-core.js';
import { RelayHost, RelayTab, newTabId, type HostMessage, type MuxSubscriber, type TabMessage } from './relay.js';

export type SharingMode = 'auto' | 'worker' | 'leader' | 'page' | 'off';

export interface SharingOptions {
  /** Default `auto`. `off`: every client opens a stream of its own, as before. */
  mode?: SharingMode;
  /**
   * Makes the SharedWorker: for a bundler that needs its own syntax (Vite: `import W from 'ai-story-sse/shared-worker?sharedworker'`
   * then `() => new W({ name: 'ai-story-sse' })`). Default: `new SharedWorker(new URL('./worker.js', import.meta.url))`,
   * the worker module next to this one (in the single-file build: `sse-kit-worker.js` next to `sse-kit.js`).
   */
  createWorker?: () => SharedWorker;
}

/** The page's end of the shared connection. */
export interface MuxPort {
  readonly mode: Exclude<SharingMode, 'auto' | 'off'>;
  add(baseUrl: string, spec: MuxSpec, subscriber: MuxSubscriber): MuxHandle;
}

let options: SharingOptions = {};
let port: MuxPort | undefined;

/** Sets how this page shares its connection. Call it before the first client connects. */
export function configureSharing(next: SharingOptions): void {
  options = { ...options, ...next };
  if (port) console.warn('ai-story-sse: configureSharing() was called after a client connected; it applies to this page after a reload.');
}

/** The mode clients of this page use: `off` when sharing is off or impossible here (no `window`). */
export function sharingMode(): SharingMode {
  if (options.mode === 'off' || typeof window === 'undefined') return 'off';
  return port?.mode ?? options.mode ?? 'auto';
}

/** The port of this page (made on first use), or undefined when sharing is off. */
export function sharedPort(): MuxPort | undefined {
  if (sharingMode() === 'off') return undefined;
  return (port ??= choosePort(options.mode ?? 'auto'));
}

/** `baseUrl` made absolute (against the page) without a trailing slash: the key of a connection. */
export function absoluteBase(baseUrl: string): string {
  const url = new URL(baseUrl || '/', globalThis.location?.href);
  return (url.origin + url.pathname).replace(/\/+$/, '');
}

function choosePort(mode: SharingMode): MuxPort {
  if (mode === 'auto' || mode === 'worker') {
    try {
      if (typeof SharedWorker === 'function' || options.createWorker) return new WorkerPort();
    } catch {
      // file:// pages, a CSP without worker-src: fall through
    }
  }
  if (mode === 'auto' || mode === 'worker' || mode === 'leader') {
    try {
      if (hasLocks() && typeof BroadcastChannel === 'function') return new LeaderPort();
    } catch {
      // an opaque origin has no locks
    }
  }
  return new PagePort();
}

interface Locks {
  request(name: string, options: { steal?: boolean; signal?: AbortSignal }, callback: () => Promise<unknown>): Promise<unknown>;
  request(name: string, callback: () => Promise<unknown>): Promise<unknown>;
}

function locks(): Locks | undefined {
  return (globalThis.navigator as { locks?: Locks } | undefined)?.locks;
}

function hasLocks(): boolean {
  return locks() !== undefined;
}

/** Holds `ai-story-sse:tab:<id>` while the page lives, so the host learns when it goes. Resolves once held. */
function holdTabLock(tab: string): Promise<void> {
  const lockManager = locks();
  if (!lockManager) return Promise.resolve();
  return new Promise<void>((held) => {
    void lockManager
      .request(`ai-story-sse:tab:${tab}`, () => {
        held();
        return new Promise<never>(() => {});
      })
      .catch(() => held());
  });
}

/** One connection per server for this page only. */
class PagePort implements MuxPort {
  readonly mode = 'page' as const;
  readonly #host = new RelayHost(() => {});

  add(baseUrl: string, spec: MuxSpec, subscriber: MuxSubscriber): MuxHandle {
    return this.#host.core(absoluteBase(baseUrl), spec.transport).add({ ...spec, cursor: subscriber.cursor() }, subscriber);
  }
}

/** A subscription of a port that may move to another port (a worker that failed to start). */
interface Movable {
  baseUrl: string;
  spec: MuxSpec;
  subscriber: MuxSubscriber;
  handle: MuxHandle;
}

/** The SharedWorker's end in this page. */
class WorkerPort implements MuxPort {
  readonly mode = 'worker' as const;
  readonly #worker: SharedWorker;
  readonly #tab: RelayTab;
  readonly #queue: TabMessage[] = [];
  readonly #entries = new Set<Movable>();
  #ready = false;
  #fallback: MuxPort | undefined;

  constructor() {
    this.#worker = options.createWorker?.() ?? new SharedWorker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'ai-story-sse' });
    this.#tab = new RelayTab(newTabId(), (message) => this.#post(message));
    this.#worker.port.onmessage = (event: MessageEvent<HostMessage>) => this.#tab.receive(event.data);
    // The worker script did not load (a 404, a CSP): the tabs elect a leader instead.
    this.#worker.addEventListener('error', () => this.#fallBack());
    this.#worker.port.start();
    void holdTabLock(this.#tab.tab).then(() => {
      this.#ready = true;
      this.#worker.port.postMessage({ op: 'hello', tab: this.#tab.tab } satisfies TabMessage);
      for (const message of this.#queue.splice(0)) this.#worker.port.postMessage(message);
    });
    globalThis.addEventListener?.('pagehide', () => this.#worker.port.postMessage({ op: 'bye', tab: this.#tab.tab } satisfies TabMessage));
    // Back from the back-forward cache: the worker dropped this tab on `pagehide`; give it the subscriptions again.
    globalThis.addEventListener?.('pageshow', (event) => {
      if ((event as PageTransitionEvent).persisted) this.#tab.redirect((message) => this.#post(message));
    });
  }

  add(baseUrl: string, spec: MuxSpec, subscriber: MuxSubscriber): MuxHandle {
    const base = absoluteBase(baseUrl);
    const entry: Movable = { baseUrl: base, spec, subscriber, handle: { remove() {} } };
    entry.handle = this.#fallback ? this.#fallback.add(base, spec, subscriber) : this.#tab.add(base, spec, subscriber);
    this.#entries.add(entry);
    return {
      remove: () => {
        this.#entries.delete(entry);
        entry.handle.remove();
      },
    };
  }

  #post(message: TabMessage): void {
    if (this.#fallback) return;
    if (this.#ready) this.#worker.port.postMessage(message);
    else this.#queue.push(message);
  }

  #fallBack(): void {
    if (this.#fallback) return;
    console.warn('ai-story-sse: the shared worker failed to start; the tabs share a connection through a leader tab instead.');
    this.#tab.take();
    this.#fallback = hasLocks() && typeof BroadcastChannel === 'function' ? new LeaderPort() : new PagePort();
    for (const entry of this.#entries) entry.handle = this.#fallback.add(entry.baseUrl, entry.spec, entry.subscriber);
  }
}

/** Between tabs on the BroadcastChannel. */
type ChannelMessage =
  | { op: 'beat'; leader: string }
  | { op: 'to-leader'; leader: string; message: TabMessage }
  | { op: 'to-tab'; message: HostMessage };

const LEADER_LOCK = 'ai-story-sse:leader';
const BEAT_MS = 1000;
/**
 * A leader silent this long is taken over: a tab that hangs holds its lock but runs nothing. (A tab the browser
 * freezes says so first, with the `freeze` event, and lets go at once.) Background tabs run timers at most once a
 * second, and a busy machine delays them more: a leader taken over while alive costs every tab a resubscription.
 */
const LEADER_SILENCE_MS = 5000;

/** Leader election with Web Locks, relayed over a BroadcastChannel. */
class LeaderPort implements MuxPort {
  readonly mode = 'leader' as const;
  readonly #id = newTabId();
  readonly #channel = new BroadcastChannel('ai-story-sse');
  readonly #tab: RelayTab;
  #host: RelayHost | undefined;
  #leader: string | undefined;
  #lastBeat = Date.now();
  #beat: ReturnType<typeof setInterval> | undefined;
  #release: (() => void) | undefined;
  #waiting: AbortController | undefined;
  #closing = false;
  /** Resolves once this tab holds its tab lock: only then may a leader watch it. */
  readonly #held: Promise<void>;

  constructor() {
    this.#tab = new RelayTab(this.#id, () => {});
    this.#channel.onmessage = (event: MessageEvent<ChannelMessage>) => this.#receive(event.data);
    this.#held = holdTabLock(this.#id);
    this.#campaign(false);
    setInterval(() => this.#check(), 500);
    globalThis.addEventListener?.('pagehide', () => {
      this.#closing = true;
      if (this.#leader && !this.#host) this.#channel.postMessage({ op: 'to-leader', leader: this.#leader, message: { op: 'bye', tab: this.#id } } satisfies ChannelMessage);
      this.#release?.();
    });
    // The browser freezes a background tab (Page Lifecycle): a frozen leader relays nothing, so it lets go first.
    globalThis.document?.addEventListener('freeze', () => {
      this.#closing = true;
      this.#release?.();
    });
    globalThis.document?.addEventListener('resume', () => {
      this.#closing = false;
      if (!this.#host && !this.#waiting) this.#campaign(false);
    });
    globalThis.addEventListener?.('pageshow', (event) => {
      if (!(event as PageTransitionEvent).persisted) return;
      this.#closing = false;
      this.#leader = undefined;
      this.#campaign(false);
    });
  }

  add(baseUrl: string, spec: MuxSpec, subscriber: MuxSubscriber): MuxHandle {
    return this.#tab.add(absoluteBase(baseUrl), spec, subscriber);
  }

  /** Queues for the leader's lock (or takes it from a silent leader). */
  #campaign(steal: boolean): void {
    const lockManager = locks()!;
    this.#waiting?.abort();
    const waiting = steal ? undefined : new AbortController();
    this.#waiting = waiting;
    lockManager
      .request(LEADER_LOCK, steal ? { steal: true } : { signal: waiting!.signal }, () => {
        this.#lead();
        return new Promise<void>((release) => (this.#release = release));
      })
      .then(
        () => {
          // Released: another tab leads now (or this page goes); queue again to take over when it goes.
          this.#stepDown();
          if (!this.#closing) this.#campaign(false);
        },
        (error: unknown) => {
          // Stolen by a tab that found us silent, or our own wait given up for a steal: queue again.
          if ((error as { name?: string })?.name === 'AbortError' && waiting?.signal.aborted) return;
          this.#stepDown();
          this.#campaign(false);
        },
      );
  }

  #lead(): void {
    this.#waiting = undefined;
    const host = new RelayHost((message) => {
      if (message.tab === this.#id) this.#tab.receive(message);
      else this.#channel.postMessage({ op: 'to-tab', message } satisfies ChannelMessage);
    });
    this.#host = host;
    this.#leader = this.#id;
    this.#tab.redirect((message) => host.receive(message));
    const beat = () => this.#channel.postMessage({ op: 'beat', leader: this.#id } satisfies ChannelMessage);
    beat();
    this.#beat = setInterval(beat, BEAT_MS);
  }

  #stepDown(): void {
    clearInterval(this.#beat);
    this.#beat = undefined;
    this.#release = undefined;
    this.#host?.close();
    this.#host = undefined;
    if (this.#leader === this.#id) this.#leader = undefined;
  }

  #receive(data: ChannelMessage): void {
    switch (data.op) {
      case 'beat':
        this.#lastBeat = Date.now();
        if (data.leader === this.#leader) return;
        // Another tab leads now (a new leader, or one that took over from us while we were frozen).
        if (this.#host) this.#release?.();
        this.#leader = data.leader;
        void this.#held.then(() => {
          if (this.#leader !== data.leader) return;
          this.#tab.redirect((message) => this.#channel.postMessage({ op: 'to-leader', leader: data.leader, message } satisfies ChannelMessage));
        });
        return;
      case 'to-leader': {
        const host = this.#host;
        if (!host || data.leader !== this.#id) return;
        const message = data.message;
        if (message.op === 'hello') this.#watch(message.tab);
        host.receive(message);
        return;
      }
      case 'to-tab':
        this.#tab.receive(data.message);
        return;
    }
  }

  /** A follower that goes releases its tab lock: then its subscriptions go. */
  #watch(tab: string): void {
    const host = this.#host;
    void locks()?.request(`ai-story-sse:tab:${tab}`, async () => {
      host?.dropTab(tab);
    });
  }

  #check(): void {
    if (this.#host) return;
    if (Date.now() - this.#lastBeat > LEADER_SILENCE_MS) {
      this.#lastBeat = Date.now();
      this.#campaign(true);
    }
  }
}
