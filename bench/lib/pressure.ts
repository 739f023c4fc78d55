/**
 * The pressure scenario (issue 17, item 3): a viewer that reads at 20 KB/s while a 5,000-token answer is published
 * as fast as a worker can. In the original format each token carries the whole text so far, so the answer is about
 * 100 MB on the wire: far beyond what the viewer can read, and beyond the server's hard bound (SSE_MAX_BUFFER_BYTES,
 * 1 MiB) many times over. With priorities the server holds the viewer's live messages while its socket is above the
 * soft bound and merges them, so the viewer stays connected and ends with the exact text and every control event,
 * and the server's memory stays bounded. Measured: whether it stayed connected, the token events it got, the bytes it
 * read, its final text, and the server's peak RSS against its RSS before.
 *
 * Runs from bench/run.ts (`BENCH_ONLY=pressure`, ours only) and writes bench/results/pressure.md (+ pressure.json).
 */
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createParser } from 'eventsource-parser';
import { RedisBroker } from '../../server/src/broker/redis-broker.js';
import { StreamPublisher } from '../../server/src/publisher.js';
import { peakRssBytes, resetPeakRss, rssBytes } from './proc.js';
import { ROOT } from './targets.js';

export const PRESSURE_READ_BYTES_PER_SECOND = 20 * 1024;

export interface PressureResult {
  tokens: number;
  readBytesPerSecond: number;
  /** Bytes the answer would cost in the original format, a frame per token. */
  originalBytes: number;
  /** What the viewer read, and how long it took to get the done. */
  readBytes: number;
  seconds: number;
  connectedThroughout: boolean;
  tokenEvents: number;
  controlEvents: number;
  controlEventsPublished: number;
  textExact: boolean;
  rssBeforeBytes: number;
  rssPeakBytes: number;
}

export async function runPressure(options: { redisUrl: string; hubPid: number; port: number; quick?: boolean }): Promise<PressureResult> {
  const tokens = options.quick ? 1500 : 5000;
  const broker = new RedisBroker({ url: options.redisUrl });
  const projectId = `pressure-${Date.now()}`;
  // A raw socket read through a token bucket: 20 KB/s, whatever the server sends.
  const socket = connect(options.port, '127.0.0.1');
  // HTTP/1.0: the body comes as it is, not chunked, for the parser to read straight.
  socket.write(`GET /api/v1/sse/projects/${projectId}/ HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
  let readBytes = 0;
  let head = '';
  let closed = false;
  const events: Array<{ event: string; data: Record<string, unknown> }> = [];
  const parser = createParser({ onEvent: (e) => events.push({ event: e.event ?? 'message', data: JSON.parse(e.data) as Record<string, unknown> }) });
  const decoder = new TextDecoder();
  socket.on('close', () => (closed = true));
  socket.on('data', (chunk: Buffer) => {
    readBytes += chunk.length;
    let text = decoder.decode(chunk, { stream: true });
    if (!head.includes('\r\n\r\n')) {
      head += text;
      const at = head.indexOf('\r\n\r\n');
      if (at < 0) return;
      text = head.slice(at + 4);
    }
    parser.feed(text);
    socket.pause();
    setTimeout(() => socket.resume(), (chunk.length / PRESSURE_READ_BYTES_PER_SECOND) * 1000);
  });
  // The socket's receive buffer is the kernel's: keep it small, so reading slowly is slow.
  socket.setNoDelay(true);
  const until = async (check: () => boolean, ms: number) => {
    const deadline = Date.now() + ms;
    while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    return check();
  };
  await until(() => events.some((e) => e.event === 'connected'), 10_000);

  resetPeakRss(options.hubPid);
  const rssBeforeBytes = rssBytes(options.hubPid);
  const started = Date.now();
  const stages = ['rewrite', 'storyboard'];
  const pubs = stages.map((stage) => new StreamPublisher({ projectId, stage, broker }));
  const texts = stages.map(() => '');
  let originalBytes = 0;
  let controlEventsPublished = 0;
  for (const pub of pubs) {
    await pub.publishStageUpdate('processing', 0);
    controlEventsPublished++;
  }
  for (let n = 0; n < tokens; n++) {
    const s = n % 2;
    texts[s] += ` w${n}`;
    originalBytes += texts[s]!.length + 150;
    await pubs[s]!.publishToken(` w${n}`, texts[s]!);
  }
  for (const [i, pub] of pubs.entries()) {
    await pub.publishDone(texts[i]!);
    controlEventsPublished++;
  }
  await until(() => events.filter((e) => e.event === 'done').length === stages.length || closed, options.quick ? 120_000 : 300_000);
  const seconds = (Date.now() - started) / 1000;
  const rssPeakBytes = Math.max(peakRssBytes(options.hubPid), rssBytes(options.hubPid));
  const connectedThroughout = !closed;
  socket.destroy();
  for (const pub of pubs) await pub.close();
  await broker.close();

  const tokenEvents = events.filter((e) => e.event === 'token');
  const textExact = stages.every((stage, i) => {
    const mine = tokenEvents.filter((e) => e.data.stage === stage);
    const done = events.find((e) => e.event === 'done' && e.data.stage === stage);
    return mine.map((e) => e.data.content).join('') === texts[i] && done?.data.full_text === texts[i];
  });
  return {
    tokens,
    readBytesPerSecond: PRESSURE_READ_BYTES_PER_SECOND,
    originalBytes,
    readBytes,
    seconds,
    connectedThroughout,
    tokenEvents: tokenEvents.length,
    controlEvents: events.filter((e) => e.event === 'stage_update' || e.event === 'done').length,
    controlEventsPublished,
    textExact,
    rssBeforeBytes,
    rssPeakBytes,
  };
}

export function writePressureReport(r: PressureResult, commit: string): string {
  const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  const text = `# A slow viewer during a burst (priorities under pressure)

Commit \`${commit}\`. ${r.tokens.toLocaleString('en')} tokens over two stages published as fast as the worker can, to one viewer in the
original format (each token frame carries the whole text so far) that reads ${r.readBytesPerSecond / 1024} KB/s. \`npm run bench\`
(\`BENCH_ONLY=pressure\`).

| | |
| --- | ---: |
| the answer in the original format, a frame per token | ${mb(r.originalBytes)} |
| what the viewer read | ${mb(r.readBytes)} in ${r.seconds.toFixed(1)} s |
| stayed connected (never dropped as too slow) | ${r.connectedThroughout ? 'yes' : 'NO'} |
| token events it got (tokens merged while it was behind) | ${r.tokenEvents.toLocaleString('en')} of ${r.tokens.toLocaleString('en')} |
| control events (stage_update, done) | ${r.controlEvents} of ${r.controlEventsPublished} |
| its text, from the pieces and from done, exact | ${r.textExact ? 'yes' : 'NO'} |
| server RSS before / peak | ${mb(r.rssBeforeBytes)} / ${mb(r.rssPeakBytes)} |
`;
  const file = join(ROOT, 'bench/results/pressure.md');
  writeFileSync(file, text);
  writeFileSync(join(ROOT, 'bench/results/pressure.json'), JSON.stringify({ commit, ...r }, null, 2) + '\n');
  return file;
}
