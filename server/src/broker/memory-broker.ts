/**
 * The in-process twin of RedisBroker, used when no Redis answers and in tests: the same ids, the same
 * capped and expiring replay log, the same state, glob patterns, the same listener table; only this process's
 * publishers reach it.
 */
import { checkPublishArguments, checkPublishControl, checkReplayLimit, checkTokenPiece, positiveInteger } from './arguments.js';
import type { ControlOp, ControlResult, LogEntry, MessageListener, PublishControl, ReplayOptions, ReplayResult, Snapshot, StageControlBroker, StageText, TokenPiece, Unsubscribe } from './broker.js';
import { BrokerClosedError, InvalidArgumentError, LeaseLostError, StageCancelledError, TokenOffsetError } from './errors.js';
import { globToRegExp } from './glob-to-regexp.js';
import { compareLogIds, isLogId, nextLogId, withId } from './log-id.js';
import { snapshotStages, stateField } from './state-field.js';
import { SubscriptionTable } from './subscription-table.js';
import { DEFAULT_PREFIX, checkPrefix, controlChannel, isValidId, stageChannel } from '../channels.js';
import { DEFAULTS } from '../defaults.js';

export interface MemoryBrokerOptions {
  /** First part of every channel name; follows the id rule (`ID_RULE` in channels.ts). Default `ai_story`. */
  prefix?: string;
  /** Entries kept in each project's replay log. Default 1000 (`DEFAULTS.logMaxLen`). */
  logMaxLen?: number;
  /** Seconds the replay log and the state of a project live after its last message. Default 86400 (`DEFAULTS.logTtlSeconds`). */
  logTtlSeconds?: number;
  /** The clock, in milliseconds since the epoch; inject one to test expiry. Default `Date.now`. */
  now?: () => number;
  /** Called when a message listener throws; the other listeners still get the message. Default: `console.error`. */
  onListenerError?: (error: unknown) => void;
}

interface ProjectLog {
  /** Oldest first; `data` without its id, as in the Redis stream. */
  entries: LogEntry[];
  /** State field (`<stage>|<type>`) -> the latest message of that type, with its id. */
  state: Map<string, string>;
  expiresAt: number;
  /**
   * Stage -> its text so far (its length is the text's, in UTF-16 code units, as publish.lua counts) and the id of
   * its last token: the texts hash and text keys of Redis. They expire together, at `textsExpireAt`: set by linear
   * tokens only, as publish.lua refreshes their TTL, so never later than the log.
   */
  texts: Map<string, { text: string; lastId: string }>;
  textsExpireAt: number;
  /** publish.lua's control hash: field -> value, with the log's lifetime. */
  control: Map<string, string>;
}

const TERMINAL = new Set(['done', 'error', 'cancelled', 'lost']);

/** A {@link Broker} inside this process. Listeners are called asynchronously, in publish order. */
export class MemoryBroker implements StageControlBroker {
  readonly kind = 'memory' as const;
  readonly prefix: string;

  constructor(options: MemoryBrokerOptions = {}) {
    this.prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
    this.#logMaxLen = positiveInteger('logMaxLen', options.logMaxLen ?? DEFAULTS.logMaxLen);
    this.#ttlMs = positiveInteger('logTtlSeconds', options.logTtlSeconds ?? DEFAULTS.logTtlSeconds) * 1000;
    this.#now = options.now ?? Date.now;
    this.#table = new SubscriptionTable({
      prefix: this.prefix,
      onListenerError: options.onListenerError ?? ((error) => console.error('[broker] a message listener threw:', error)),
      // What Redis would match each PUBLISH against: a channel by name (the table's own lookup), a pattern by its glob.
      transport: {
        subscribe: async (name, pattern) => {
          if (pattern) this.#patterns.set(name, globToRegExp(name));
        },
        unsubscribe: async (name, pattern) => {
          if (pattern) this.#patterns.delete(name);
        },
      },
    });
  }

  /** In process, live delivery is never interrupted. */
  onInterruption(_listener: () => void): () => void {
    return () => {};
  }

  get healthy(): boolean {
    return !this.#closed;
  }

  /** What publish.lua does, in the same order: the piece is checked against the stage's text before anything is written. */
  async publish(projectId: string, stage: string, type: string, message: string, linear?: TokenPiece, control?: PublishControl): Promise<string> {
    this.#assertOpen();
    checkPublishArguments(projectId, stage, type, message);
    if (linear !== undefined) checkTokenPiece(linear);
    if (control !== undefined) checkPublishControl(control);
    const now = this.#now();
    this.#sweep(now);
    const log = this.#project(projectId, now);
    const ctl = log.control;
    const run = control?.run ?? control?.producer;
    if (control?.producer && control.seq) {
      const last = Number(ctl.get(`seq|${control.producer}`) ?? 0);
      if (control.seq <= last) {
        const kept = /^(\d+):(.*)$/.exec(ctl.get(`sid|${control.producer}|${control.seq % 32}`) ?? '');
        if (kept && Number(kept[1]) === control.seq) return kept[2]!;
        throw new InvalidArgumentError('control.seq', `sequence ${control.seq} of producer ${JSON.stringify(control.producer)} is older than the last 32 it logged`);
      }
    }
    if (run !== undefined) {
      if (ctl.get(`lost|${stage}`) === run) throw new LeaseLostError(stage);
      if (ctl.get(`cancel|${stage}`) === run && !control?.final) throw new StageCancelledError(stage);
    }
    const texts = this.#texts(log, now);
    let text: string | undefined;
    if (linear) {
      if (linear.wholeText) text = linear.wholeText;
      else if (linear.offset === 0) text = linear.content;
      else {
        const known = texts.get(stage)?.text ?? '';
        if (linear.offset !== known.length) throw new TokenOffsetError(stage, known.length, linear.offset);
        text = known + linear.content;
      }
    }
    // One id space for the whole broker: monotonic per project a fortiori, even if the clock goes back.
    const id = (this.#lastId = nextLogId(this.#lastId, now));
    if (text !== undefined) {
      texts.set(stage, { text, lastId: id });
      log.textsExpireAt = now + this.#ttlMs;
    }
    log.entries.push({ id, stage, data: message });
    if (log.entries.length > this.#logMaxLen) log.entries.splice(0, log.entries.length - this.#logMaxLen);
    const live = withId(message, id);
    log.state.set(stateField(stage, type), live);
    log.expiresAt = now + this.#ttlMs;
    this.#deliver(stageChannel(this.prefix, projectId, stage), live);
    if (control?.producer && control.seq) {
      ctl.set(`seq|${control.producer}`, String(control.seq)).set(`sid|${control.producer}|${control.seq % 32}`, `${control.seq}:${id}`);
    }
    if (run !== undefined) {
      let status = ctl.get(`status|${stage}`);
      if (ctl.get(`run|${stage}`) !== run) {
        ctl.set(`run|${stage}`, run);
        status = 'running';
      }
      if (type === 'done' || type === 'error' || type === 'cancelled') {
        if (!TERMINAL.has(status ?? '')) status = type;
        ctl.delete(`lease|${stage}`);
      } else if (!TERMINAL.has(status ?? '')) {
        status = 'running';
        if (control?.leaseMs) ctl.set(`lease|${stage}`, `${run}|${now + control.leaseMs}`);
      }
      ctl.set(`status|${stage}`, status ?? 'running');
    }
    return id;
  }

  /** What publish.lua does for an `op`, in the same order. */
  async control(projectId: string, stage: string, op: ControlOp, message: string, control: PublishControl = {}): Promise<ControlResult> {
    this.#assertOpen();
    checkPublishArguments(projectId, stage, op === 'cancel' ? 'cancelled' : 'error', message);
    checkPublishControl(control);
    const now = this.#now();
    const log = this.#project(projectId, now);
    const ctl = log.control;
    const run = control.run ?? control.producer;
    if (op === 'renew') {
      if (run === undefined || control.leaseMs === undefined) throw new InvalidArgumentError('control', 'renew needs "run" and "leaseMs"');
      if (ctl.get(`lost|${stage}`) === run) return { outcome: 'lost' };
      if (ctl.get(`cancel|${stage}`) === run) return { outcome: 'cancelled' };
      const current = ctl.get(`run|${stage}`);
      if (current !== undefined && current !== run) return { outcome: 'superseded' };
      if (TERMINAL.has(ctl.get(`status|${stage}`) ?? '')) return { outcome: 'finished' };
      const deadline = now + control.leaseMs;
      ctl.set(`lease|${stage}`, `${run}|${deadline}`).set(`run|${stage}`, run).set(`status|${stage}`, 'running');
      return { outcome: 'ok', deadline };
    }
    if (op === 'cancel') {
      const status = ctl.get(`status|${stage}`) ?? this.#legacyStatus(log, stage);
      if (status === undefined) return { outcome: 'not_running' };
      if (status === 'cancelled') return { outcome: 'already_cancelled', id: ctl.get(`cancelid|${stage}`) };
      if (TERMINAL.has(status)) return { outcome: 'finished', status };
      const id = await this.publish(projectId, stage, 'cancelled', message);
      ctl.set(`status|${stage}`, 'cancelled').set(`cancel|${stage}`, ctl.get(`run|${stage}`) ?? '*').set(`cancelid|${stage}`, id);
      ctl.delete(`lease|${stage}`);
      this.#deliver(controlChannel(this.prefix, projectId, stage), withId(message, id));
      return { outcome: 'cancelled', id };
    }
    const lease = /^(.*)\|(\d+)$/.exec(ctl.get(`lease|${stage}`) ?? '');
    if (!lease) return { outcome: 'gone' };
    if (Number(lease[2]) > now) return { outcome: 'alive', deadline: Number(lease[2]) };
    ctl.delete(`lease|${stage}`);
    if (TERMINAL.has(ctl.get(`status|${stage}`) ?? '')) return { outcome: 'gone' };
    ctl.set(`lost|${stage}`, lease[1]!).set(`status|${stage}`, 'lost');
    const id = await this.publish(projectId, stage, 'error', message);
    this.#deliver(controlChannel(this.prefix, projectId, stage), withId(message, id));
    return { outcome: 'reaped', id };
  }

  async indexLease(projectId: string, stage: string, deadline: number): Promise<void> {
    this.#assertOpen();
    this.#leaseIndex.set(`${projectId}|${stage}`, deadline);
  }

  async unindexLease(projectId: string, stage: string): Promise<void> {
    this.#leaseIndex.delete(`${projectId}|${stage}`);
  }

  async dueLeases(now: number, limit: number): Promise<{ projectId: string; stage: string }[]> {
    this.#assertOpen();
    return [...this.#leaseIndex]
      .filter(([, deadline]) => deadline <= now)
      .sort((a, b) => a[1] - b[1])
      .slice(0, limit)
      .map(([member]) => {
        const [projectId = '', stage = ''] = member.split('|');
        return { projectId, stage };
      });
  }

  async time(): Promise<number> {
    return this.#now();
  }

  controlChannel(projectId: string, stage: string): string {
    return controlChannel(this.prefix, projectId, stage);
  }

  /**
   * The in-process equivalent of a foreign PUBLISH (another program's `PUBLISH channel payload` to Redis): delivers
   * `payload` as it is on `channel` to the listeners whose channel or pattern matches it, and logs nothing. Not part
   * of {@link Broker}: with Redis, a test publishes foreign messages with a plain PUBLISH on a client of its own.
   */
  async publishRaw(channel: string, payload: string): Promise<void> {
    this.#assertOpen();
    this.#deliver(channel, payload);
  }

  async replay(projectId: string, afterId: string, options: ReplayOptions = {}): Promise<ReplayResult> {
    this.#assertOpen();
    const limit = checkReplayLimit(options.limit);
    const entries = isLogId(afterId) ? this.#log(projectId, this.#now())?.entries : undefined;
    const index = entries ? entries.findIndex((entry) => entry.id === afterId) : -1;
    if (!entries || index < 0) return { covered: false, entries: [], more: false };
    const page = entries.slice(index + 1, index + 1 + limit).map(({ id, stage, data }) => ({ id, stage, data: withId(data, id) }));
    // "Full", as RedisBroker says it: its XRANGE ... COUNT cannot tell a page that ends the log from one that does not.
    return { covered: true, entries: page, more: page.length === limit };
  }

  async snapshot(projectId: string): Promise<Snapshot> {
    this.#assertOpen();
    const log = this.#log(projectId, this.#now());
    return { lastId: log?.entries.at(-1)?.id ?? null, stages: snapshotStages(log?.state ?? []) };
  }

  async texts(projectId: string, stage: string | null): Promise<Map<string, StageText>> {
    this.#assertOpen();
    const result = new Map<string, StageText>();
    if (!isValidId(projectId) || (stage !== null && !isValidId(stage))) return result;
    const now = this.#now();
    const log = this.#log(projectId, now);
    if (!log) return result;
    for (const [name, { text, lastId }] of this.#texts(log, now)) {
      if (stage === null || name === stage) result.set(name, { text, id: lastId });
    }
    return result;
  }

  async subscribe(channelOrPattern: string, listener: MessageListener, pattern = false): Promise<Unsubscribe> {
    this.#assertOpen();
    return this.#table.subscribe(channelOrPattern, listener, pattern);
  }

  async ping(): Promise<void> {
    this.#assertOpen();
  }

  /** Drops every listener, log and undelivered message. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#table.clear();
    this.#patterns.clear();
    this.#projects.clear();
    this.#queue.length = 0;
  }

  /** The ids of RedisBroker, in their order (protocol/log-id.ts). */
  isId(value: unknown): value is string {
    return isLogId(value);
  }

  compareIds(a: string, b: string): number {
    return compareLogIds(a, b);
  }

  readonly #logMaxLen: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #table: SubscriptionTable;
  /** Every pattern the table subscribed, with its glob. */
  readonly #patterns = new Map<string, RegExp>();
  readonly #projects = new Map<string, ProjectLog>();
  /** Messages awaiting delivery, each with the listeners subscribed when it was published. */
  readonly #queue: { payload: string; channel: string; listeners: MessageListener[] }[] = [];
  #lastId: string | null = null;
  readonly #leaseIndex = new Map<string, number>();
  #lastSweep = 0;
  #closed = false;

  #assertOpen(): void {
    if (this.#closed) throw new BrokerClosedError();
  }

  /** The project's log, created when it has none. */
  #project(projectId: string, now: number): ProjectLog {
    let log = this.#log(projectId, now);
    if (!log) this.#projects.set(projectId, (log = { entries: [], state: new Map(), expiresAt: 0, texts: new Map(), textsExpireAt: 0, control: new Map() }));
    return log;
  }

  /** A stage's status from its latest message, for publishers that send no control (publish.lua's legacy_status). */
  #legacyStatus(log: ProjectLog, stage: string): string | undefined {
    let latest: { id: string; type: string } | undefined;
    for (const [field, live] of log.state) {
      if (!field.startsWith(`${stage}|`)) continue;
      const id = /^\{"id":"(\d+-\d+)"/.exec(live)?.[1];
      if (id && (!latest || compareLogIds(id, latest.id) > 0)) latest = { id, type: field.slice(stage.length + 1) };
    }
    if (!latest) return undefined;
    return TERMINAL.has(latest.type) ? latest.type : 'running';
  }

  /** The project's log, or undefined when it has none or it expired. */
  #log(projectId: string, now: number): ProjectLog | undefined {
    const log = this.#projects.get(projectId);
    if (log && now >= log.expiresAt) {
      this.#projects.delete(projectId);
      return undefined;
    }
    return log;
  }

  /** The project's texts, emptied first when they expired (their TTL is refreshed by linear tokens only). */
  #texts(log: ProjectLog, now: number): ProjectLog['texts'] {
    if (now >= log.textsExpireAt) log.texts.clear();
    return log.texts;
  }

  /** Forgets expired projects now and then, as Redis's active expiry does, so idle projects do not pile up. */
  #sweep(now: number): void {
    if (now - this.#lastSweep < 1000) return;
    this.#lastSweep = now;
    for (const [projectId, log] of this.#projects) if (now >= log.expiresAt) this.#projects.delete(projectId);
  }

  #deliver(channel: string, payload: string): void {
    // As Redis does: the channel's subscribers first, then those of each pattern that matches it.
    const listeners = this.#table.listeners(channel, false, channel);
    for (const [pattern, glob] of this.#patterns) {
      if (glob.test(channel)) listeners.push(...this.#table.listeners(pattern, true, channel));
    }
    if (listeners.length === 0) return;
    this.#queue.push({ payload, channel, listeners });
    // One drain for everything queued in this turn keeps publish order across channels.
    if (this.#queue.length === 1) queueMicrotask(() => this.#drain());
  }

  #drain(): void {
    // A listener that left after the publish does not hear it, as with Redis once UNSUBSCRIBE is acknowledged.
    for (let message = this.#queue.shift(); message; message = this.#queue.shift()) {
      this.#table.deliver(message.listeners, message.payload, message.channel);
    }
  }
}
