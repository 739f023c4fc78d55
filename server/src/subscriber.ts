/**
 * The reading side for Node programs (the SSE hub has its own): the messages of one stage, or of every
 * stage, of one project. The TypeScript counterpart of the original Python `RedisStreamSubscriber`.
 */
import type { Broker, MessageListener, Unsubscribe } from './broker/broker.js';
import { BrokerClosedError, InvalidArgumentError, SubscriberOverflowError } from './broker/errors.js';
import { RedisBroker } from './broker/redis-broker.js';
import { ID_RULE, checkPrefix, isValidId, projectPattern, stageChannel } from './channels.js';
import { LiveTexts } from './hub/live-texts.js';
import type { StageMessage } from '../../protocol/messages.js';

/**
 * A payload that is not a JSON object with a string `type` (a foreign worker's plain text, say),
 * passed on rather than dropped: `data` is the payload exactly as received.
 */
export interface RawMessage {
  type: 'message';
  data: string;
  /** The channel it came on. */
  channel: string;
}

/**
 * What the subscriber yields: the parsed message JSON, fields untouched (unknown fields and unknown
 * types pass through as they are, so `type` may hold a value the union does not list), or a {@link RawMessage}.
 */
export type SubscriberMessage = StageMessage | RawMessage;

export interface StreamSubscriberOptions {
  /** Matches `^[A-Za-z0-9_-]{1,64}$`. */
  projectId: string;
  /** One stage; omit it for every stage of the project. */
  stage?: string;
  /** The broker to read from; it stays the caller's. Default: a RedisBroker the subscriber opens and closes. */
  broker?: Broker;
  /** Redis of the broker the subscriber opens. Default `redis://127.0.0.1:6379`. Not allowed with `broker`. */
  redisUrl?: string;
  /** Channel prefix of the broker the subscriber opens; follows the id rule. Default `ai_story`. With `broker`, must equal its prefix. */
  prefix?: string;
  /**
   * Unread messages held before the subscriber gives up on its reader: it unsubscribes, and `listen()`
   * throws {@link SubscriberOverflowError} after yielding what it holds. Default 10000.
   */
  maxBuffered?: number;
}

export interface ListenOptions {
  /** End the iteration when no message arrives for this long, in milliseconds. Default: never. */
  timeoutMs?: number;
}

/**
 * Receives one project's messages.
 *
 * @example
 * await using subscriber = new StreamSubscriber({ projectId: 'p1', stage: 'rewrite', redisUrl });
 * await subscriber.ready; // subscribed: everything published from now on arrives
 * for await (const message of subscriber.listen({ timeoutMs: 30_000 })) {
 *   if (message.type === 'token') process.stdout.write(message.content);
 *   if (message.type === 'done' || message.type === 'error') break;
 * }
 */
export class StreamSubscriber {
  readonly projectId: string;
  /** The stage, or null for every stage of the project. */
  readonly stage: string | null;
  /** The channel, or for every stage the pattern, subscribed to. */
  readonly channel: string;
  readonly broker: Broker;

  constructor(options: StreamSubscriberOptions) {
    if (!isValidId(options.projectId)) throw new InvalidArgumentError('projectId', `${JSON.stringify(options.projectId)} must be ${ID_RULE}`);
    if (options.stage !== undefined && !isValidId(options.stage)) {
      throw new InvalidArgumentError('stage', `${JSON.stringify(options.stage)} must be ${ID_RULE} (omit it for every stage)`);
    }
    if (options.prefix !== undefined) checkPrefix(options.prefix);
    if (options.broker && options.redisUrl !== undefined) throw new InvalidArgumentError('redisUrl', 'give either a broker or a redisUrl, not both');
    if (options.broker && options.prefix !== undefined && options.prefix !== options.broker.prefix) {
      throw new InvalidArgumentError('prefix', `${JSON.stringify(options.prefix)} differs from the broker's prefix ${JSON.stringify(options.broker.prefix)}; omit it`);
    }
    const maxBuffered = options.maxBuffered ?? 10_000;
    if (!Number.isSafeInteger(maxBuffered) || maxBuffered < 1) throw new InvalidArgumentError('maxBuffered', `${maxBuffered} must be a positive integer`);
    this.projectId = options.projectId;
    this.stage = options.stage ?? null;
    this.#ownsBroker = !options.broker;
    this.broker = options.broker ?? new RedisBroker({ url: options.redisUrl, prefix: options.prefix });
    this.channel =
      this.stage === null ? projectPattern(this.broker.prefix, this.projectId) : stageChannel(this.broker.prefix, this.projectId, this.stage);
    this.#maxBuffered = maxBuffered;
  }

  /** Resolves once subscribed (subscribing first if need be): nothing published afterwards is missed. */
  get ready(): Promise<void> {
    return this.subscribe();
  }

  /**
   * Subscribes, if not already, and clears a past overflow; resolves once the broker has acknowledged and the
   * stages' texts were read (they give linear tokens their `full_text` back). Idempotent.
   */
  async subscribe(): Promise<void> {
    if (this.#closed) throw new BrokerClosedError('subscriber');
    if (!this.#subscription) {
      this.#failure = undefined;
      const texts = (this.#texts = new LiveTexts(this.broker));
      const started = this.broker.subscribe(this.channel, this.#onMessage, this.stage === null).then(async (unsubscribe) => {
        try {
          // Messages heard while the texts were read wait for them, then go in order.
          const kept = await this.broker.texts(this.projectId, this.stage);
          const waiting = this.#held;
          this.#held = [];
          texts.prime(kept, waiting.filter((m) => !isRaw(m)).map(tracked));
          for (const message of waiting) this.#push(message);
        } catch (error) {
          // The messages held for this subscription's texts go with it, not to the next subscription's.
          if (this.#texts === texts) this.#held = [];
          await unsubscribe().catch(() => {});
          throw error;
        }
        return unsubscribe;
      });
      this.#subscription = started;
      started.catch(() => {
        if (this.#subscription === started) this.#subscription = undefined;
      });
    }
    await this.#subscription;
  }

  /**
   * Yields messages as they arrive, subscribing first if need be. Ends when `timeoutMs` passes without a
   * message, or after `unsubscribe()`/`close()` (once the messages already received are yielded); throws
   * {@link SubscriberOverflowError} after the buffer overflowed. Breaking out of the loop does not unsubscribe.
   */
  async *listen(options: ListenOptions = {}): AsyncGenerator<SubscriberMessage, void, undefined> {
    // After an overflow, only an explicit subscribe() starts over: the reader must learn what it missed.
    if (!this.#subscription && !this.#failure) await this.subscribe();
    for (;;) {
      const message = this.#buffer.shift();
      if (message) {
        yield message;
        continue;
      }
      if (this.#failure) throw this.#failure;
      if (!this.#subscription) return;
      if (!(await this.#nextArrival(options.timeoutMs))) return;
    }
  }

  /** The next message already received, or null; never waits. */
  getMessage(): SubscriberMessage | null {
    return this.#buffer.shift() ?? null;
  }

  /** Stops receiving; messages already received stay readable. `subscribe()` starts again. */
  async unsubscribe(): Promise<void> {
    const subscription = this.#subscription;
    this.#subscription = undefined;
    this.#wake();
    if (!subscription) return;
    const leave = await subscription.catch(() => undefined);
    await leave?.();
  }

  /** Unsubscribes, and closes the broker if the subscriber opened it. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.unsubscribe();
    if (this.#ownsBroker) await this.broker.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  readonly #ownsBroker: boolean;
  readonly #maxBuffered: number;
  readonly #buffer: SubscriberMessage[] = [];
  /** Resolvers of `listen()` loops waiting for the next message. */
  readonly #waiters = new Set<() => void>();
  /** The live subscription, resolving to its unsubscribe function; undefined when not subscribed. */
  #subscription: Promise<Unsubscribe> | undefined;
  #failure: SubscriberOverflowError | undefined;
  #closed = false;
  /** The stages' texts of the current subscription. */
  #texts: LiveTexts | undefined;
  /** Messages heard before the texts were read. */
  #held: SubscriberMessage[] = [];

  readonly #onMessage: MessageListener = (payload, channel) => {
    if (!this.#subscription) return;
    if (this.#buffer.length + this.#held.length >= this.#maxBuffered) {
      this.#failure = new SubscriberOverflowError(this.#maxBuffered);
      void this.unsubscribe();
      return;
    }
    const message = parse(payload, channel);
    if (this.#texts?.primed) this.#push(message);
    else this.#held.push(message);
  };

  /**
   * Buffers a message for the reader, a linear token with its `full_text` rebuilt (and no `offset`), as the
   * original format had it. One whose text cannot be known (a message was lost) is passed on as it came, with
   * `offset` and without `full_text`: never with a wrong text.
   */
  #push(message: SubscriberMessage): void {
    let out = message;
    if (!isRaw(message) && this.#texts) {
      const fullText = this.#texts.track(tracked(message));
      if (typeof fullText === 'string') {
        const { offset: _offset, ...rest } = message as StageMessage & { offset?: unknown };
        out = { ...rest, full_text: fullText } as StageMessage;
      }
    }
    this.#buffer.push(out);
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }

  /** True when something happened (a message, an unsubscribe), false when `timeoutMs` passed first. */
  #nextArrival(timeoutMs: number | undefined): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => done(false), timeoutMs);
      const done = (arrived: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve(arrived);
      };
      const wake = () => done(true);
      this.#waiters.add(wake);
    });
  }
}

function isRaw(message: SubscriberMessage): message is RawMessage {
  return message.type === 'message' && typeof (message as { channel?: unknown }).channel === 'string' && typeof (message as { data?: unknown }).data === 'string';
}

function tracked(message: SubscriberMessage): { stage: string | undefined; id: string | undefined; fields: Record<string, unknown> } {
  const fields = message as unknown as Record<string, unknown>;
  return { stage: typeof fields.stage === 'string' ? fields.stage : undefined, id: typeof fields.id === 'string' ? fields.id : undefined, fields };
}

function parse(payload: string, channel: string): SubscriberMessage {
  try {
    const value: unknown = JSON.parse(payload);
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && typeof (value as { type?: unknown }).type === 'string') {
      return value as StageMessage;
    }
  } catch {
    // Not JSON: passed on as a RawMessage below.
  }
  return { type: 'message', data: payload, channel };
}
