/**
 * How the load generator publishes: through the kit's own StreamPublisher (publish.lua on Redis) for our
 * server and the naive peer, or through nchan's HTTP publisher endpoint, pipelined on raw sockets.
 * Both send the same JSON message (the StreamPublisher shape), fire-and-forget with counters.
 */
import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { RedisBroker } from '../../server/src/broker/redis-broker.js';
import { StreamPublisher } from '../../server/src/publisher.js';
import { randomUUID } from 'node:crypto';
import { controlArgument, PUBLISH_LUA, PUBLISH_SHA } from '../../server/src/broker/publish-script.js';
import { DEFAULT_PREFIX, controlKey, logKey, stageChannel, stateKey } from '../../server/src/channels.js';
import { DEFAULTS } from '../../server/src/defaults.js';

export interface BenchPublisher {
  /** Sends one message of `type` with `fields` (its first two fields are `seq` and `t` for measured messages). */
  send(projectId: string, stage: string, type: string, fields: Record<string, unknown>): void;
  /** Sent and not yet acknowledged by the broker. */
  readonly inFlight: number;
  readonly errors: number;
  /** Resolves when nothing is in flight (or after `timeoutMs`). */
  drain(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
}

/** The kit's publisher: one StreamPublisher per stage, all on one RedisBroker whose commands are auto-pipelined. */
export class RedisBenchPublisher implements BenchPublisher {
  inFlight = 0;
  errors = 0;
  lastError: unknown;
  readonly #client: Redis;
  readonly #broker: RedisBroker;
  readonly #publishers = new Map<string, StreamPublisher>();

  constructor(redisUrl: string) {
    this.#client = new Redis(redisUrl, { ...RedisBroker.connectionOptions, enableAutoPipelining: true, connectionName: 'bench:publisher' });
    this.#broker = new RedisBroker({ client: this.#client, commandTimeoutMs: 30_000 });
  }

  send(projectId: string, stage: string, type: string, fields: Record<string, unknown>): void {
    const key = `${projectId}\n${stage}`;
    let publisher = this.#publishers.get(key);
    if (!publisher) {
      publisher = new StreamPublisher({ projectId, stage, broker: this.#broker });
      this.#publishers.set(key, publisher);
    }
    this.inFlight++;
    publisher.publish(type, fields).then(
      () => this.inFlight--,
      (error: unknown) => {
        this.inFlight--;
        this.errors++;
        this.lastError = error;
      },
    );
  }

  drain(timeoutMs = 30_000): Promise<void> {
    return waitUntil(() => this.inFlight === 0, timeoutMs);
  }

  async close(): Promise<void> {
    await this.drain(5000);
    await this.#broker.close();
    await this.#client.quit().catch(() => this.#client.disconnect());
  }
}

const RESPONSE = Buffer.from('HTTP/1.1 ');

/**
 * nchan's HTTP publisher (`POST /pub/{project}/{stage}`), pipelined on one keep-alive socket (one, so a channel's messages stay in order):
 * requests written in one tick leave in one write; responses are counted by their status lines.
 */
export class NchanBenchPublisher implements BenchPublisher {
  errors = 0;
  #sent = 0;
  #answered = 0;
  readonly #sockets: Socket[] = [];
  readonly #ready: Promise<unknown>;
  readonly #port: number;
  #next = 0;
  #corked = new Set<Socket>();

  constructor(port: number, sockets = 1) {
    this.#port = port;
    const opened: Promise<void>[] = [];
    for (let i = 0; i < sockets; i++) {
      const socket = connect({ port, host: '127.0.0.1', noDelay: true });
      let carry = '';
      socket.on('data', (data: Buffer) => {
        // Status lines never appear in nchan's short text bodies, so counting them counts the responses.
        const text = carry + data.toString('latin1');
        let at = text.indexOf('HTTP/1.1 ');
        let last = 0;
        while (at >= 0) {
          if (at + 9 >= text.length) break;
          this.#answered++;
          if (text.charCodeAt(at + 9) !== 50 /* 2xx */) this.errors++;
          last = at + 9;
          at = text.indexOf('HTTP/1.1 ', last);
        }
        carry = text.slice(Math.max(last, text.length - RESPONSE.length));
      });
      socket.on('error', () => {});
      opened.push(new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject)));
      this.#sockets.push(socket);
    }
    this.#ready = Promise.all(opened);
  }

  ready(): Promise<unknown> {
    return this.#ready;
  }

  get inFlight(): number {
    return this.#sent - this.#answered;
  }

  send(projectId: string, stage: string, type: string, fields: Record<string, unknown>): void {
    const body = JSON.stringify({ type, stage, project_id: projectId, timestamp: Date.now() / 1000, ...fields });
    const socket = this.#sockets[this.#next++ % this.#sockets.length]!;
    if (!this.#corked.has(socket)) {
      socket.cork();
      this.#corked.add(socket);
      if (this.#corked.size === 1) process.nextTick(() => this.#uncorkAll());
    }
    socket.write(
      `POST /pub/${projectId}/${stage} HTTP/1.1\r\nHost: 127.0.0.1:${this.#port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    this.#sent++;
  }

  #uncorkAll(): void {
    for (const socket of this.#corked) socket.uncork();
    this.#corked.clear();
  }

  drain(timeoutMs = 30_000): Promise<void> {
    return waitUntil(() => this.inFlight === 0, timeoutMs);
  }

  async close(): Promise<void> {
    await this.drain(5000);
    for (const socket of this.#sockets) socket.destroy();
  }
}

/**
 * What a worker's StreamPublisher sends, written as raw RESP: for each message, the same EVALSHA of publish.lua with
 * the same keys and arguments that RedisBroker.publish sends for StreamPublisher (its message JSON, the log's
 * length and TTL, and the control options of an idempotent, leased run: producer, sequence number, run, lease),
 * pipelined on one socket: commands written in one tick leave in one write, and replies are counted as they come.
 * It stands beside NchanBenchPublisher, which writes nchan's HTTP requests the same way, so that neither peer's
 * numbers are the cost of a Node client library on the load generator's core (the kit's own publisher, with its
 * checks, retries and timers, is `BENCH_PUBLISHER=kit`).
 */
export class RawRedisBenchPublisher implements BenchPublisher {
  errors = 0;
  lastError = '';
  #sent = 0;
  #answered = 0;
  readonly #socket: Socket;
  readonly #ready: Promise<unknown>;
  readonly #runs = new Map<string, { producer: string; seq: number }>();
  #corked = false;
  #carry = '';

  constructor(redisUrl: string) {
    const url = new URL(redisUrl);
    this.#socket = connect({ port: Number(url.port || 6379), host: url.hostname, noDelay: true });
    this.#socket.on('data', (data: Buffer) => this.#read(data.toString('latin1')));
    this.#socket.on('error', (error) => {
      this.errors++;
      this.lastError = String(error);
    });
    this.#ready = new Promise<void>((resolve, reject) => this.#socket.once('connect', resolve).once('error', reject)).then(() => {
      // The script, loaded as the broker loads it (EVALSHA finds it by the same SHA).
      this.#sent++;
      this.#socket.write(command(['SCRIPT', 'LOAD', PUBLISH_LUA]));
      return this.drain(10_000);
    });
  }

  ready(): Promise<unknown> {
    return this.#ready;
  }

  get inFlight(): number {
    return this.#sent - this.#answered;
  }

  send(projectId: string, stage: string, type: string, fields: Record<string, unknown>): void {
    const key = `${projectId}\n${stage}`;
    let run = this.#runs.get(key);
    if (!run) this.#runs.set(key, (run = { producer: randomUUID(), seq: 0 }));
    const message = JSON.stringify({ type, stage, project_id: projectId, timestamp: Date.now() / 1000, ...fields });
    const control = controlArgument(undefined, { producer: run.producer, seq: ++run.seq, run: run.producer, leaseMs: DEFAULTS.leaseMs });
    const args = [
      'EVALSHA', PUBLISH_SHA, '3', logKey(PREFIX, projectId), stateKey(PREFIX, projectId), controlKey(PREFIX, projectId),
      stageChannel(PREFIX, projectId, stage), stage, type, message, String(DEFAULTS.logMaxLen), String(DEFAULTS.logTtlSeconds), control,
    ];
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#socket.write(command(args));
    this.#sent++;
  }

  /** Counts replies: publish.lua answers a bulk string (the id) or an error line; SCRIPT LOAD a bulk string. */
  #read(text: string): void {
    const data = this.#carry + text;
    let at = 0;
    for (;;) {
      const end = data.indexOf('\r\n', at);
      if (end < 0) break;
      const kind = data.charCodeAt(at);
      if (kind === 36 /* $ */) {
        const length = Number(data.slice(at + 1, end));
        const next = end + 2 + Math.max(0, length) + (length >= 0 ? 2 : 0);
        if (next > data.length) break;
        at = next;
      } else {
        if (kind === 45 /* - */) {
          this.errors++;
          this.lastError = data.slice(at, end);
        }
        at = end + 2;
      }
      this.#answered++;
    }
    this.#carry = data.slice(at);
  }

  drain(timeoutMs = 30_000): Promise<void> {
    return waitUntil(() => this.inFlight === 0, timeoutMs);
  }

  async close(): Promise<void> {
    await this.drain(5000);
    this.#socket.destroy();
  }
}

const PREFIX = DEFAULT_PREFIX;

/** One RESP command (an array of bulk strings). */
function command(args: readonly string[]): string {
  let out = `*${args.length}\r\n`;
  for (const arg of args) out += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
  return out;
}
