/**
 * The worker side: publishes one stage's progress of one project. The TypeScript counterpart of the
 * original Python `RedisStreamPublisher` (and of workers/python/ai_story_stream.py), with the same messages.
 */
import { randomUUID } from 'node:crypto';
import { hasStageControl, type Broker, type PublishControl, type TokenPiece } from './broker/broker.js';
import { BrokerClosedError, BrokerUnavailableError, InvalidArgumentError, LeaseLostError, StageCancelledError, type TokenOffsetError } from './broker/errors.js';
import { DEFAULTS } from './defaults.js';
import { RedisBroker } from './broker/redis-broker.js';
import { ID_RULE, checkPrefix, isValidId, stageChannel } from './channels.js';
import type { StageStatus } from '../../protocol/messages.js';

export interface StreamPublisherOptions {
  /** Follows the id rule (`ID_RULE`): matches `^[A-Za-z0-9_-]{1,64}$` and is not `__proto__`, `constructor` or `prototype`. */
  projectId: string;
  /** The stage name; follows the id rule, as `projectId`. */
  stage: string;
  /** The broker to publish through; it stays the caller's. Default: a RedisBroker the publisher opens and closes. */
  broker?: Broker;
  /** Redis of the broker the publisher opens. Default `redis://127.0.0.1:6379`. Not allowed with `broker`. */
  redisUrl?: string;
  /** Channel and key prefix of the broker the publisher opens; follows the id rule. Default `ai_story`. With `broker`, must equal its prefix. */
  prefix?: string;
  /** Replay-log length of the broker the publisher opens. Default 1000. */
  logMaxLen?: number;
  /** Replay-log time to live, in seconds, of the broker the publisher opens. Default 86400. */
  logTtlSeconds?: number;
  /** The clock for `timestamp`, in milliseconds. Default `Date.now`. */
  now?: () => number;
  /**
   * Publish tokens in linear form: each token carries its piece and its `offset` instead of `full_text`, and the
   * broker keeps each stage's text once, so a long answer costs about its own size. Default true. Set false for
   * the original format while hubs of an older version still run (deploy/README.md, "Upgrading to linear tokens").
   */
  linearTokens?: boolean;
  /**
   * Send each message with this publisher's producer id and a sequence number, so that a publish retried after a
   * lost reply returns the original id instead of logging a duplicate (publish.lua keeps the state with the log's
   * TTL). Default true.
   */
  idempotent?: boolean;
  /** The producer id (1-128 bytes). Default a random UUID: one run of the stage per publisher. */
  producerId?: string;
  /**
   * Hold a lease on the stage, renewed by every publish and by a heartbeat timer every third of it: when the worker
   * dies and the lease expires without `done` or `error`, a hub publishes the stage's worker-lost `error`. In ms;
   * false for none (then no cancel reaches this publisher either). Default 30000 (`DEFAULTS.leaseMs`).
   */
  leaseMs?: number | false;
  /** Publishes that fail with BrokerUnavailableError are retried this often (safe: idempotent). Default 2. */
  retries?: number;
  /**
   * Coalesce tokens: `publishToken` buffers its piece, and the buffered pieces go out as ONE token message (their
   * joined `content`, and the `offset` of the first, or the last `full_text` without linear tokens) once
   * `maxTokens` are buffered or `maxDelayMs` after the first of them (an unref'd timer), whichever comes first.
   * Every other message, `flush()` and `close()` send the buffer first, so the order is kept. `true` means
   * `{ maxTokens: 10, maxDelayMs: 50 }`. Default false: one message per token. See {@link TokenBatching}.
   */
  batch?: boolean | TokenBatching;
}

/** {@link StreamPublisherOptions.batch}: when buffered tokens go out. */
export interface TokenBatching {
  /** Send once this many tokens are buffered (an integer >= 1). Default 10. */
  maxTokens?: number;
  /** Send this long after the first buffered token, in ms (an integer >= 0). Default 50. */
  maxDelayMs?: number;
}

/** A batch ready to send: its sequence number, once taken, is kept, so sending it again can never log it twice. */
interface Prepared {
  /** Its place in the order of prepared batches (1, 2, 3, ...). */
  n: number;
  message: string;
  linear: TokenPiece | undefined;
  seq: number | undefined;
}

/** Keys every message gets from the publisher; `fields` cannot set them. */
const RESERVED = ['id', 'type', 'stage', 'project_id', 'timestamp'] as const;
/** The values of `stage_update.status`; `satisfies` keeps the list in step with the wire types. */
const STATUSES: readonly string[] = Object.keys({ pending: 1, processing: 1, completed: 1, failed: 1 } satisfies Record<StageStatus, 1>);

/**
 * Publishes the messages of one stage. Every method resolves to the message's replay-log id once the
 * broker has logged and published it, and rejects (never drops silently) when the broker is unreachable:
 * see {@link RedisBroker} for the time bound.
 *
 * @example
 * await using publisher = new StreamPublisher({ projectId: 'p1', stage: 'rewrite', redisUrl: 'redis://127.0.0.1:6379' });
 * await publisher.publishStageUpdate('processing', 0, 'rewriting');
 * await publisher.publishToken('Once', 'Once');
 * await publisher.publishDone('Once upon a time', { tokens_used: 4 });
 */
export class StreamPublisher {
  readonly projectId: string;
  readonly stage: string;
  /** The full channel name the messages go out on. */
  readonly channel: string;
  readonly broker: Broker;

  constructor(options: StreamPublisherOptions) {
    if (!isValidId(options.projectId)) throw new InvalidArgumentError('projectId', `${JSON.stringify(options.projectId)} must be ${ID_RULE}`);
    if (!isValidId(options.stage)) throw new InvalidArgumentError('stage', `${JSON.stringify(options.stage)} must be ${ID_RULE}`);
    if (options.prefix !== undefined) checkPrefix(options.prefix);
    if (options.broker && options.redisUrl !== undefined) throw new InvalidArgumentError('redisUrl', 'give either a broker or a redisUrl, not both');
    if (options.broker && options.prefix !== undefined && options.prefix !== options.broker.prefix) {
      throw new InvalidArgumentError('prefix', `${JSON.stringify(options.prefix)} differs from the broker's prefix ${JSON.stringify(options.broker.prefix)}; omit it`);
    }
    this.projectId = options.projectId;
    this.stage = options.stage;
    this.#ownsBroker = !options.broker;
    this.broker =
      options.broker ??
      new RedisBroker({ url: options.redisUrl, prefix: options.prefix, logMaxLen: options.logMaxLen, logTtlSeconds: options.logTtlSeconds });
    this.channel = stageChannel(this.broker.prefix, this.projectId, this.stage);
    this.#now = options.now ?? Date.now;
    this.#linearTokens = options.linearTokens ?? true;
    this.producerId = options.producerId ?? randomUUID();
    this.#idempotent = options.idempotent ?? true;
    const leaseMs = options.leaseMs ?? DEFAULTS.leaseMs;
    if (leaseMs !== false && (!Number.isSafeInteger(leaseMs) || leaseMs < 1)) throw new InvalidArgumentError('leaseMs', `${String(leaseMs)} must be a positive integer or false`);
    this.#leaseMs = leaseMs === false ? undefined : leaseMs;
    this.#retries = options.retries ?? 2;
    this.#batching = batching(options.batch);
  }

  /** This publisher's producer id (and run of the stage). */
  readonly producerId: string;

  /**
   * Aborted when the stage is cancelled (reason a {@link StageCancelledError}) or this run's lease was lost (a
   * {@link LeaseLostError}): pass it to the model call so that a cancel stops the work at once. Reading it makes the
   * publisher listen for the cancel as it happens; otherwise it learns it at its next publish or heartbeat.
   */
  get signal(): AbortSignal {
    if (!this.#watching && this.#leaseMs !== undefined && hasStageControl(this.broker) && !this.#closed) {
      this.#watching = true;
      const broker = this.broker;
      void broker
        .subscribe(broker.controlChannel(this.projectId, this.stage), (payload) => {
          const type = /"type":"([^"]*)"/.exec(payload)?.[1];
          if (type === 'cancelled') this.#abort(new StageCancelledError(this.stage));
          else if (type === 'error' && payload.includes('"worker_lost"')) this.#abort(new LeaseLostError(this.stage));
        })
        .then(
          (unsubscribe) => (this.#closed ? void unsubscribe().catch(() => {}) : (this.#unwatch = unsubscribe)),
          () => (this.#watching = false),
        );
    }
    return this.#aborter.signal;
  }

  /** True once the stage was cancelled (the next publish rejects with StageCancelledError). */
  get cancelled(): boolean {
    return this.#aborter.signal.reason instanceof StageCancelledError;
  }

  /**
   * The closing message of a cancelled stage: a `stage_update` (`failed`, `message`), allowed after the cancel.
   * The viewers already got the `cancelled` message; this says where the work stopped.
   */
  async publishCancelled(message = 'cancelled', progress = 0): Promise<string> {
    return this.#send('stage_update', this.#message('stage_update', { status: 'failed', progress, message: text('message', message) }), undefined, true);
  }

  /** Renews the lease now (the timer does it every third of the lease); resolves to false once cancelled or lost. */
  async heartbeat(): Promise<boolean> {
    if (this.#leaseMs === undefined || !hasStageControl(this.broker) || this.#closed) return false;
    const broker = this.broker;
    const result = await broker.control(this.projectId, this.stage, 'renew', '{}', { run: this.producerId, leaseMs: this.#leaseMs });
    if (result.outcome === 'ok' && result.deadline !== undefined) {
      await broker.indexLease(this.projectId, this.stage, result.deadline);
      return true;
    }
    if (result.outcome === 'cancelled') this.#abort(new StageCancelledError(this.stage));
    else if (result.outcome === 'lost') this.#abort(new LeaseLostError(this.stage));
    this.#stopHeartbeat();
    return false;
  }

  /**
   * A piece of generated text (`content`) and everything generated so far (`fullText`, which ends with `content`).
   *
   * In linear form (the default) the message carries `offset`, where the piece starts in `fullText` (in UTF-16
   * code units), in place of `full_text`, and the broker appends the piece to the stage's text. A `fullText` that
   * is just `content` starts the stage over. The first token of this publisher that continues a text (a retried
   * task, or a worker that takes over a stage) also gives the broker the whole `fullText`, so the text is right
   * whoever wrote it before. Rejects with {@link TokenOffsetError} when a later token does not continue the
   * stage's text (another publisher wrote the stage meanwhile): nothing is published then.
   *
   * An empty `fullText` (workers of the original API often send none) means "this piece after what this publisher
   * sent so far": the publisher keeps its own text, so its first such token starts the stage over.
   */
  async publishToken(content: string, fullText = ''): Promise<string> {
    text('content', content);
    text('fullText', fullText);
    if (fullText === '' && content !== '') fullText = this.#text + content;
    if (!fullText.endsWith(content)) throw new InvalidArgumentError('fullText', 'must end with content: it is everything generated so far, this piece included');
    if (this.#batching) return this.#buffer(content, fullText, this.#batching);
    if (!this.#linearTokens) {
      const id = await this.publish('token', { content, full_text: fullText });
      this.#text = fullText;
      return id;
    }
    const offset = fullText.length - content.length;
    const wholeText = this.#joined || offset === 0 ? undefined : fullText;
    const id = await this.#send('token', this.#message('token', { content, offset }), { content, offset, wholeText });
    this.#joined = true;
    this.#text = fullText;
    return id;
  }

  /** The stage's status, its progress (0-100) and a line for humans. */
  async publishStageUpdate(status: StageStatus, progress: number, message = ''): Promise<string> {
    if (!STATUSES.includes(status)) throw new InvalidArgumentError('status', `${JSON.stringify(status)} must be one of ${STATUSES.join(', ')}`);
    if (typeof progress !== 'number' || !(progress >= 0 && progress <= 100)) {
      throw new InvalidArgumentError('progress', `${String(progress)} must be a number from 0 to 100`);
    }
    return this.publish('stage_update', { status, progress, message: text('message', message) });
  }

  /** Item `current` of `total` is done; `progress` is derived (rounded percent, 0 when `total` is 0). */
  async publishProgress(current: number, total: number, itemName = ''): Promise<string> {
    count('current', current);
    count('total', total);
    const progress = total > 0 ? Math.min(100, Math.round((current / total) * 100)) : 0;
    return this.publish('progress', { current, total, progress, item_name: text('itemName', itemName) });
  }

  /** The stage finished: its whole result, and free metadata (e.g. `tokens_used`, `latency_ms`). */
  async publishDone(fullText: string, metadata: Record<string, unknown> = {}): Promise<string> {
    if (!isPlainObject(metadata)) throw new InvalidArgumentError('metadata', 'must be a plain object');
    return this.publish('done', { full_text: text('fullText', fullText), metadata });
  }

  /** The stage failed (the task, not the transport): what went wrong and how often it was retried. */
  async publishError(error: string | Error, retryCount = 0): Promise<string> {
    if (!Number.isSafeInteger(retryCount) || retryCount < 0) throw new InvalidArgumentError('retryCount', `${retryCount} must be an integer >= 0`);
    return this.publish('error', { error: error instanceof Error ? error.message : text('error', error), retry_count: retryCount });
  }

  /**
   * Any message type (following the id rule, as `projectId`) with any JSON fields; the publisher adds `type`, `stage`,
   * `project_id` and `timestamp` (seconds, float). Unknown types reach viewers as they are.
   */
  async publish(type: string, fields: Record<string, unknown> = {}): Promise<string> {
    return this.#send(type, this.#message(type, fields));
  }

  /**
   * With `batch`: sends the buffered tokens now (after any batch still in flight) and resolves to the id of the last
   * batch sent, or undefined when nothing was buffered. Rejects with the failure of this or an earlier batch (see
   * {@link StreamPublisherOptions.batch}). Without `batch` it has nothing to do.
   */
  async flush(): Promise<string | undefined> {
    if (!this.#batching) return undefined;
    this.#takeFailure();
    this.#prepareBatch();
    return this.#drainLater(false);
  }

  /**
   * Sends the buffered tokens (with `batch`), then closes the broker if the publisher opened it. Idempotent. The lease
   * is left to expire unless the stage ended. Rejects when the buffered tokens could not be sent (the publisher is
   * closed all the same: those tokens were not published).
   */
  async close(): Promise<void> {
    if (this.#closing) return this.#closed$?.catch(() => {});
    if (this.#batching) this.#prepareBatch();
    this.#closing = true;
    this.#closed$ = this.#close();
    return this.#closed$;
  }

  async #close(): Promise<void> {
    let failure: unknown;
    if (this.#batching) {
      // The last chance for what is unsent: a batch that failed in the background is sent again, and its failure
      // is reported only if it is still unsent (or was refused for good).
      const upTo = this.#prepared;
      await this.#serially(async () => {
        failure = this.#failure;
        this.#failure = undefined;
        try {
          await this.#drain(false, upTo);
          if (failure instanceof BrokerUnavailableError) failure = undefined;
        } catch (error) {
          failure = error;
        }
      });
    }
    this.#closed = true;
    this.#stopHeartbeat();
    await this.#unwatch?.().catch(() => {});
    if (this.#ownsBroker) await this.broker.close();
    if (failure !== undefined) throw failure;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  readonly #ownsBroker: boolean;
  readonly #now: () => number;
  readonly #linearTokens: boolean;
  /** True once a linear token of this publisher was published: the broker's text of the stage is then its own. */
  #joined = false;
  /** The stage's text as this publisher last published it (for tokens sent without a `fullText`). */
  #text = '';
  #closed = false;

  /** Set by close() before its last flush: no new message is taken. */
  #closing = false;
  #closed$: Promise<void> | undefined;

  // Batching (undefined: off). Tokens wait in #pending; #prepareBatch turns them into one message in #outbox, and
  // #drain sends the outbox in order, one job at a time on #queue (so sequence numbers follow the order of sending).
  readonly #batching: Required<TokenBatching> | undefined;
  /** The buffered tokens: their joined pieces, the text after the last, how many, when the first came (its timestamp). */
  #pending: { content: string; fullText: string; count: number; at: number } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #outbox: Prepared[] = [];
  /** How many batches were prepared so far. */
  #prepared = 0;
  #queue: Promise<unknown> = Promise.resolve();
  /** A batch that failed where no caller was waiting (the timer, a restart): the next call rejects with it. */
  #failure: unknown;

  readonly #idempotent: boolean;
  readonly #leaseMs: number | undefined;
  readonly #retries: number;
  readonly #aborter = new AbortController();
  #seq = 0;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #leased = false;
  #watching = false;
  #unwatch: (() => Promise<void>) | undefined;

  /** Publishes a message; with batching, after the buffered tokens, one message at a time. */
  async #send(type: string, message: string, linear?: TokenPiece, final = false): Promise<string> {
    if (!this.#batching) return this.#sendNow(type, message, linear, final);
    // The closing message of a cancelled stage goes out even though the tokens before it were refused.
    const moot = (error: unknown) => final && error instanceof StageCancelledError;
    try {
      this.#takeFailure();
    } catch (error) {
      if (!moot(error)) throw error;
    }
    this.#prepareBatch();
    const upTo = this.#prepared;
    return this.#serially(async () => {
      await this.#drain(false, upTo).catch((error: unknown) => {
        if (!moot(error)) throw error;
      });
      return this.#sendNow(type, message, linear, final);
    });
  }

  /** Adds a token to the batch; sends the batch when it is full (resolving to its id), else resolves to ''. */
  async #buffer(content: string, fullText: string, batching: Required<TokenBatching>): Promise<string> {
    if (this.#closed || this.#closing) throw new BrokerClosedError('publisher');
    this.#takeFailure();
    const pending = this.#pending;
    if (pending && fullText === pending.fullText + content) {
      pending.content += content;
      pending.fullText = fullText;
      pending.count++;
    } else {
      // A token that does not continue the batch (a new run of the stage): the batch goes first, on its own.
      if (pending) {
        this.#prepareBatch();
        void this.#drainLater(true);
      }
      this.#pending = { content, fullText, count: 1, at: this.#now() };
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        if (this.#closed || this.#closing) return;
        this.#prepareBatch();
        void this.#drainLater(true);
      }, batching.maxDelayMs);
      this.#timer.unref?.();
    }
    this.#text = fullText;
    if (this.#pending!.count < batching.maxTokens) return '';
    this.#prepareBatch();
    return (await this.#drainLater(true)) ?? '';
  }

  /** Turns the buffered tokens into one prepared message at the end of the outbox. */
  #prepareBatch(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    if (!pending) return;
    this.#pending = undefined;
    const { content, fullText, at } = pending;
    let prepared: Prepared;
    if (!this.#linearTokens) {
      prepared = { n: ++this.#prepared, message: this.#message('token', { content, full_text: fullText }, at), linear: undefined, seq: undefined };
    } else {
      const offset = fullText.length - content.length;
      const wholeText = this.#joined || offset === 0 ? undefined : fullText;
      prepared = { n: ++this.#prepared, message: this.#message('token', { content, offset }, at), linear: { content, offset, wholeText }, seq: undefined };
      this.#joined = true;
    }
    this.#outbox.push(prepared);
  }

  /**
   * Sends the outbox in order; resolves to the last id sent. A batch the broker could not take (BrokerUnavailableError
   * after the retries) stays in the outbox, first, and is sent again by the next drain with its sequence number; any
   * other failure (cancelled, lease lost, a text that does not continue) empties it. In the background the failure is
   * kept for the next call; otherwise it rejects, as does a failure kept from before.
   */
  async #drain(background: boolean, upTo: number): Promise<string | undefined> {
    let id: string | undefined;
    try {
      if (!background) this.#takeFailure();
      for (let next = this.#outbox[0]; next && next.n <= upTo; next = this.#outbox[0]) {
        // Its sequence number is taken when it is first sent (in the order of sending) and kept for every retry.
        if (this.#idempotent) next.seq ??= ++this.#seq;
        id = await this.#sendNow('token', next.message, next.linear, false, next.seq);
        this.#outbox.shift();
      }
      return id;
    } catch (error) {
      if (!(error instanceof BrokerUnavailableError)) this.#outbox.length = 0;
      if (!background) throw error;
      this.#failure ??= error;
      return id;
    }
  }

  /** Queues a drain of the batches prepared so far (not of those prepared later: calls between them go first). */
  #drainLater(background: boolean): Promise<string | undefined> {
    const upTo = this.#prepared;
    return this.#serially(() => this.#drain(background, upTo));
  }

  /** Runs `job` after every job queued before it. */
  #serially<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(job);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Throws (once) the failure of a batch sent in the background. */
  #takeFailure(): void {
    if (this.#failure === undefined) return;
    const failure = this.#failure;
    this.#failure = undefined;
    throw failure;
  }

  /** Publishes with the control options (producer, sequence, run, lease), retrying what the broker could not answer. */
  async #sendNow(type: string, message: string, linear?: TokenPiece, final = false, seq?: number): Promise<string> {
    const leased = this.#leaseMs !== undefined && hasStageControl(this.broker);
    const control: PublishControl | undefined =
      this.#idempotent || leased
        ? {
            ...(this.#idempotent && { producer: this.producerId, seq: seq ?? ++this.#seq }),
            ...(leased && { run: this.producerId, leaseMs: this.#leaseMs }),
            ...(final && { final: true }),
          }
        : undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        const id = await this.broker.publish(this.projectId, this.stage, type, message, linear, control);
        if (leased) this.#afterPublish(type);
        return id;
      } catch (error) {
        if (error instanceof StageCancelledError || error instanceof LeaseLostError) {
          this.#abort(error);
          this.#stopHeartbeat();
        }
        // Safe only with a sequence number: the retry returns the original id when the first one did land.
        const retry = error instanceof BrokerUnavailableError && (this.#idempotent || !error.sent) && attempt < this.#retries && !this.#closed;
        if (!retry) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * (attempt + 1)));
      }
    }
  }

  #afterPublish(type: string): void {
    if (type === 'done' || type === 'error') {
      this.#stopHeartbeat();
      if (hasStageControl(this.broker)) void this.broker.unindexLease(this.projectId, this.stage).catch(() => {});
      return;
    }
    if (this.#leased || this.#closed || !hasStageControl(this.broker)) return;
    this.#leased = true;
    // "Look now": the reaper reads the true deadline from the broker and files the lease under it.
    void this.broker.indexLease(this.projectId, this.stage, this.#now()).catch(() => {});
    this.#heartbeat = setInterval(() => void this.heartbeat().catch(() => {}), Math.max(1, Math.floor(this.#leaseMs! / 3)));
    this.#heartbeat.unref?.();
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  #abort(reason: Error): void {
    if (!this.#aborter.signal.aborted) this.#aborter.abort(reason);
  }

  /** The message JSON: `type`, `stage`, `project_id`, `timestamp`, then `fields` in their order. */
  #message(type: string, fields: Record<string, unknown>, at = this.#now()): string {
    if (this.#closed || this.#closing) throw new BrokerClosedError('publisher');
    if (!isValidId(type)) throw new InvalidArgumentError('type', `${JSON.stringify(type)} must be ${ID_RULE}`);
    if (!isPlainObject(fields)) throw new InvalidArgumentError('fields', 'must be a plain object');
    const reserved = RESERVED.find((key) => Object.hasOwn(fields, key));
    if (reserved) throw new InvalidArgumentError('fields', `must not set "${reserved}": the publisher sets it`);
    try {
      return JSON.stringify({ type, stage: this.stage, project_id: this.projectId, timestamp: at / 1000, ...fields });
    } catch (error) {
      throw new InvalidArgumentError('fields', `cannot be written as JSON: ${(error as Error).message}`);
    }
  }
}

function batching(option: boolean | TokenBatching | undefined): Required<TokenBatching> | undefined {
  if (option === undefined || option === false) return undefined;
  if (option === true) option = {};
  if (!isPlainObject(option)) throw new InvalidArgumentError('batch', 'must be a boolean or { maxTokens, maxDelayMs }');
  const { maxTokens = 10, maxDelayMs = 50 } = option as TokenBatching;
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) throw new InvalidArgumentError('batch', `maxTokens ${String(maxTokens)} must be an integer >= 1`);
  if (!Number.isSafeInteger(maxDelayMs) || maxDelayMs < 0 || maxDelayMs > 2 ** 31 - 1) {
    throw new InvalidArgumentError('batch', `maxDelayMs ${String(maxDelayMs)} must be an integer from 0 to 2147483647`);
  }
  return { maxTokens, maxDelayMs };
}

function text(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new InvalidArgumentError(name, `must be a string, got ${typeof value}`);
  return value;
}

function count(name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new InvalidArgumentError(name, `${String(value)} must be a finite number >= 0`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
