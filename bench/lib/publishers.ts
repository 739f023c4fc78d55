/**
 * How the load generator publishes: through the kit's own StreamPublisher (publish.lua on Redis) for our
 * server and the naive peer, or through nchan's HTTP publisher endpoint, pipelined on raw sockets.
 * Both send the same JSON message (the StreamPublisher shape), fire-and-forget with counters.
 */
import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { RedisBroker } from '../../server/src/broker/redis-broker.js';
import { StreamPublisher } from '../../server/src/publisher.js';

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
