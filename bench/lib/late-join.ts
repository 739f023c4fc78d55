/**
 * The late-join scenario (issue 15, item 3: "cost of state on connect"): a 5,000-token answer (the long-answer
 * scenario's text) published with the kit's StreamPublisher on a fresh redis-server and server; a fresh stream
 * (no `Last-Event-ID`) opened mid-stage (after half the tokens) and after the `done` must get the stage's current
 * state as its first event, `snapshot`, costing about the text once (≤ 1.5× its UTF-8 bytes), not one event per token.
 *
 * The load generator publishes and opens the streams (`lateJoin` in bench/loadgen.ts); the orchestrator
 * (bench/run.ts) starts the redis-server and server. This module has the result's shape, the issue's target and
 * the report `bench/results/late-join.md`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './targets.js';

export const LATE_TOKENS = 5000;
/** Where the mid-stage joiner opens its stream: after this many tokens. */
export const LATE_MID_AT = 2500;
/** Fresh streams opened one after another at each moment; the time is their median. */
export const LATE_SAMPLES = 7;
/**
 * The scenario's log length: long enough to keep every token, so the comparison (a resume from the first token,
 * what a late joiner needed before the snapshot) replays them all instead of getting a `reset` at the default 1,000.
 */
export const LATE_LOG_MAX_LEN = 10_000;
/** How long a stream may take to bring its snapshot. */
export const LATE_TIMEOUT_MS = 5000;

/** One fresh stream's opening, up to the end of its `snapshot` event. */
export interface SnapshotJoin {
  /** False when no `snapshot` event came within LATE_TIMEOUT_MS (the server does not send one). */
  snapshot: boolean;
  /** Request (socket opened) to the `snapshot` event's last byte, in ms; the median over the samples. */
  ms: number;
  /** Each sample's time, in ms, in order. */
  samplesMs: number[];
  /** Request to the `connected` event, ms (median), for comparison. */
  connectedMs: number;
  /** The `snapshot` event itself: its `id:`, `event:` and `data:` lines and the blank line. */
  snapshotBytes: number;
  /** Its JSON (the data lines' content). */
  dataBytes: number;
  /** De-chunked body bytes from the start of the stream to the snapshot's last byte (`retry`, `connected` included). */
  bodyBytes: number;
  /** Every byte the socket received up to then (HTTP head, chunk framing). */
  wireBytes: number;
  /** The stage's text as the snapshot carries it (`text`, or the `done`'s `full_text`), UTF-8 bytes. */
  snapshotTextBytes: number;
  /** The snapshot's text is exactly the text published so far. */
  textOk: boolean;
  /** The kinds of state the snapshot holds for the stage (`stage_update`, `done`, `text`, ...). */
  keys: string[];
  /** The snapshot's `id:` is the id of the last message published before it. */
  idOk: boolean;
  /** The same for a plain stream (no `?compact=1`): the snapshot event's bytes. */
  plainSnapshotBytes?: number;
}

/** What a late joiner needed before: a resume with `Last-Event-ID` of the stage's first token, in compact mode. */
export interface ResumeJoin {
  /** Request to the last published message's last byte (or a `reset`), ms. */
  ms: number;
  bodyBytes: number;
  wireBytes: number;
  events: number;
  /** The resume got a `reset` instead of the tokens. */
  reset: boolean;
}

export interface LateMoment {
  /** Tokens published before the join. */
  tokens: number;
  /** UTF-8 bytes of the stage's text at that moment. */
  textBytes: number;
  join: SnapshotJoin;
  before: ResumeJoin;
  /** With `?snapshot=0`: bytes of the body within 300 ms after `connected`, and whether a snapshot came anyway. */
  off: { snapshot: boolean; bodyBytes: number };
}

export interface LateJoinResult {
  tokens: number;
  textBytes: number;
  commit: string;
  started: string;
  mid: LateMoment;
  after: LateMoment;
  /**
   * The mid-stage joiner (compact) kept reading while the rest of the answer was published: the text rebuilt from
   * its snapshot and the token pieces after it is the answer, its first token's offset is where the snapshot's text
   * ends (no gap, no duplicate), and its `done` came.
   */
  continued: { textOk: boolean; firstOffset: number | null; snapshotTextLength: number; tokens: number; done: boolean; duplicates: number };
  ms: number;
}

export interface LateCheck {
  target: string;
  value: string;
  ratio: string;
  status: 'met' | 'NOT met' | 'no snapshot';
  context: string;
}

const int = (v: number) => Math.round(v).toLocaleString('en-US');
const x = (v: number) => `${v < 10 ? v.toFixed(2) : v.toFixed(1)}×`;
const ms = (v: number) => (v < 10 ? v.toFixed(2) : v.toFixed(1));

/** The issue's target at both moments: the snapshot event's bytes ≤ 1.5× the stage text's UTF-8 bytes. */
export function lateChecks(r: LateJoinResult): LateCheck[] {
  return (['mid', 'after'] as const).map((which) => {
    const m = r[which];
    const j = m.join;
    const label = which === 'mid' ? `mid-stage (after ${int(m.tokens)} tokens)` : `after the done (${int(m.tokens)} tokens)`;
    if (!j.snapshot) {
      return { target: `late join ${label}: snapshot ≤ 1.5× the text`, value: 'no snapshot event', ratio: '–', status: 'no snapshot', context: `nothing but \`connected\` within ${LATE_TIMEOUT_MS / 1000} s (${int(j.bodyBytes)} body bytes)` };
    }
    const ratio = j.snapshotBytes / m.textBytes;
    const ok = ratio <= 1.5 && j.textOk && j.idOk;
    return {
      target: `late join ${label}: snapshot ≤ 1.5× the text`,
      value: `${int(j.snapshotBytes)} B`,
      ratio: x(ratio),
      status: ok ? 'met' : 'NOT met',
      context: `text ${int(m.textBytes)} B; first render after ${ms(j.ms)} ms (median of ${j.samplesMs.length}); ${int(j.bodyBytes)} body / ${int(j.wireBytes)} wire bytes up to it (${x(j.wireBytes / m.textBytes)}); text ${j.textOk ? 'exact' : 'WRONG'}, id ${j.idOk ? 'the last published' : 'WRONG'}`,
    };
  });
}

function momentRows(name: string, m: LateMoment): string[] {
  const j = m.join;
  const b = m.before;
  const rows = [
    `| ${name} | snapshot event (the target) | ${j.snapshot ? `${int(j.snapshotBytes)} (${x(j.snapshotBytes / m.textBytes)})` : '–'} | | |`,
    `| | body up to the snapshot's last byte (\`retry\`, \`connected\`, \`snapshot\`) | ${int(j.bodyBytes)} (${x(j.bodyBytes / m.textBytes)}) | ${j.snapshot ? `${ms(j.ms)} (${j.samplesMs.map(ms).join(', ')})` : `no snapshot in ${LATE_TIMEOUT_MS / 1000} s`} | \`connected\` after ${ms(j.connectedMs)} |`,
    `| | every byte on the socket up to then (HTTP head, chunks) | ${int(j.wireBytes)} (${x(j.wireBytes / m.textBytes)}) | | |`,
  ];
  if (j.plainSnapshotBytes !== undefined) rows.push(`| | snapshot event of a plain stream (no \`?compact=1\`) | ${int(j.plainSnapshotBytes)} (${x(j.plainSnapshotBytes / m.textBytes)}) | | |`);
  rows.push(
    `| | before: resume from the first token (\`Last-Event-ID\`, compact), body | ${int(b.bodyBytes)} (${x(b.bodyBytes / m.textBytes)}) | ${ms(b.ms)} | ${b.reset ? 'got a `reset`' : `${int(b.events)} events`}, ${int(b.wireBytes)} wire bytes |`,
    `| | \`?snapshot=0\`: body within 300 ms of \`connected\` | ${int(m.off.bodyBytes)} | | ${m.off.snapshot ? 'a snapshot came anyway: NOT turned off' : 'no snapshot: turned off'} |`,
  );
  return rows;
}

export function writeLateJoinReport(r: LateJoinResult): string {
  const checks = lateChecks(r);
  const c = r.continued;
  const md = `# Late join (issue 15): the state on connect of a ${int(r.tokens)}-token answer

Written by \`npm run bench\` (scenario \`late-join\`, ours only; alone: \`BENCH_TARGETS=ours BENCH_ONLY=late-join npm run bench\`). Run ${r.started.slice(0, 19).replace('T', ' ')} UTC on commit ${r.commit}, ${(r.ms / 1000).toFixed(1)} s.

## Target: the snapshot costs about the text once (≤ 1.5× its UTF-8 bytes)

| moment | snapshot event | ÷ text | verdict | for context |
| --- | ---: | ---: | --- | --- |
${checks.map((k) => `| ${k.target.replace(': snapshot ≤ 1.5× the text', '')} | ${k.value} | ${k.ratio} | **${k.status}** | ${k.context} |`).join('\n')}

## Bytes and time to first render

Bytes (÷ the stage's text at that moment); times in ms from the request (socket opened) to the event's last byte: the median, then every sample.

| moment | what | bytes | ms | note |
| --- | --- | ---: | ---: | --- |
${momentRows(`mid-stage, ${int(r.mid.tokens)} tokens, text ${int(r.mid.textBytes)} B`, r.mid).join('\n')}
${momentRows(`after the done, ${int(r.after.tokens)} tokens, text ${int(r.after.textBytes)} B`, r.after).join('\n')}

The mid-stage joiner then read the rest of the answer live: ${c.done ? 'its `done` came' : 'its `done` did NOT come'}; ${int(c.tokens)} token events after the snapshot, the first at offset ${c.firstOffset ?? '–'} where the snapshot's text is ${int(c.snapshotTextLength)} UTF-16 units long (${c.firstOffset === c.snapshotTextLength ? 'no gap, no duplicate' : 'a GAP or a DUPLICATE'}); ${c.duplicates} events at or before the snapshot's id; text rebuilt from the snapshot and the pieces ${c.textOk ? 'exactly the answer' : 'WRONG'}.

## How it is measured
- A fresh redis-server and a fresh server of ours (the same core placement as the rest of the bench). The answer is the long-answer scenario's (\`bench/lib/long-answer.ts\`: the mock pipeline's mixed Chinese and English story, about 6 UTF-8 bytes a token), published on stage \`rewrite\` with the TypeScript \`StreamPublisher\` (\`publishToken(content, fullText)\` per token, each awaited, then \`publishDone\`), log length ${int(LATE_LOG_MAX_LEN)} so the log keeps every token for the comparison.
- Mid-stage: after ${int(LATE_MID_AT)} tokens the publisher pauses; ${LATE_SAMPLES} fresh streams (\`?compact=1\`, no \`Last-Event-ID\`) are opened one after another on raw sockets (the load generator's, core apart from the server's), each timed from the socket's opening to the last byte of its \`snapshot\` event; bytes are the first one's. Then one plain stream (no \`?compact=1\`), one resume from the first token and one \`?snapshot=0\` stream. After the done: the same.
- The snapshot event is the SSE frame (\`id:\`, \`event: snapshot\`, \`data:\` lines, blank line) of the de-chunked body; its text is \`stages.rewrite.text\` or, after the done, \`stages.rewrite.done.full_text\`, and must be the published text exactly; its \`id:\` must be the id of the last message published.
- Before (what a late joiner needed without the snapshot to show the text): a resume with \`Last-Event-ID\` of the first token, compact, read until the last published message: every token's event once (a plain fresh stream got nothing until the next token).
`;
  const path = join(ROOT, 'bench/results/late-join.md');
  writeFileSync(path, md);
  return path;
}
