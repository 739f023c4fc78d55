/**
 * A broker's listeners, counted by channel and by pattern: the broker subscribes for the first listener of a name
 * and unsubscribes after the last. Both brokers keep theirs in one of these; what subscribing means is theirs
 * (a SUBSCRIBE on Redis, a glob in process), behind {@link SubscriptionTransport}.
 */
import type { MessageListener, Unsubscribe } from './broker.js';
import { isValidId, projectPattern } from '../channels.js';

/** What subscribing means for the broker that owns the table. */
export interface SubscriptionTransport {
  /** The first listener of `name` (a channel, or a glob pattern when `pattern`) joined: subscribe it. Settles once it is active. */
  subscribe(name: string, pattern: boolean): Promise<void>;
  /** The last listener of `name` left: unsubscribe it. Settles once that is done. */
  unsubscribe(name: string, pattern: boolean): Promise<void>;
}

export interface SubscriptionTableOptions {
  /** The broker's channel prefix: its project patterns share one subscription (see SubscriptionTable.subscribe). */
  prefix: string;
  transport: SubscriptionTransport;
  /** Called when a listener throws; the other listeners still get the message. */
  onListenerError: (error: unknown) => void;
}

interface Subscription {
  readonly name: string;
  readonly pattern: boolean;
  /** One entry per `subscribe()` call, so one function subscribed twice is called twice. */
  readonly listeners: Set<MessageListener>;
  /** Settles when the transport has subscribed. */
  readonly active: Promise<void>;
}

/** One `subscribe()` call's place among the listeners of a subscription. */
interface Membership {
  /** Settles when the transport has subscribed the subscription the listener belongs to. */
  readonly active: Promise<void>;
  /** Removes the listener; unsubscribes (and resolves once that is done) when it was the last. */
  leave(): Promise<void>;
}

export class SubscriptionTable {
  constructor(options: SubscriptionTableOptions) {
    this.#prefix = options.prefix;
    this.#transport = options.transport;
    this.#onListenerError = options.onListenerError;
  }

  /**
   * Adds a listener; resolves once its subscription is active, so nothing published afterwards is missed.
   *
   * A project pattern of the table's prefix (exactly `projectPattern(prefix, id)` for a valid id) gets no
   * subscription of its own: all of them share one, `{prefix}:project:*:stage:*`, and the table hands each message
   * to the listeners of its project (see #joinProject). Any other channel or pattern is subscribed as given.
   */
  async subscribe(channelOrPattern: string, listener: MessageListener, pattern = false): Promise<Unsubscribe> {
    // One entry per call, so one function subscribed twice is called twice.
    const entry: MessageListener = (payload, channel) => listener(payload, channel);
    const projectId = pattern ? projectOfPattern(this.#prefix, channelOrPattern) : undefined;
    const membership = projectId === undefined ? this.#join(channelOrPattern, pattern, entry) : this.#joinProject(projectId, entry);
    this.#live.add(entry);
    try {
      await membership.active;
    } catch (error) {
      this.#live.delete(entry);
      void membership.leave();
      throw error;
    }
    let left = false;
    return async () => {
      if (left) return;
      left = true;
      this.#live.delete(entry);
      await membership.leave();
    };
  }

  /** How many channels and patterns are subscribed. */
  get size(): number {
    return this.#subscriptions.size;
  }

  /** Every channel and pattern subscribed, e.g. to subscribe them again on a new connection. */
  *subscriptions(): IterableIterator<{ readonly name: string; readonly pattern: boolean }> {
    for (const { name, pattern } of this.#subscriptions.values()) yield { name, pattern };
  }

  /**
   * The listeners a message on `channel` reaches through the subscription of `name`, as a new array: a listener
   * may subscribe or leave while they are called. The shared project pattern's are those of the channel's project.
   */
  listeners(name: string, pattern: boolean, channel: string): MessageListener[] {
    const subscription = this.#subscriptions.get(subscriptionKey(name, pattern));
    if (!subscription) return [];
    const listeners: MessageListener[] = [];
    for (const listener of subscription.listeners) {
      if (listener === this.#route) listeners.push(...this.#projectListenersOf(channel));
      else listeners.push(listener);
    }
    return listeners;
  }

  /** Calls each of `listeners` that is still subscribed; one that throws does not keep the message from the others. */
  deliver(listeners: readonly MessageListener[], payload: string, channel: string): void {
    for (const listener of listeners) {
      // A listener that left after the message came (even during this loop) does not hear it.
      if (!this.#live.has(listener)) continue;
      try {
        listener(payload, channel);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  }

  /** A message the transport received on `channel` for the subscription of `name`: delivers it now. */
  dispatch(name: string, pattern: boolean, payload: string, channel: string): void {
    this.deliver(this.listeners(name, pattern, channel), payload, channel);
  }

  /** Forgets every listener, without unsubscribing: for the broker's close(). */
  clear(): void {
    this.#subscriptions.clear();
    this.#projects.clear();
    this.#live.clear();
    this.#router = undefined;
  }

  readonly #prefix: string;
  readonly #transport: SubscriptionTransport;
  readonly #onListenerError: (error: unknown) => void;
  readonly #subscriptions = new Map<string, Subscription>();
  /** Project id -> the listeners of its project pattern, reached through the one shared pattern (see #joinProject). */
  readonly #projects = new Map<string, Set<MessageListener>>();
  /** Every entry subscribed and not left yet. */
  readonly #live = new Set<MessageListener>();
  /** #route's place on the shared pattern's subscription, while any project has a listener. */
  #router: Membership | undefined;

  /** Adds `entry` to the subscription of `name`, creating it (and subscribing it) for the first one. */
  #join(name: string, pattern: boolean, entry: MessageListener): Membership {
    const key = subscriptionKey(name, pattern);
    let subscription = this.#subscriptions.get(key);
    if (!subscription) {
      subscription = { name, pattern, listeners: new Set(), active: this.#transport.subscribe(name, pattern) };
      this.#subscriptions.set(key, subscription);
    }
    const held = subscription;
    held.listeners.add(entry);
    return { active: held.active, leave: () => this.#leave(key, held, entry) };
  }

  async #leave(key: string, subscription: Subscription, entry: MessageListener): Promise<void> {
    subscription.listeners.delete(entry);
    if (subscription.listeners.size > 0 || this.#subscriptions.get(key) !== subscription) return;
    this.#subscriptions.delete(key);
    await this.#transport.unsubscribe(subscription.name, subscription.pattern);
  }

  /**
   * A listener of one project's pattern. Redis matches every PUBLISH against every pattern of every client, so
   * a pattern per watched project made each PUBLISH cost O(watched projects), and anyone may open public
   * project-wide streams to made-up ids. Instead, all projects share one subscription, `{prefix}:project:*:stage:*`,
   * held by #route while any project has a listener: each PUBLISH costs Redis one pattern per process.
   * The subscription is an ordinary one, so its acknowledgement (shared by every listener that joins while it is
   * in flight), its restoration on reconnect, the cluster's subscriber moves and the unsubscribe after the last
   * listener are those of any subscription.
   *
   * Trade-off: while any project-wide stream is open, this process receives every message of every project
   * under its prefix, and drops those of unwatched projects after parsing the channel name. A stage stream
   * (exact channel) of a watched project still has its own subscription, so its messages arrive twice, once for
   * each kind of listener, as they did with a pattern per project.
   */
  #joinProject(projectId: string, entry: MessageListener): Membership {
    let listeners = this.#projects.get(projectId);
    if (!listeners) this.#projects.set(projectId, (listeners = new Set()));
    listeners.add(entry);
    const router = (this.#router ??= this.#join(allProjectsPattern(this.#prefix), true, this.#route));
    const held = listeners;
    return {
      active: router.active,
      leave: async () => {
        held.delete(entry);
        if (held.size === 0 && this.#projects.get(projectId) === held) this.#projects.delete(projectId);
        if (this.#projects.size > 0 || this.#router !== router) return;
        this.#router = undefined;
        await router.leave();
      },
    };
  }

  /**
   * The shared pattern's place among its subscription's listeners: a marker, never called, that listeners()
   * replaces with the listeners of the channel's project (it is never live, so deliver() would skip it anyway).
   */
  readonly #route: MessageListener = () => {};

  #projectListenersOf(channel: string): MessageListener[] {
    const projectId = projectOfChannel(this.#prefix, channel);
    const listeners = projectId === undefined ? undefined : this.#projects.get(projectId);
    return listeners ? [...listeners] : [];
  }
}

/** The table's key of a channel or a pattern: the two never collide. */
function subscriptionKey(name: string, pattern: boolean): string {
  return `${pattern ? 'p' : 'c'}:${name}`;
}

/** The one pattern every project pattern of `prefix` is folded into: every stage channel of every project. */
function allProjectsPattern(prefix: string): string {
  return `${prefix}:project:*:stage:*`;
}

/** The project id when `pattern` is exactly `projectPattern(prefix, id)` for a valid id, else undefined. */
function projectOfPattern(prefix: string, pattern: string): string | undefined {
  const head = `${prefix}:project:`;
  const tail = ':stage:*';
  if (!pattern.startsWith(head) || !pattern.endsWith(tail)) return undefined;
  const id = pattern.slice(head.length, pattern.length - tail.length);
  return isValidId(id) && projectPattern(prefix, id) === pattern ? id : undefined;
}

/**
 * The project id of a channel `{prefix}:project:<id>:stage:<rest>`, else undefined. Ids hold no `:`, so the id
 * ends at the first `:` after the head. A channel matches `projectPattern(prefix, id)` exactly when this returns
 * `id`: the same messages reach a project's listeners as with a pattern of its own. The prefix is compared as a
 * string, so channels of another prefix that the shared glob may match are dropped here.
 */
function projectOfChannel(prefix: string, channel: string): string | undefined {
  const head = `${prefix}:project:`;
  if (!channel.startsWith(head)) return undefined;
  const end = channel.indexOf(':', head.length);
  return end > head.length && channel.startsWith(':stage:', end) ? channel.slice(head.length, end) : undefined;
}
