/**
 * The reconnect storm (issue 20, item 4): 5,000 clients over 100 projects (a fifth with BENCH_QUICK=1), a worker
 * publishing on every project all along; every connection is cut at once and every client resumes with its
 * `Last-Event-ID`. Ours: the hub process is SIGKILLed and started again on its port (the realistic case: a restart),
 * and the clients reconnect once it answers; then, on the warm process, the clients' sockets are cut, as nchan's are
 * (its messages live in nginx's memory, which a restart would lose). Measured: the time until every client is live again (its first message after
 * the reconnect), the publish-to-receive latency meanwhile, the log reads (our hub's counters and Redis's
 * `INFO commandstats`), and on every client any message lost or repeated.
 *
 * Runs from bench/run.ts (`BENCH_ONLY=storm`; ours and nchan), the clients in the load generator
 * (storm-clients.ts); writes bench/results/storm.md (+ storm.json).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { CommandBody } from './protocol.js';
import { ROOT, startOurs, startRedis, type Running } from './targets.js';

/** The scenario's sizes: the issue's, or a fifth. */
export function stormSizes(quick: boolean) {
  return {
    clients: quick ? 1000 : 5000,
    projects: quick ? 20 : 100,
    /** Messages per second on each project, before, during and after the storm. */
    ratePerProject: 5,
    /** Each client reconnects after a random delay up to this (a browser's own jitter). */
    spreadMs: 250,
    /** Publishing goes on this long after the last client is live, before the final check. */
    afterMs: 2000,
  };
}

export interface StormOpen {
  port: number;
  publish: { via: 'redis'; url: string } | { via: 'nchan-http' };
  clients: number;
  projects: number;
  projectPrefix: string;
  stage: string;
  /** Appended to each stream's path. */
  query: string;
  /** Messages per second, all projects together. */
  rate: number;
}

export interface StormOpened {
  opened: number;
  failed: number;
  openMs: number;
  /** Clients that had an id to resume from when the cut came. */
  withId: number;
}

export interface StormResume {
  cut: 'server' | 'sockets';
  spreadMs: number;
}

export interface StormResumed {
  /** From the reconnect's start to the last client's first message after it, ms. */
  ms: number;
  /** Distinct (project, Last-Event-ID) pairs the clients resumed from. */
  cursors: number;
  retries: number;
  /** Clients that could not reconnect within 50 attempts. */
  failed: number;
  /** Clients connected again that got no message within 60 s. */
  notLive: number;
  goAt: number;
  /** CPU share of the load generator's core from the reconnect to the last client live. */
  loadgenCpu: number;
}

export interface StormFinish {
  afterMs: number;
}

export interface StormClientsResult {
  clients: number;
  published: number;
  /** Messages of their project some client never got (summed over clients), and those a client got twice. */
  lost: number;
  repeated: number;
  clientsWithLoss: number;
  closedAtEnd: number;
  /** Publish-to-receive latency of the messages published after the reconnect began, until the last client was live. */
  p50DuringMs: number;
  p99DuringMs: number;
  samplesDuring: number;
  /** Every message received from the reconnect to the last client live, those published while cut included. */
  p99CatchUpMs: number;
  maxCatchUpMs: number;
  publisherErrors: number;
  /** Streams the server ended after the reconnect (a broker error, a slow consumer), each resumed again by its client. */
  drops: number;
}

export interface StormReads {
  /** sse_log_reads_total / sse_log_reads_coalesced_total by kind, from the restarted hub's /metrics. */
  hub: Record<string, { sent: number; shared: number }>;
  /** Calls Redis served meanwhile (INFO commandstats, differenced): a resume's page is one MULTI of two XRANGEs. */
  redis: { xrange: number; xrevrange: number; exec: number };
}

export interface StormResult {
  target: 'ours' | 'nchan';
  cut: string;
  clients: number;
  projects: number;
  rate: number;
  opened: StormOpened;
  /** Ours: from the SIGKILL to the new process's first /healthz 200, ms. */
  downMs?: number;
  resumed: StormResumed;
  /** From the cut (the SIGKILL, or the sockets cut) to the last client live, ms. */
  fromCutMs: number;
  finish: StormClientsResult;
  reads?: StormReads;
}

export function stormPath(open: Pick<StormOpen, 'projectPrefix' | 'stage' | 'query'>, project: number): string {
  return `/api/v1/sse/projects/${open.projectPrefix}${project}/stages/${open.stage}/${open.query}`;
}

type Call = <T>(command: CommandBody) => Promise<T>;

export interface StormOptions {
  target: 'ours' | 'nchan';
  call: Call;
  quick: boolean;
  serverCpu: string;
  redisCpu: string;
  /** nchan: the running nginx's port. */
  nchanPort?: number;
  log: (line: string) => void;
}

async function commandStats(admin: Redis): Promise<StormReads['redis']> {
  const text = await admin.info('commandstats');
  const calls = (name: string) => Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { xrange: calls('xrange'), xrevrange: calls('xrevrange'), exec: calls('exec') };
}

async function hubReads(port: number): Promise<StormReads['hub']> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const reads: StormReads['hub'] = {};
  for (const [, name, kind, value] of text.matchAll(/^sse_log_reads_(total|coalesced_total)\{kind="([a-z_]+)"\} (\d+)/gm)) {
    const entry = (reads[kind!] ??= { sent: 0, shared: 0 });
    if (name === 'total') entry.sent = Number(value);
    else entry.shared = Number(value);
  }
  return reads;
}

/**
 * The storms of one target: nchan, its clients' sockets cut; ours, the hub restarted (SIGKILL, start again), then on
 * the warm process the clients' sockets cut as nchan's are (the like-for-like comparison).
 */
export async function runStorm(o: StormOptions): Promise<StormResult[]> {
  const sizes = stormSizes(o.quick);
  const rate = sizes.ratePerProject * sizes.projects;
  const base = { clients: sizes.clients, projects: sizes.projects, projectPrefix: 'storm', stage: 'rewrite', rate };
  const socketStorm = async (port: number, publish: StormOpen['publish'], query: string, prefix: string) => {
    const opened = await o.call<StormOpened>({ cmd: 'stormOpen', ...base, projectPrefix: prefix, port, publish, query });
    o.log(`    ${opened.opened} clients open in ${(opened.openMs / 1000).toFixed(1)} s, ${opened.withId} with an id; cutting their sockets`);
    const cutAt = performance.now();
    const resumed = await o.call<StormResumed>({ cmd: 'stormResume', cut: 'sockets', spreadMs: sizes.spreadMs });
    const fromCutMs = performance.now() - cutAt;
    const finish = await o.call<StormClientsResult>({ cmd: 'stormFinish', afterMs: sizes.afterMs });
    return { ...base, projectPrefix: prefix, opened, resumed, fromCutMs, finish };
  };
  if (o.target === 'nchan') {
    const r = await socketStorm(o.nchanPort!, { via: 'nchan-http' }, '', 'storm');
    return [{ target: 'nchan', cut: 'client sockets cut at once', ...r }];
  }

  const redis = await startRedis(o.redisCpu);
  const admin = new Redis(redis.url);
  let server: Running | undefined;
  const readsSince = async (port: number, before: StormReads['redis'], hubBefore: StormReads['hub']): Promise<StormReads> => {
    const after = await commandStats(admin);
    const hub = await hubReads(port);
    for (const [kind, v] of Object.entries(hub)) {
      v.sent -= hubBefore[kind]?.sent ?? 0;
      v.shared -= hubBefore[kind]?.shared ?? 0;
    }
    return { hub, redis: { xrange: after.xrange - before.xrange, xrevrange: after.xrevrange - before.xrevrange, exec: after.exec - before.exec } };
  };
  try {
    server = await startOurs(o.serverCpu, redis.url);
    const port = server.port;
    const publish = { via: 'redis', url: redis.url } as const;
    const opened = await o.call<StormOpened>({ cmd: 'stormOpen', ...base, port, publish, query: '?snapshot=0' });
    o.log(`    ${opened.opened} clients open in ${(opened.openMs / 1000).toFixed(1)} s, ${opened.withId} with an id; SIGKILL to the hub`);
    const before = await commandStats(admin);
    const cutAt = performance.now();
    process.kill(server.pid, 'SIGKILL');
    await server.stop();
    server = await startOurs(o.serverCpu, redis.url, port);
    const downMs = performance.now() - cutAt;
    o.log(`    the hub is back after ${downMs.toFixed(0)} ms; ${sizes.clients} clients reconnect`);
    const resumed = await o.call<StormResumed>({ cmd: 'stormResume', cut: 'server', spreadMs: sizes.spreadMs });
    const fromCutMs = performance.now() - cutAt;
    const finish = await o.call<StormClientsResult>({ cmd: 'stormFinish', afterMs: sizes.afterMs });
    const reads = await readsSince(port, before, {});
    const restart: StormResult = { target: 'ours', cut: 'hub process SIGKILLed and started again', ...base, opened, downMs, resumed, fromCutMs, finish, reads };
    o.log(`    restart: all live again ${resumed.ms.toFixed(0)} ms after the reconnect; then the same storm as nchan's on the warm process:`);
    // New projects, so the first storm's kept reads cannot serve this one.
    const stats = await commandStats(admin);
    const hubBefore = await hubReads(port);
    const r = await socketStorm(port, publish, '?snapshot=0', 'warm');
    const sockets: StormResult = { target: 'ours', cut: 'client sockets cut at once (warm process)', ...r, reads: await readsSince(port, stats, hubBefore) };
    return [restart, sockets];
  } finally {
    await admin.quit().catch(() => admin.disconnect());
    await server?.stop();
    await redis.stop();
  }
}

export interface StormCheck {
  status: 'met' | 'NOT met';
  detail: string;
}

/** The issue's target: resume reads ≤ 1 per project and cursor per process; no gap, no duplicate, every client live. */
export function stormCheck(r: StormResult): StormCheck {
  const exact = r.finish.lost === 0 && r.finish.repeated === 0 && r.resumed.notLive === 0 && r.resumed.failed === 0;
  const loss = `${r.finish.lost} lost, ${r.finish.repeated} repeated over ${r.clients} clients${r.resumed.notLive + r.resumed.failed > 0 ? `, ${r.resumed.notLive + r.resumed.failed} not live again` : ''}`;
  if (!r.reads) return { status: exact ? 'met' : 'NOT met', detail: `${loss}; no log reads (nchan keeps its messages in nginx's memory)` };
  const first = r.reads.hub.replay ?? { sent: 0, shared: 0 };
  const ok = exact && first.sent <= r.resumed.cursors;
  return {
    status: ok ? 'met' : 'NOT met',
    detail: `${first.sent} first-page log reads for ${r.resumed.cursors} distinct project+cursor pairs (${first.shared} resumes served from a shared read); ${loss}`,
  };
}

const int = (v: number) => Math.round(v).toLocaleString('en-US');
const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));

/** bench/results/storm.md and storm.json, from this run's storms (ours: restart and sockets cut; nchan: sockets cut). */
export function writeStormReport(results: StormResult[], commit: string, quick: boolean): string {
  const label = (r: StormResult) => `${r.target === 'ours' ? 'ours' : 'nginx + nchan'}, ${r.downMs === undefined ? 'sockets cut' : 'restart'}`;
  const row = (name: string, value: (r: StormResult) => number | undefined, format: (v: number | undefined) => string = ms) =>
    `| ${name} | ${results.map((r) => format(value(r))).join(' | ')} |`;
  const count = (v: number | undefined) => (v === undefined ? '–' : int(v));
  const ours = results.filter((r) => r.reads);
  const sample = results[0]!;
  const sizes = stormSizes(quick);
  const byCut = (cut: boolean) => results.find((r) => r.target === 'ours' && (r.downMs === undefined) === cut);
  const warm = byCut(true);
  const nchan = results.find((r) => r.target === 'nchan');
  const text = `# Reconnect storm (issue 20, item 4)

${int(sample.clients)} clients on ${sample.projects} projects (${int(sample.clients / sample.projects)} per project, one stage stream each), a worker publishing
${int(sample.rate / sample.projects)} messages/s on every project throughout; every connection cut at once, every client resuming with its
\`Last-Event-ID\` after a random delay of up to ${sizes.spreadMs} ms.${quick ? ' **Quick run** (a fifth of the size).' : ''} Commit ${commit}, ${new Date().toISOString()}.

- **ours, restart**: the hub process SIGKILLed and started again on its port; the clients reconnect once it answers /healthz.
- **ours, sockets cut** and **nginx + nchan, sockets cut**: every client's socket cut at once by the load generator, the server
  running on (nchan keeps its messages in nginx's memory, which a restart would lose: this is its storm).

| | ${results.map(label).join(' | ')} |
| --- |${results.map(() => ' ---: |').join('')}
${row('hub down, SIGKILL to the first /healthz 200 of the new process (ms)', (r) => r.downMs)}
${row('time from the reconnect until every client is live again (ms)', (r) => r.resumed.ms)}
${row('  from the cut itself (ms)', (r) => r.fromCutMs)}
${row('p50 publish-to-receive latency of messages published during the storm (ms)', (r) => r.finish.p50DuringMs)}
${row('p99 of the same (ms)', (r) => r.finish.p99DuringMs)}
${row('p99 of every message received meanwhile, those published while cut included (ms)', (r) => r.finish.p99CatchUpMs)}
${row('messages lost, over every client', (r) => r.finish.lost, count)}
${row('messages repeated', (r) => r.finish.repeated, count)}
${row('distinct project + cursor pairs resumed from', (r) => r.resumed.cursors, count)}
${row("log reads sent to Redis for the resumes' first pages", (r) => r.reads?.hub.replay?.sent, count)}
${row('resumes whose first page came from a shared read', (r) => r.reads?.hub.replay?.shared, count)}
${row('reads of the pages after it (a shared page that did not fit a later resume, read on)', (r) => r.reads?.hub.replay_page?.sent, count)}
${row('XRANGE calls Redis served (two per page read)', (r) => r.reads?.redis.xrange, count)}
${row('reconnect attempts that failed and were retried', (r) => r.resumed.retries, count)}
${row('streams the server ended after the reconnect (each resumed again)', (r) => r.finish.drops, count)}
${row('load generator CPU, reconnect to all live (% of its core)', (r) => r.resumed.loadgenCpu * 100, (v) => (v === undefined ? '–' : `${Math.round(v)}%`))}

Ratios from this run: ours (sockets cut) ÷ nchan, time until all live ${warm && nchan ? `${(warm.resumed.ms / nchan.resumed.ms).toFixed(2)}×` : '–'}, p99 during the storm ${warm && nchan ? `${(warm.finish.p99DuringMs / nchan.finish.p99DuringMs).toFixed(2)}×` : '–'}.
${ours.length === 0 ? '' : `\nRedis served during each of ours (\`INFO commandstats\`, differenced over the storm and the ${sizes.afterMs / 1000} s after it): ${ours.map((r) => `${label(r)}: ${int(r.reads!.redis.xrange)} \`XRANGE\`, ${int(r.reads!.redis.exec)} \`EXEC\``).join('; ')}. A page read is one \`MULTI\` of two \`XRANGE\`s (does the cursor exist, and what follows it).\n`}
## Targets

${results.map((r) => `- **${stormCheck(r).status}** — ${label(r)}: resume reads ≤ 1 per project and cursor per process; no gap/duplicate: ${stormCheck(r).detail}`).join('\n')}

## How

- \`BENCH_ONLY=storm npm run bench\` (\`BENCH_QUICK=1\` for a fifth). Our server runs on a fresh redis-server of its own, with \`?snapshot=0\` streams
  (a fresh stream's snapshot would carry a \`seq\` of its own); nchan runs with \`bench/nchan/nginx.conf\`, whose publisher location for the
  storm's projects keeps 1,000 messages per channel so that a \`Last-Event-ID\` resume finds them.
- The load generator (its own core) holds every client on a raw socket, keeps each one's last \`id:\`, checks its project's \`seq\`
  (no gap, no duplicate) and stamps each message with its own clock, so the latency is publish to receive on one clock. "Live again":
  the client's first message after the reconnect (a replayed one or a live one).
- One run on a shared 2-core machine (other work ran beside it): compare the columns of one run, not runs; the time until all live
  varied from 4 to 13 s between runs of the restart here.
`;
  const file = join(ROOT, 'bench/results/storm.md');
  writeFileSync(file, text);
  writeFileSync(join(ROOT, 'bench/results/storm.json'), `${JSON.stringify({ commit, quick, results }, null, 2)}\n`);
  return file;
}
