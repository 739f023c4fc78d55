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

  /** Closes the broker if the publisher opened it. Idempotent. The lease is left to expire unless the stage ended. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopHeartbeat();
    await this.#unwatch?.().catch(() => {});
    if (this.#ownsBroker) await this.broker.close();
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

  readonly #idempotent: boolean;
  readonly #leaseMs: number | undefined;
  readonly #retries: number;
  readonly #aborter = new AbortController();
  #seq = 0;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #leased = false;
  #watching = false;
  #unwatch: (() => Promise<void>) | undefined;

  /** Publishes with the control options (producer, sequence, run, lease), retrying what the broker could not answer. */
  async #send(type: string, message: string, linear?: TokenPiece, final = false): Promise<string> {
    const leased = this.#leaseMs !== undefined && hasStageControl(this.broker);
    const control: PublishControl | undefined =
      this.#idempotent || leased
        ? {
            ...(this.#idempotent && { producer: this.producerId, seq: ++this.#seq }),
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
  #message(type: string, fields: Record<string, unknown>): string {
    if (this.#closed) throw new BrokerClosedError('publisher');
    if (!isValidId(type)) throw new InvalidArgumentError('type', `${JSON.stringify(type)} must be ${ID_RULE}`);
    if (!isPlainObject(fields)) throw new InvalidArgumentError('fields', 'must be a plain object');
    const reserved = RESERVED.find((key) => Object.hasOwn(fields, key));
    if (reserved) throw new InvalidArgumentError('fields', `must not set "${reserved}": the publisher sets it`);
    try {
      return JSON.stringify({ type, stage: this.stage, project_id: this.projectId, timestamp: this.#now() / 1000, ...fields });
    } catch (error) {
      throw new InvalidArgumentError('fields', `cannot be written as JSON: ${(error as Error).message}`);
    }
  }
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
