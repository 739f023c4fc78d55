/**
 * The reconnect storm, the load generator's side (bench/lib/storm.ts is the orchestrator's): clients spread over
 * projects, each a raw socket that keeps its last SSE `id:` and checks that its project's `seq` goes up by one; a
 * publisher on every project all along; the cut, and every client's reconnect with its `Last-Event-ID`.
 */
import { connect, type Socket } from 'node:net';
import { LatencyHistogram } from './histogram.js';
import { stormPath, type StormClientsResult, type StormFinish, type StormOpen, type StormOpened, type StormResume, type StormResumed } from './storm.js';
import { NchanBenchPublisher, RedisBenchPublisher, type BenchPublisher } from './publishers.js';
import { now } from './sse-connection.js';

/** Source addresses 127.0.0.2 .. 127.0.0.61, as the other scenarios use, so 5,000 sockets never run out of ports. */
const SOURCES = 60;
const PAD = 'x'.repeat(64);
const HEAD_END = '\r\n\r\n';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What every client of the storm adds to. */
interface Tally {
  /** Publish-to-receive latency of messages published after the reconnect began, received before every client was live. */
  during: LatencyHistogram;
  /** Every message received between the reconnect and the last client live: what the clients missed included. */
  catchUp: LatencyHistogram;
  /** now() when the reconnect began; Infinity before. */
  goAt: number;
  /** now() when the last client was live again; Infinity before. */
  liveAt: number;
}

class StormClient {
  lastId: string | undefined;
  /** The next seq expected; -1 before the first. */
  next = -1;
  gaps = 0;
  dupes = 0;
  /** now() of the first message after the latest connect; undefined until it came. */
  firstAt: number | undefined;
  closed = true;
  status = 0;
  #socket: Socket | undefined;
  #head: string | undefined;
  #chunked = false;
  #chunkLeft = -1;
  #sizeLine = '';
  #skipCrlf = 0;
  #text = '';
  #onClose: (() => void) | undefined;
  /** Set by close(): the end was ours, not the server's. */
  #closing = false;
  /** Called when the server ends a stream that was open (not for one we closed). */
  onDrop: ((client: StormClient) => void) | undefined;

  constructor(
    readonly project: number,
    readonly path: string,
    readonly port: number,
    readonly source: string,
    readonly tally: Tally,
  ) {}

  /** Opens the stream (with `Last-Event-ID` when it has one): resolves on a 200 head, rejects when the socket fails first. */
  open(): Promise<void> {
    this.closed = false;
    this.#closing = false;
    this.status = 0;
    this.firstAt = undefined;
    this.#head = '';
    this.#chunked = false;
    this.#chunkLeft = -1;
    this.#sizeLine = '';
    this.#skipCrlf = 0;
    this.#text = '';
    return new Promise((resolve, reject) => {
      let settled = false;
      const socket = (this.#socket = connect({ port: this.port, host: '127.0.0.1', localAddress: this.source, noDelay: true }));
      const resume = this.lastId === undefined ? '' : `Last-Event-ID: ${this.lastId}\r\n`;
      socket.on('connect', () =>
        socket.write(`GET ${this.path} HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n${resume}\r\n`),
      );
      socket.on('data', (data: Buffer) => {
        this.#data(data.toString('latin1'));
        if (!settled && this.status !== 0) {
          settled = true;
          if (this.status === 200) resolve();
          else reject(new Error(`status ${this.status}`));
        }
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        this.closed = true;
        if (!settled) {
          settled = true;
          reject(new Error(`closed before the head (status ${this.status})`));
        } else if (this.status === 200 && !this.#closing) this.onDrop?.(this);
        this.#onClose?.();
      });
    });
  }

  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => (this.#onClose = resolve));
  }

  close(): void {
    this.#closing = true;
    this.#socket?.destroy();
  }

  #data(text: string): void {
    if (this.#head !== undefined) {
      const head = this.#head + text;
      const end = head.indexOf(HEAD_END);
      if (end < 0) {
        this.#head = head;
        return;
      }
      this.#head = undefined;
      this.status = Number(head.slice(9, 12));
      if (this.status !== 200) return void this.#socket?.destroy();
      this.#chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head.slice(0, end));
      text = head.slice(end + 4);
    }
    if (!this.#chunked) return this.#body(text);
    let i = 0;
    while (i < text.length) {
      if (this.#skipCrlf > 0) {
        const skip = Math.min(this.#skipCrlf, text.length - i);
        this.#skipCrlf -= skip;
        i += skip;
      } else if (this.#chunkLeft < 0) {
        const lf = text.indexOf('\n', i);
        if (lf < 0) {
          this.#sizeLine += text.slice(i);
          return;
        }
        const size = parseInt(this.#sizeLine + text.slice(i, lf), 16);
        this.#sizeLine = '';
        i = lf + 1;
        if (size === 0) return void this.#socket?.destroy();
        this.#chunkLeft = size;
      } else {
        const take = Math.min(this.#chunkLeft, text.length - i);
        this.#body(text.slice(i, i + take));
        i += take;
        this.#chunkLeft -= take;
        if (this.#chunkLeft === 0) {
          this.#chunkLeft = -1;
          this.#skipCrlf = 2;
        }
      }
    }
  }

  /** Whole SSE events only: an `id:` line moves the cursor, a `"seq":N,"t":T` pair is checked and timed. */
  #body(text: string): void {
    this.#text += text;
    let start = 0;
    for (;;) {
      const end = this.#text.indexOf('\n\n', start);
      if (end < 0) break;
      this.#event(this.#text.slice(start, end));
      start = end + 2;
    }
    this.#text = this.#text.slice(start);
  }

  #event(block: string): void {
    const at = block.indexOf('"seq":');
    if (at < 0) return;
    const idAt = block.startsWith('id:') ? 0 : block.indexOf('\nid:') + 1;
    if (idAt > 0 || block.startsWith('id:')) {
      const lineEnd = block.indexOf('\n', idAt);
      this.lastId = block.slice(idAt + 3, lineEnd < 0 ? undefined : lineEnd).trim();
    }
    const seq = parseInt(block.slice(at + 6), 10);
    const tAt = block.indexOf('"t":', at);
    const t = tAt < 0 ? Number.NaN : parseFloat(block.slice(tAt + 4));
    const received = now();
    if (this.next < 0 || seq === this.next) this.next = seq + 1;
    else if (seq < this.next) return void this.dupes++;
    else {
      this.gaps += seq - this.next;
      this.next = seq + 1;
    }
    this.firstAt ??= received;
    const tally = this.tally;
    if (received >= tally.goAt && received <= tally.liveAt && Number.isFinite(t)) {
      tally.catchUp.record(received - t);
      if (t >= tally.goAt) tally.during.record(received - t);
    }
  }
}

let clients: StormClient[] = [];
let publisher: BenchPublisher | undefined;
let publishing: NodeJS.Timeout | undefined;
/** Messages published per project: the seq the next one gets. */
let published: number[] = [];
const tally: Tally = { during: new LatencyHistogram(), catchUp: new LatencyHistogram(), goAt: Infinity, liveAt: Infinity };
/** From the reconnect on, a stream the server ends (a broker error, a slow consumer) is resumed again, as a browser does. */
let resumeDropped = false;
let drops = 0;

function resumeAgain(client: StormClient): void {
  if (!resumeDropped) return;
  drops++;
  void (async () => {
    for (let attempt = 0; attempt < 50 && resumeDropped; attempt++) {
      await sleep(100 + Math.random() * 200);
      try {
        return await client.open();
      } catch {
        // the server is busy: again
      }
    }
  })();
}

/** Opens every client fresh, starts the publisher, and resolves once each client has an id to resume from. */
export async function stormOpen(command: StormOpen): Promise<StormOpened> {
  tally.during.reset();
  tally.catchUp.reset();
  tally.goAt = tally.liveAt = Infinity;
  resumeDropped = false;
  drops = 0;
  clients = Array.from(
    { length: command.clients },
    (_, i) => new StormClient(i % command.projects, stormPath(command, i % command.projects), command.port, `127.0.0.${2 + (i % SOURCES)}`, tally),
  );
  const started = now();
  let failed = 0;
  let index = 0;
  await Promise.all(
    Array.from({ length: 256 }, async () => {
      while (index < clients.length) {
        const client = clients[index++]!;
        try {
          await client.open();
        } catch {
          failed++;
        }
      }
    }),
  );
  const openMs = now() - started;
  publisher = command.publish.via === 'redis' ? new RedisBenchPublisher(command.publish.url) : new NchanBenchPublisher(command.port);
  if (publisher instanceof NchanBenchPublisher) await publisher.ready();
  published = new Array(command.projects).fill(0);
  // Open loop, round-robin over the projects, as the other scenarios publish.
  const begun = now();
  let sent = 0;
  const pub = publisher;
  publishing = setInterval(() => {
    const due = Math.floor(((now() - begun) * command.rate) / 1000);
    for (; sent < due; sent++) {
      const project = sent % command.projects;
      const seq = published[project]!++;
      pub.send(`${command.projectPrefix}${project}`, command.stage, 'progress', { seq, t: Math.round(now() * 1000) / 1000, item_name: PAD });
    }
  }, 2);
  const deadline = now() + 30_000;
  while (clients.some((c) => !c.closed && c.lastId === undefined) && now() < deadline) await sleep(20);
  return { opened: clients.length - failed, failed, openMs, withId: clients.filter((c) => c.lastId !== undefined).length };
}

/**
 * The cut and the storm: `sockets` destroys every client's socket here; `server` means the orchestrator killed the
 * server (this waits until every socket saw it). Then each client reconnects with its `Last-Event-ID` after a
 * random delay within `spreadMs`, again after a failed attempt, until each got its first message.
 */
export async function stormResume(command: StormResume): Promise<StormResumed> {
  if (command.cut === 'sockets') for (const client of clients) client.close();
  await Promise.race([Promise.all(clients.map((c) => c.whenClosed())), sleep(30_000)]);
  const cursors = new Set(clients.map((c) => `${c.project} ${c.lastId ?? ''}`)).size;
  resumeDropped = true;
  for (const client of clients) client.onDrop = resumeAgain;
  const goAt = (tally.goAt = now());
  const cpu = process.cpuUsage();
  let retries = 0;
  let failed = 0;
  await Promise.all(
    clients.map(async (client) => {
      await sleep(Math.random() * command.spreadMs);
      for (let attempt = 0; ; attempt++) {
        try {
          await client.open();
          return;
        } catch {
          if (attempt >= 50) return void failed++;
          retries++;
          await sleep(100 + Math.random() * 200);
        }
      }
    }),
  );
  const deadline = now() + 60_000;
  while (clients.some((c) => !c.closed && c.firstAt === undefined) && now() < deadline) await sleep(5);
  const firsts = clients.map((c) => c.firstAt).filter((t): t is number => t !== undefined);
  tally.liveAt = firsts.length > 0 ? Math.max(...firsts) : now();
  const notLive = clients.length - firsts.length;
  const used = process.cpuUsage(cpu);
  const loadgenCpu = (used.user + used.system) / 1000 / Math.max(1, now() - goAt);
  return { ms: tally.liveAt - goAt, cursors, retries, failed, notLive, goAt, loadgenCpu };
}

/** Publishes `afterMs` longer, stops, waits until each client has its project's last message, and counts. */
export async function stormFinish(command: StormFinish): Promise<StormClientsResult> {
  await sleep(command.afterMs);
  clearInterval(publishing);
  await publisher?.drain(10_000);
  const deadline = now() + 15_000;
  const behind = () => clients.filter((c) => !c.closed && c.next < published[c.project]!).length;
  while (behind() > 0 && now() < deadline) await sleep(20);
  resumeDropped = false;
  let lost = 0;
  let repeated = 0;
  let clientsWithLoss = 0;
  for (const client of clients) {
    const missing = client.gaps + Math.max(0, published[client.project]! - client.next);
    lost += missing;
    repeated += client.dupes;
    if (missing > 0 || client.dupes > 0) clientsWithLoss++;
  }
  const result = {
    clients: clients.length,
    published: published.reduce((a, b) => a + b, 0),
    lost,
    repeated,
    clientsWithLoss,
    closedAtEnd: clients.filter((c) => c.closed).length,
    p50DuringMs: tally.during.quantile(0.5),
    p99DuringMs: tally.during.quantile(0.99),
    samplesDuring: tally.during.count,
    p99CatchUpMs: tally.catchUp.quantile(0.99),
    maxCatchUpMs: tally.catchUp.max,
    publisherErrors: publisher?.errors ?? 0,
    drops,
  };
  for (const client of clients) client.close();
  await Promise.race([Promise.all(clients.map((c) => c.whenClosed())), sleep(5000)]);
  await publisher?.close();
  publisher = undefined;
  clients = [];
  return result;
}
