/**
 * One broker read for many resumes: when a hub process restarts, every client it held reconnects within seconds
 * with its `Last-Event-ID`, and the clients of one project mostly hold the same one. Reads of the same key (a
 * project's log after one id, one page size; a project's snapshot; a stage's texts) share one broker call, and
 * each stream then takes its own filtered view of the shared result, exactly as from a read of its own.
 *
 * When sharing is exact. A stream's read is exact when every message logged after what it read reaches the stream
 * live (held while it opens, then dropped up to what the replay wrote). That holds for a read sent after the stream
 * began to listen (its topic subscribed and the stream in it): such a read is as good as its own, whoever asked
 * for it: the streams that waited for their topic's subscription together share their reads, and `windowMs` (0 by
 * default) can hold a read back for more to join. A read sent before a stream began to listen (in flight when it
 * asked, or back less than `keepMs` ago) is still exact for it when its topic was listening before the read was
 * sent and had written nothing newer than the read's last id before the stream joined it: whatever is newer
 * reaches the stream live. Otherwise a replay page is taken as a prefix (`more: true`: the resume reads on after
 * its last entry, a read of another cursor, shared in turn), and a snapshot or an empty page is read again.
 */
import type { Broker, ReplayResult, Snapshot, StageText } from '../broker/broker.js';

/** What a read is for, as `sse_log_reads_total{kind}` counts it. */
export type ReadKind = 'replay' | 'replay_page' | 'snapshot' | 'texts';

/** When a stream began to get every message logged from then on, for {@link CoalescedReads}. */
export interface Listening {
  /** `CoalescedReads.now()` once the stream was in its topic and the topic subscribed. */
  since: number;
  /** `CoalescedReads.now()` once its topic was subscribed. */
  topicSince: number;
  /** The newest log id its topic had written to its streams before the stream joined it; undefined: none. */
  newest: string | undefined;
}

export interface CoalescedReadsOptions {
  broker: Pick<Broker, 'replay' | 'snapshot' | 'texts' | 'isId' | 'compareIds'>;
  /** How long a read waits for others to share it before it is sent, in ms. Default 0: sent at once. */
  windowMs?: number;
  /**
   * How long a read's result stays shareable after it came back or last served (see the module's doc), in ms.
   * Exactness does not depend on it (a result that no longer fits serves as a prefix, or not at all); it bounds how
   * long results are held. Default 5000: a storm of reconnects to one process takes seconds, not milliseconds.
   */
  keepMs?: number;
  /** Bytes of results kept after they came back, at most (the least recently used go first). Default 8 MiB. */
  maxKeptBytes?: number;
  /** Each read: sent to the broker (`shared` false) or answered from another's (`shared` true). */
  onRead?: (kind: ReadKind, shared: boolean) => void;
}

interface Read<T> {
  key: string;
  /** The `now()` it was sent at; Infinity until then. */
  sent: number;
  result: Promise<T>;
  /** Its result, once back. */
  done?: { value: T };
  /** Once back: when it stops being shareable, and what it weighs. */
  expires?: number;
  bytes?: number;
}

export class CoalescedReads {
  readonly #broker: CoalescedReadsOptions['broker'];
  readonly #windowMs: number;
  readonly #keepMs: number;
  readonly #maxKeptBytes: number;
  readonly #onRead: NonNullable<CoalescedReadsOptions['onRead']>;
  /** Reads by key, the least recently used first: waiting to be sent, in flight, or kept. */
  readonly #reads = new Map<string, Read<unknown>>();
  #keptBytes = 0;
  #clock = 0;
  #sweep: NodeJS.Timeout | undefined;

  constructor(options: CoalescedReadsOptions) {
    this.#broker = options.broker;
    this.#windowMs = options.windowMs ?? 0;
    this.#keepMs = options.keepMs ?? 5000;
    this.#maxKeptBytes = options.maxKeptBytes ?? 8 * 1024 * 1024;
    this.#onRead = options.onRead ?? (() => {});
  }

  /** The clock {@link Listening} is read on: it ticks once per read sent. */
  now(): number {
    return this.#clock;
  }

  /** A listening that only reads sent from now on fit: for readers with no topic (a resume's scan of its texts). */
  fresh(): Listening {
    return { since: this.#clock, topicSince: this.#clock, newest: undefined };
  }

  /** {@link Broker.replay} for a stream listening since `listening`. */
  replay(projectId: string, afterId: string, limit: number, listening: Listening, kind: ReadKind = 'replay'): Promise<ReplayResult> {
    return this.#get({
      key: `r\0${projectId}\0${afterId}\0${limit}`,
      kind,
      listening,
      run: () => this.#broker.replay(projectId, afterId, { limit }),
      weigh: (page) => page.entries.reduce((sum, entry) => sum + entry.data.length * 2 + 64, 64),
      upTo: (page) => page.entries.at(-1)?.id ?? afterId,
      // Not in step for this stream, but every entry is still what follows its cursor: take them, and read on.
      prefix: (page) => (page.covered && page.entries.length > 0 ? { ...page, more: true } : undefined),
    });
  }

  /** {@link Broker.snapshot} for a stream listening since `listening`. */
  snapshot(projectId: string, listening: Listening): Promise<Snapshot> {
    return this.#get({
      key: `s\0${projectId}`,
      kind: 'snapshot',
      listening,
      run: () => this.#broker.snapshot(projectId),
      weigh: (snapshot) => {
        let bytes = 64;
        for (const byType of Object.values(snapshot.stages)) for (const json of Object.values(byType)) bytes += json.length * 2 + 64;
        return bytes;
      },
      upTo: (snapshot) => snapshot.lastId,
    });
  }

  /** {@link Broker.texts}, shared only with reads sent from now on (a texts read is not in step with live delivery). */
  texts(projectId: string, stage: string | null): Promise<Map<string, StageText>> {
    return this.#get({
      key: `t\0${projectId}\0${stage ?? ''}`,
      kind: 'texts',
      listening: this.fresh(),
      run: () => this.#broker.texts(projectId, stage),
      weigh: (texts) => {
        let bytes = 64;
        for (const { text } of texts.values()) bytes += text.length * 2 + 64;
        return bytes;
      },
      upTo: () => null,
    });
  }

  /** What a resume's ReplayTexts reads through: the broker's texts and log, shared as a stream's are. */
  view(): Pick<Broker, 'replay' | 'texts' | 'isId' | 'compareIds'> {
    const broker = this.#broker;
    return {
      replay: (projectId, afterId, options) => this.replay(projectId, afterId, options?.limit ?? 1000, this.fresh(), 'replay_page'),
      texts: (projectId, stage) => this.texts(projectId, stage),
      isId: (value): value is string => broker.isId(value),
      compareIds: (a, b) => broker.compareIds(a, b),
    };
  }

  /** Forgets every read (the hub closes); reads in flight still answer those who wait for them. */
  clear(): void {
    this.#reads.clear();
    this.#keptBytes = 0;
    clearTimeout(this.#sweep);
    this.#sweep = undefined;
  }

  /**
   * The result of a read of `key` that is exact for a stream listening since `listening`: one waiting to be sent,
   * in flight or kept when it fits (see the module's doc), or a prefix of one, or else a new read. The lookup and
   * the new read happen in one step, so two streams never start two reads where one fits both.
   */
  async #get<T>(read: {
    key: string;
    kind: ReadKind;
    listening: Listening;
    run: () => Promise<T>;
    weigh: (result: T) => number;
    /** The newest log id the result covers. */
    upTo: (result: T) => string | null;
    /** What of a result that does not fit may still serve, if anything. */
    prefix?: (result: T) => T | undefined;
  }): Promise<T> {
    const { key, kind, listening } = read;
    let rejected: Read<T> | undefined;
    for (;;) {
      const found = this.#find<T>(key);
      if (!found || found === rejected) return this.#send(key, kind, read.run, read.weigh);
      if (listening.since < found.sent) return this.#count(kind, true, await found.result, found);
      // Only a replay page can serve in part: for anything else, waiting for a read that may not fit would only
      // make this one later (and a snapshot read later is current up to a later id than it needs to be).
      if (!found.done && !read.prefix) return this.#send(key, kind, read.run, read.weigh);
      const result = found.done ? found.done.value : await found.result;
      if (listening.topicSince < found.sent && this.#fits(listening.newest, read.upTo(result))) return this.#count(kind, true, result, found);
      const prefix = read.prefix?.(result);
      if (prefix !== undefined) return this.#count(kind, true, prefix, found);
      rejected = found;
    }
  }

  /** True when nothing newer than `upTo` was written to the stream's topic before it joined. */
  #fits(newest: string | undefined, upTo: string | null): boolean {
    if (newest === undefined) return true;
    const broker = this.#broker;
    return upTo !== null && broker.isId(newest) && broker.isId(upTo) && broker.compareIds(newest, upTo) <= 0;
  }

  /** The read of `key`, unless it expired. */
  #find<T>(key: string): Read<T> | undefined {
    const read = this.#reads.get(key) as Read<T> | undefined;
    if (read?.expires !== undefined && read.expires < performance.now()) {
      this.#forget(key, read);
      return undefined;
    }
    return read;
  }

  /** A new read of `key`, replacing the one there (which fitted nobody who asks from now on), sent after the window. */
  #send<T>(key: string, kind: ReadKind, run: () => Promise<T>, weigh: (result: T) => number): Promise<T> {
    const old = this.#reads.get(key);
    if (old) this.#forget(key, old);
    const read: Read<T> = { key, sent: Infinity, result: undefined as unknown as Promise<T> };
    read.result = new Promise<T>((resolve, reject) => {
      const send = () => {
        read.sent = ++this.#clock;
        this.#onRead(kind, false);
        run().then(resolve, reject);
      };
      if (this.#windowMs > 0) setTimeout(send, this.#windowMs);
      else send();
    });
    this.#reads.set(key, read as Read<unknown>);
    read.result.then(
      (result) => {
        read.done = { value: result };
        this.#keep(key, read as Read<unknown>, weigh(result));
      },
      () => this.#forget(key, read as Read<unknown>),
    );
    return read.result;
  }

  /**
   * Counts a read. One that served again is kept `keepMs` longer and goes last in line for eviction: while a storm
   * lasts, the reads of the clients' own cursors, which every late resume starts with, stay.
   */
  #count<T>(kind: ReadKind, shared: boolean, result: T, served?: Read<unknown>): T {
    this.#onRead(kind, shared);
    if (served?.expires !== undefined && this.#reads.get(served.key) === served) {
      served.expires = performance.now() + this.#keepMs;
      this.#reads.delete(served.key);
      this.#reads.set(served.key, served);
    }
    return result;
  }

  /** A result came back: kept for `keepMs` while the kept bytes allow, oldest dropped first. */
  #keep(key: string, read: Read<unknown>, bytes: number): void {
    if (this.#reads.get(key) !== read) return;
    if (this.#keepMs <= 0 || bytes > this.#maxKeptBytes) {
      this.#reads.delete(key);
      return;
    }
    read.expires = performance.now() + this.#keepMs;
    read.bytes = bytes;
    this.#keptBytes += bytes;
    for (const [oldKey, old] of this.#reads) {
      if (this.#keptBytes <= this.#maxKeptBytes) break;
      if (old.bytes !== undefined) this.#forget(oldKey, old);
    }
    this.#sweep ??= setTimeout(() => this.#sweepExpired(), this.#keepMs).unref();
  }

  #sweepExpired(): void {
    this.#sweep = undefined;
    const now = performance.now();
    for (const [key, read] of this.#reads) if (read.expires !== undefined && read.expires <= now) this.#forget(key, read);
    let next = Infinity;
    for (const read of this.#reads.values()) if (read.expires !== undefined) next = Math.min(next, read.expires);
    if (next !== Infinity) this.#sweep = setTimeout(() => this.#sweepExpired(), Math.max(1, next - now)).unref();
  }

  #forget(key: string, read: Read<unknown>): void {
    if (this.#reads.get(key) !== read) return;
    this.#reads.delete(key);
    if (read.bytes !== undefined) this.#keptBytes -= read.bytes;
    if (this.#reads.size === 0) {
      clearTimeout(this.#sweep);
      this.#sweep = undefined;
    }
  }
}
