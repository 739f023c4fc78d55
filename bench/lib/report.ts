/** The bench report: the table with ratios (printed and in markdown), the issue's targets checked, an SVG bar chart. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChurnResult, OpenResult, RenderResult, ResumeResult, SearchResult, TokensResult, TrialResult } from './protocol.js';
import { ROOT } from './targets.js';
import { LONG_TOKENS, longChecks, type LongAnswerResult } from './long-answer.js';
import { LATE_MID_AT, LATE_TOKENS, lateChecks, type LateJoinResult } from './late-join.js';
import type { BatchingResult } from './batching.js';
import { stormCheck, type StormResult } from './storm.js';

export type TargetName = 'ours' | 'nchan' | 'naive';
const NAMES: TargetName[] = ['ours', 'nchan', 'naive'];
const TITLES: Record<TargetName, string> = { ours: 'ours', nchan: 'nginx + nchan', naive: 'naive (1 Redis sub per client)' };
const COLORS: Record<TargetName, string> = { ours: '#2563eb', nchan: '#16a34a', naive: '#9ca3af' };

export interface TargetResults {
  name: TargetName;
  skipped?: string;
  version?: string;
  errors: string[];
  pidLabels?: string[];
  fanout: Record<number, { open: OpenResult; fixed: TrialResult; search: SearchResult }>;
  allStages?: { open: OpenResult; search: SearchResult };
  projects?: { open: OpenResult; search: SearchResult };
  idle?: { open: OpenResult; before: number[]; after: number[]; perConnection: number[] };
  tokens?: TokensResult;
  tokensCompact?: TokensResult;
  churn?: ChurnResult;
  /** The long-resume scenario, with what Redis sent meanwhile and the server's RSS before and at its peak. */
  resume?: ResumeResult & { redisBytes: number; rssBefore: number; rssPeak: number };
  render?: RenderResult;
  /** The long-answer scenario (issue 14): one 5,000-token answer's cost to Redis, pub/sub, the publisher and a browser. */
  longAnswer?: LongAnswerResult;
  /** The late-join scenario (issue 15): a fresh stream's snapshot of a 5,000-token answer, mid-stage and after the done. */
  lateJoin?: LateJoinResult;
  /** The batching scenario (issue 17, item 4): 150 tokens/s, a message per token against batched. */
  batching?: BatchingResult;
  /** The reconnect storm (issue 20, item 4): every connection cut at once, every client resuming; ours: by a restart. */
  storm?: StormResult;
  /** The same storm by cutting the clients' sockets (nchan's only storm; ours on the warm process). */
  stormSockets?: StormResult;
  /** The live load generator while running; removed before the report. */
  loadgen?: { call(command: { cmd: 'closeAll' }): Promise<unknown> } | undefined;
}

export interface BenchRun {
  started: string;
  seconds: number;
  quick: boolean;
  placement: { server: string; redis: string; loadgen: string };
  p99LimitMs: number;
  compactQuery: string;
  sizes: { fanout: number[]; allStages: number; projects: number; idle: number; tokens: number; fixedRate: number; fixedMs: number; trialMs: number } & Record<string, unknown>;
  machine: { cpu: string; cores: number; node: string; redis: string; nginx: string | undefined };
  /** Every target and scenario ran at the issue's sizes on this checkout: the run may replace latest.md. */
  complete?: boolean;
  /** The open-files limit every process of the bench ran with. */
  nofile?: number;
  /** Load from other work on this shared machine: `os.loadavg()` at the start, and the mean other-CPU of the reported trials. */
  load: { before: number[]; otherCpu: number };
  targets: TargetResults[];
}

interface Row {
  label: string;
  better: 'higher' | 'lower';
  /** Shown in the chart. */
  chart?: string;
  value: (t: TargetResults) => number | undefined;
  format: (v: number) => string;
  /** The trial behind the value, for rows measured by a rate search (to flag a busy load generator). */
  trial?: (t: TargetResults) => TrialResult | undefined;
}

/** Load generator CPU above which a measured rate may be the load generator's limit rather than the target's. */
const LOADGEN_BOUND = 0.9;

const int = (v: number) => Math.round(v).toLocaleString('en-US');
const ms = (v: number) => (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));
const kb = (v: number) => (v / 1024).toFixed(1);
const n = (v: number) => v.toLocaleString('en-US');

function rows(run: BenchRun): Row[] {
  const small = run.sizes.fanout[0] ?? 0;
  const large = run.sizes.fanout.at(-1) ?? 0;
  const { allStages, projects, idle, tokens, fixedRate } = run.sizes;
  return [
    { label: `Fan-out to ${n(small)} subscribers of one stage: events/s at the highest rate kept up with`, chart: `fan-out ${n(small)}, events/s`, better: 'higher', value: (t) => t.fanout[small]?.search.best?.eventsPerSec, format: int, trial: (t) => t.fanout[small]?.search.best },
    { label: `  p99 latency at that rate (ms)`, better: 'lower', value: (t) => t.fanout[small]?.search.best?.p99, format: ms },
    { label: `Fan-out to ${n(large)} subscribers: events/s`, chart: `fan-out ${n(large)}, events/s`, better: 'higher', value: (t) => t.fanout[large]?.search.best?.eventsPerSec, format: int, trial: (t) => t.fanout[large]?.search.best },
    { label: `  p99 latency at that rate (ms)`, better: 'lower', value: (t) => t.fanout[large]?.search.best?.p99, format: ms },
    { label: `p99 latency at ${fixedRate} msg/s, ${n(small)} subscribers (ms)`, better: 'lower', value: (t) => t.fanout[small]?.fixed.p99, format: ms },
    { label: `p99 latency at ${fixedRate} msg/s, ${n(large)} subscribers (ms)`, chart: `p99 at ${fixedRate} msg/s, ${n(large)} subs, ms`, better: 'lower', value: (t) => t.fanout[large]?.fixed.p99, format: ms },
    { label: `All-stages endpoint, ${n(allStages)} subscribers, 4 stages: events/s`, chart: `all-stages ${n(allStages)}, events/s`, better: 'higher', value: (t) => t.allStages?.search.best?.eventsPerSec, format: int, trial: (t) => t.allStages?.search.best },
    { label: `${n(projects)} subscribers on ${n(projects)} projects: events/s`, chart: `${n(projects)} projects, events/s`, better: 'higher', value: (t) => t.projects?.search.best?.eventsPerSec, format: int, trial: (t) => t.projects?.search.best },
    { label: `Idle memory per connection at ${n(idle)} connections (KB)`, chart: `memory per idle connection, KB`, better: 'lower', value: (t) => sum(t.idle?.perConnection), format: kb },
    { label: `One ${n(tokens)}-token generation, original format: bytes on the wire`, better: 'lower', value: (t) => t.tokens?.wireBytes, format: int },
    { label: `  the same, compact mode (\`?${run.compactQuery}\`): bytes on the wire`, better: 'lower', value: (t) => (t.tokensCompact && compactHonoured(t.tokensCompact) ? t.tokensCompact.wireBytes : undefined), format: int },
    { label: `  client CPU to parse it, original format (ms)`, better: 'lower', value: (t) => t.tokens?.clientCpuMs, format: ms },
    { label: `One ${n(LONG_TOKENS)}-token answer (issue 14): Redis memory of its project (bytes)`, better: 'lower', value: (t) => t.longAnswer?.redis.total, format: int },
    { label: `  pub/sub bytes per hub process`, better: 'lower', value: (t) => t.longAnswer?.pubsub.bytes, format: int },
    { label: `  publish rate over its last 100 tokens ÷ a fresh answer's first 100 (alternately)`, better: 'higher', value: (t) => (t.longAnswer ? t.longAnswer.publish.last.median / (t.longAnswer.publish.control ?? t.longAnswer.publish.first).median : undefined), format: (v) => `${v.toFixed(2)}×` },
    { label: `  body bytes to a browser, original format`, better: 'lower', value: (t) => t.longAnswer?.view.original.bodyBytes, format: int },
    { label: `  body bytes to a browser, compact mode`, better: 'lower', value: (t) => t.longAnswer?.view.compact.bodyBytes, format: int },
    { label: `Late join of a ${n(LATE_TOKENS)}-token answer (issue 15), after ${n(LATE_MID_AT)} tokens: snapshot bytes`, better: 'lower', value: (t) => (t.lateJoin?.mid.join.snapshot ? t.lateJoin.mid.join.snapshotBytes : undefined), format: int },
    { label: `  the same, ÷ the stage's text`, better: 'lower', value: (t) => (t.lateJoin?.mid.join.snapshot ? t.lateJoin.mid.join.snapshotBytes / t.lateJoin.mid.textBytes : undefined), format: (v) => `${v.toFixed(2)}×` },
    { label: `  time from the request to the snapshot's last byte (ms)`, better: 'lower', value: (t) => (t.lateJoin?.mid.join.snapshot ? t.lateJoin.mid.join.ms : undefined), format: ms },
    { label: `  after the done: snapshot bytes`, better: 'lower', value: (t) => (t.lateJoin?.after.join.snapshot ? t.lateJoin.after.join.snapshotBytes : undefined), format: int },
    { label: `  after the done: time to the snapshot's last byte (ms)`, better: 'lower', value: (t) => (t.lateJoin?.after.join.snapshot ? t.lateJoin.after.join.ms : undefined), format: ms },
    { label: `Reconnect storm (issue 20), ${n(Number(run.sizes.stormClients ?? 0))} clients on ${n(Number(run.sizes.stormProjects ?? 0))} projects, sockets cut at once: ms until all live again`, better: 'lower', value: (t) => t.stormSockets?.resumed.ms, format: ms },
    { label: `  p99 publish-to-receive latency during the storm (ms)`, better: 'lower', value: (t) => t.stormSockets?.finish.p99DuringMs, format: ms },
    { label: `  messages lost or repeated, over every client (both storms)`, better: 'lower', value: (t) => (t.stormSockets ? [t.storm, t.stormSockets].reduce((sum, r) => sum + (r ? r.finish.lost + r.finish.repeated : 0), 0) : undefined), format: int },
    { label: `  ours after a restart of the hub (SIGKILL): ms until all live again`, better: 'lower', value: (t) => t.storm?.resumed.ms, format: ms },
    { label: `  log reads Redis served for the resumes' first pages, after the restart`, better: 'lower', value: (t) => t.storm?.reads?.hub.replay?.sent, format: int },
    { label: `Connection churn: streams opened and closed per second`, chart: `churn, opens+closes/s`, better: 'higher', value: (t) => t.churn?.perSec, format: int },
    { label: `Events lost or repeated in the reported trials`, better: 'lower', value: (t) => lostOrRepeated(t), format: int },
    { label: `Load generator CPU in the reported trials, highest (% of its core)`, better: 'lower', value: (t) => maxLoadgenCpu(t), format: (v) => `${Math.round(v * 100)}%` },
  ];
}

/** Compact mode sends a stage's first token whole, then pieces only. */
function compactHonoured(result: TokensResult): boolean {
  return result.withFullText * 2 < result.events;
}

function sum(values: number[] | undefined): number | undefined {
  return values ? values.reduce((a, b) => a + b, 0) : undefined;
}

function reported(t: TargetResults): TrialResult[] {
  const trials: TrialResult[] = [];
  for (const f of Object.values(t.fanout)) {
    trials.push(f.fixed);
    if (f.search.best) trials.push(f.search.best);
  }
  if (t.allStages?.search.best) trials.push(t.allStages.search.best);
  if (t.projects?.search.best) trials.push(t.projects.search.best);
  return trials;
}

function lostOrRepeated(t: TargetResults): number | undefined {
  const trials = reported(t);
  return trials.length ? trials.reduce((a, r) => a + r.missing + r.dupes, 0) : undefined;
}

function maxLoadgenCpu(t: TargetResults): number | undefined {
  const trials = reported(t);
  return trials.length ? Math.max(...trials.map((r) => r.loadgenCpu)) : undefined;
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !(b > 0)) return '–';
  return `${(a / b).toFixed(2)}×`;
}

function byName(run: BenchRun): Partial<Record<TargetName, TargetResults>> {
  return Object.fromEntries(run.targets.map((t) => [t.name, t]));
}

function table(run: BenchRun): string {
  const targets = byName(run);
  const header = ['', ...NAMES.map((name) => TITLES[name]), 'ours / nchan', 'ours / naive'];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const row of rows(run)) {
    const values = NAMES.map((name) => {
      const t = targets[name];
      return t && !t.skipped ? row.value(t) : undefined;
    });
    const cells = values.map((v, i) => {
      if (v === undefined || Number.isNaN(v)) return '–';
      const t = targets[NAMES[i]!];
      const bound = t && row.trial?.(t)?.loadgenCpu !== undefined && row.trial(t)!.loadgenCpu >= LOADGEN_BOUND;
      return bound ? `${row.format(v)}*` : row.format(v);
    });
    const label = row.label.startsWith('  ') ? `&nbsp;&nbsp;${row.label.trim()}` : row.label;
    const better = row.better === 'higher' ? '↑' : '↓';
    lines.push(`| ${label} ${better} | ${cells.join(' | ')} | ${ratio(values[0], values[1])} | ${ratio(values[0], values[2])} |`);
  }
  return lines.join('\n');
}

interface Check {
  target: string;
  status: 'met' | 'NOT met' | 'not measured';
  detail: string;
}

function checks(run: BenchRun): Check[] {
  const t = byName(run);
  const ours = t.ours && !t.ours.skipped ? t.ours : undefined;
  const nchan = t.nchan && !t.nchan.skipped ? t.nchan : undefined;
  const out: Check[] = [];
  const scaled = run.quick ? ' (QUICK run: smaller N than the issue asks)' : '';
  const compare = (target: string, a: number | undefined, b: number | undefined, factor: number, better: 'higher' | 'lower', extra = '', fmt = int) => {
    if (a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b)) {
      out.push({ target, status: 'not measured', detail: `ours ${a === undefined ? '–' : fmt(a)}, nchan ${b === undefined ? '–' : fmt(b)}${nchan ? '' : ' (nchan did not run)'}` });
      return;
    }
    const ok = better === 'higher' ? a >= factor * b : a <= factor * b;
    out.push({ target, status: ok ? 'met' : 'NOT met', detail: `ours ${fmt(a)}, nchan ${fmt(b)}: ${(a / b).toFixed(2)}×${extra}${scaled}` });
  };
  for (const size of run.sizes.fanout) {
    const a = ours?.fanout[size]?.search.best;
    const b = nchan?.fanout[size]?.search.best;
    const lost = a ? a.missing + a.dupes : 0;
    compare(`Fan-out events/s to ${n(size)} subscribers ≥ 2× nchan, none lost or repeated`, a?.eventsPerSec, b?.eventsPerSec, 2, 'higher', `, ${lost} lost or repeated`);
    if (lost > 0 && out.at(-1)!.status === 'met') out.at(-1)!.status = 'NOT met';
  }
  const large = run.sizes.fanout.at(-1) ?? 0;
  compare(`p99 latency at ${n(large)} subscribers and ${run.sizes.fixedRate} msg/s ≤ nchan's`, ours?.fanout[large]?.fixed.p99, nchan?.fanout[large]?.fixed.p99, 1, 'lower', '', (v) => `${ms(v)} ms`);
  compare(`Idle memory per connection at ${n(run.sizes.idle)} connections ≤ nchan's`, sum(ours?.idle?.perConnection), sum(nchan?.idle?.perConnection), 1, 'lower', '', (v) => `${kb(v)} KB`);
  compare(`${n(run.sizes.projects)} subscribers on ${n(run.sizes.projects)} projects ≥ 1.5× nchan`, ours?.projects?.search.best?.eventsPerSec, nchan?.projects?.search.best?.eventsPerSec, 1.5, 'higher');
  compare('Connection churn: streams opened and closed per second ≥ nchan (issue 20)', ours?.churn?.perSec, nchan?.churn?.perSec, 1, 'higher');

  const original = ours?.tokens;
  const compact = ours?.tokensCompact;
  const tokenTarget = `Bytes on the wire for a ${n(run.sizes.tokens)}-token generation within 1.5× of the token text plus framing`;
  if (!original || !compact) out.push({ target: tokenTarget, status: 'not measured', detail: 'the tokens scenario did not run' });
  else if (!compactHonoured(compact)) {
    out.push({
      target: tokenTarget,
      status: 'NOT met',
      detail: `the server does not honour \`?${run.compactQuery}\` yet: ${int(compact.wireBytes)} bytes, every token event still carries full_text (text ${int(original.textBytes)} bytes)`,
    });
  } else {
    // Framing: what the original format pays per event besides the text (SSE fields, JSON envelope, HTTP chunks).
    const framing = original.wireBytes - original.textBytes - original.fullTextBytes;
    const limit = 1.5 * (original.textBytes + framing);
    out.push({
      target: tokenTarget,
      status: compact.wireBytes <= limit && compact.textOk ? 'met' : 'NOT met',
      detail: `${int(compact.wireBytes)} bytes vs text ${int(original.textBytes)} + framing ${int(framing)} (limit ${int(limit)}); original format ${int(original.wireBytes)} bytes; text rebuilt ${compact.textOk ? 'exactly' : 'WRONG'}`,
    });
  }
  const render = ours?.render;
  const renderTarget = `A ${n(run.sizes.renderTokens as number)}-token stream arriving at full speed renders in Chromium with no task over 50 ms`;
  if (!render) out.push({ target: renderTarget, status: 'not measured', detail: ours?.errors.find((e) => e.startsWith('render')) ?? 'the render scenario did not run' });
  else {
    out.push({
      target: renderTarget,
      status: render.longTasks.length === 0 && render.shown ? 'met' : 'NOT met',
      detail: `${render.longTasks.length} long tasks${render.longTasks.length ? ` (longest ${render.longTasks[0]!.toFixed(0)} ms)` : ''}, longest gap between frames ${render.maxFrameGap.toFixed(0)} ms, ${n(render.tokenEvents)} token events in ${(render.ms / 1000).toFixed(1)} s, final text ${render.shown ? 'shown exactly' : 'NOT shown'}${scaled}`,
    });
  }
  return out;
}

/** The issue-14 targets of the long-answer scenario, when it ran. */
function longAnswerTargets(run: BenchRun): string {
  const r = run.targets.find((t) => t.name === 'ours' && !t.skipped)?.longAnswer;
  if (!r) return '';
  const formats = { full_text: 'tokens with full_text (before)', linear: 'tokens as piece + offset (after)', mixed: 'some tokens with full_text' };
  return `\n## Targets of issue 14 (publisher: ${formats[r.format]}; text ${int(r.textBytes)} bytes)\n${longChecks(r)
    .map((c) => `- **${c.status}** — ${c.target}: ${c.value}, ${c.ratio.includes('(') ? c.ratio : `${c.ratio} the text`} (${c.framed})`)
    .join('\n')}\n`;
}

/** The issue-20 target of the reconnect storm, for each target it ran on (details in results/storm.md). */
function stormTargets(run: BenchRun): string {
  const storms = run.targets.flatMap((t) => [t.storm, t.stormSockets].filter((r) => r !== undefined));
  if (storms.length === 0) return '';
  return `\n## Target of issue 20, item 4 (reconnect storm; [storm.md](storm.md))\n${storms
    .map((r) => `- **${stormCheck(r).status}** — ${TITLES[r.target]}, ${r.cut}: resume reads ≤ 1 per project and cursor per process; no gap/duplicate: ${stormCheck(r).detail}`)
    .join('\n')}\n`;
}

/** The issue-15 target of the late-join scenario, when it ran. */
function lateJoinTargets(run: BenchRun): string {
  const r = run.targets.find((t) => t.name === 'ours' && !t.skipped)?.lateJoin;
  if (!r) return '';
  return `\n## Targets of issue 15 (text ${int(r.textBytes)} bytes at the done)\n${lateChecks(r)
    .map((c) => `- **${c.status}** — ${c.target}: ${c.value}, ${c.ratio} the text (${c.context})`)
    .join('\n')}\n`;
}

function trialLine(r: TrialResult, pidLabels: string[] = []): string {
  const cpu = r.targetCpu.map((c, i) => `${pidLabels[i] ?? 'pid'} ${Math.round(c * 100)}%`).join(', ');
  return `| ${r.rate.toFixed(1)} | ${int(r.eventsPerSec)} | ${ms(r.p50)} | ${ms(r.p99)} | ${ms(r.max)} | ${r.missing} / ${r.dupes} | ${(r.received / Math.max(1, r.reads)).toFixed(1)} | ${Math.round(r.loadgenCpu * 100)}% | ${cpu} | ${Math.round(r.otherCpu * 100)}% | ${r.pass ? 'kept up' : r.why} |`;
}

function details(run: BenchRun): string {
  const out: string[] = [];
  const head = '| msg/s | events/s | p50 ms | p99 ms | max ms | lost / repeated | events per read | loadgen CPU | target CPU | other CPU | verdict |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |';
  for (const t of run.targets) {
    out.push(`### ${TITLES[t.name]}${t.version ? ` (${t.version})` : ''}`);
    if (t.skipped) {
      out.push(`Skipped: ${t.skipped}`);
      continue;
    }
    for (const [size, f] of Object.entries(t.fanout)) {
      out.push(`**Fan-out to ${n(Number(size))}** (opened in ${(f.open.ms / 1000).toFixed(1)} s${f.open.failed ? `, ${f.open.failed} failed` : ''}): fixed ${run.sizes.fixedRate} msg/s, then the search`);
      out.push(head, trialLine(f.fixed, t.pidLabels), ...f.search.trials.map((r) => trialLine(r, t.pidLabels)));
    }
    if (t.allStages) out.push(`**All-stages endpoint**`, head, ...t.allStages.search.trials.map((r) => trialLine(r, t.pidLabels)));
    if (t.projects) out.push(`**${n(run.sizes.projects)} projects** (msg/s counts every project's messages together)`, head, ...t.projects.search.trials.map((r) => trialLine(r, t.pidLabels)));
    if (t.idle) {
      const parts = t.idle.perConnection.map((b, i) => `${t.pidLabels?.[i]} ${kb(t.idle!.before[i]!)}→${kb(t.idle!.after[i]!)} KB RSS, ${kb(b)} KB per connection`);
      out.push(`**Idle**: ${n(t.idle.open.opened)} connections opened in ${(t.idle.open.ms / 1000).toFixed(1)} s; ${parts.join('; ')}`);
    }
    for (const [label, tok] of [['original', t.tokens], ['compact', t.tokensCompact]] as const) {
      if (!tok) continue;
      out.push(
        `**Tokens, ${label}**: ${n(tok.tokens)} tokens, text ${int(tok.textBytes)} bytes, ${int(tok.wireBytes)} bytes on the wire (${(tok.wireBytes / tok.textBytes).toFixed(1)}× the text), ${tok.events} events, ${tok.withFullText} with full_text, client ${ms(tok.clientCpuMs)} ms CPU, text rebuilt ${tok.textOk ? 'exactly' : 'WRONG'}, ${int(tok.ms)} ms`,
      );
    }
    if (t.render) {
      const r = t.render;
      out.push(`**Render in Chromium**: ${n(r.tokens)} tokens published at full speed (with full_text, as the contract has it; the kit's client asks for compact events), ${n(r.tokenEvents)} token events in ${(r.ms / 1000).toFixed(1)} s; long tasks: ${r.longTasks.length ? r.longTasks.map((d) => d.toFixed(0)).join(', ') + ' ms' : 'none'}; longest frame gap ${r.maxFrameGap.toFixed(0)} ms; final text ${r.shown ? 'shown exactly' : 'NOT shown'}`);
    }
    if (t.churn) {
      const cpu = t.churn.targetCpu.map((c, i) => `${t.pidLabels?.[i]} ${Math.round(c * 100)}%`).join(', ');
      out.push(`**Churn**: ${int(t.churn.cycles)} opens+closes (${t.churn.failed} failed${t.churn.firstError ? `: ${t.churn.firstError}` : ''}), ${int(t.churn.perSec)}/s; loadgen CPU ${Math.round(t.churn.loadgenCpu * 100)}%, ${cpu}, other ${Math.round(t.churn.otherCpu * 100)}%`);
    }
    if (t.resume) {
      const r = t.resume;
      const mib = (v: number) => (v / 1024 / 1024).toFixed(0);
      out.push(`**Long resume**: ${r.clients} non-compact clients resume a ${n(r.tokens)}-token answer from its first token at once: ${r.completed} got all of it, ${r.resets} a reset instead, ${r.dropped} dropped; ${mib(r.bytes)} MiB to the clients, ${mib(r.redisBytes)} MiB from Redis, in ${(r.ms / 1000).toFixed(1)} s; server RSS ${mib(r.rssBefore)} MiB before, ${mib(r.rssPeak)} MiB at the peak`);
    }
    if (t.longAnswer) {
      const r = t.longAnswer;
      out.push(`**Long answer**: ${n(r.tokens)} tokens, text ${int(r.textBytes)} bytes, publisher format ${r.format}; Redis ${r.redis.keys.map((k) => `${k.key} ${int(k.bytes)}`).join(', ')} (bytes); pub/sub ${int(r.pubsub.messages)} messages, ${int(r.pubsub.bytes)} bytes; publish ${int(r.publish.first.median)} → ${int(r.publish.last.median)} tokens/s (median, first and last 100), ${int(r.publish.first500.median)} → ${int(r.publish.last500.median)} (500); browser original ${int(r.view.original.bodyBytes)}, compact ${int(r.view.compact.bodyBytes)} body bytes`);
    }
    if (t.errors.length) out.push(`**Errors**: ${t.errors.join('; ')}`);
  }
  return out.join('\n\n');
}

/** Grouped horizontal bars, each metric scaled to its largest value. */
function svg(run: BenchRun): string {
  const targets = byName(run);
  const chartRows = rows(run).filter((r) => r.chart);
  const width = 820;
  const labelW = 250;
  const barH = 14;
  const groupH = barH * 3 + 18;
  const top = 56;
  const height = top + chartRows.length * groupH + 10;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">SSE fan-out bench${run.quick ? ' (QUICK run)' : ''}, ${esc(run.started.slice(0, 16).replace('T', ' '))} UTC, ${run.machine.cores} cores</text>`,
  ];
  NAMES.forEach((name, i) => {
    parts.push(`<rect x="${10 + i * 230}" y="32" width="12" height="12" fill="${COLORS[name]}"/><text x="${26 + i * 230}" y="42">${esc(TITLES[name])}</text>`);
  });
  chartRows.forEach((row, g) => {
    const y0 = top + g * groupH;
    const values = NAMES.map((name) => {
      const t = targets[name];
      return t && !t.skipped ? row.value(t) : undefined;
    });
    const max = Math.max(...values.map((v) => (v === undefined || Number.isNaN(v) ? 0 : v)), 1e-9);
    parts.push(`<text x="10" y="${y0 + barH * 1.5 + 4}">${esc(row.chart!)}</text>`);
    parts.push(`<text x="10" y="${y0 + barH * 1.5 + 18}" fill="#666" font-size="10">${row.better === 'higher' ? 'higher is better' : 'lower is better'}</text>`);
    values.forEach((v, i) => {
      const y = y0 + i * barH;
      const w = v === undefined || Number.isNaN(v) ? 0 : Math.max(1, ((width - labelW - 110) * v) / max);
      parts.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH - 2}" fill="${COLORS[NAMES[i]!]}"/>`);
      parts.push(`<text x="${labelW + w + 4}" y="${y + barH - 4}" font-size="11">${v === undefined || Number.isNaN(v) ? 'n/a' : esc(row.format(v))}</text>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Mean CPU share of other work during every reported trial of every target. */
export function meanOtherCpu(targets: TargetResults[]): number {
  const trials = targets.flatMap(reported);
  return trials.length ? trials.reduce((a, r) => a + r.otherCpu, 0) / trials.length : 0;
}

export function writeReport(run: BenchRun): { table: string; files: string[] } {
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const stamp = run.started.replace(/[:.]/g, '-').slice(0, 19) + (run.quick ? '-quick' : '');
  const tableText = table(run);
  const checkList = checks(run);
  const placement = `server under test on core ${run.placement.server} (\`taskset -c ${run.placement.server}\`), its Redis on core ${run.placement.redis}, load generator and publisher on core ${run.placement.loadgen}`;
  const skipped = run.targets.filter((t) => t.skipped).map((t) => `- **${TITLES[t.name]}** skipped: ${t.skipped}`);
  const md = `# SSE fan-out bench — ${run.started.slice(0, 19).replace('T', ' ')} UTC${run.quick ? ' (QUICK run)' : ''}

![chart](${run.quick ? `${stamp}.svg` : 'latest.svg'})

Machine: ${run.machine.cores} × ${run.machine.cpu}; Node ${run.machine.node}; redis-server ${run.machine.redis}; ${run.machine.nginx ?? 'nginx not run'}. Run took ${Math.round(run.seconds)} s.
Placement, the same for every target: ${placement}.

${tableText}

↑ higher is better, ↓ lower is better. Ratios are ours divided by the peer. \* the load generator used ≥ ${LOADGEN_BOUND * 100}% of its core in that trial: the target may go faster than measured.
The machine is shared with other work: load average ${run.load.before.map((l) => l.toFixed(2)).join(' / ')} at the start; processes other than the target and the load generator (and softirq) used ${Math.round(run.load.otherCpu * 100)}% of a core on average during the reported trials (each trial's share is in the details; a failed trial with more than 25% is repeated once).

## Targets of issues 6 and 20
${checkList.map((c) => `- **${c.status}** — ${c.target}: ${c.detail}`).join('\n')}
${skipped.length ? `\n${skipped.join('\n')}\n` : ''}${longAnswerTargets(run)}${lateJoinTargets(run)}${stormTargets(run)}
## How it was measured
- Each target runs as a child process: our server (the compiled \`dist/server/main.js\` that \`npm start\` and the package's command run, built when stale; \`LOG_LEVEL=warn\`, stream limits raised) and the naive peer (\`bench/peers/naive-server.ts\`, one ioredis subscriber per SSE client) on a private redis-server; nginx ${run.machine.nginx ?? ''} with one worker and nchan in memory mode (\`bench/nchan/nginx.conf\`, no Redis).
- Publishing: our server and the naive peer get, for each message, the \`EVALSHA\` of publish.lua that the kit's \`StreamPublisher\` sends (replay log + state + PUBLISH, ids \`<ms>-<seq>\`, with its control options: producer, sequence number, run, lease), written as raw RESP and pipelined on one socket (\`RawRedisBenchPublisher\`; \`BENCH_PUBLISHER=kit\` uses the \`StreamPublisher\` itself, whose checks and timers on the load generator's core were the ceiling of the many-projects trials). nchan gets the same JSON through its HTTP publisher endpoint (\`POST /pub/{project}/{stage}\`), pipelined on one keep-alive socket. Every message is about 200 bytes of JSON and carries \`"seq"\` and the publish time \`"t"\`.
- The load generator (\`bench/loadgen.ts\`, a separate process) holds raw \`node:net\` connections with a hand-written HTTP/1.1 GET, de-chunks, finds \`"seq":N,"t":T\` in each event without parsing JSON, checks per connection that seqs arrive in order, exactly once, and records publish-to-receive latency (same process, same clock) in a 20 µs histogram. It runs the publisher too; its CPU share is in the table and in every trial below.
- "Highest rate kept up with": open-loop trials of ${run.sizes.trialMs / 1000} s at a fixed message rate, doubling until a trial fails, then bisecting (to within ${Math.round(((run.sizes.resolution as number) - 1) * 100)}%). A trial passes when every event reaches every subscriber within 1 s of the last publish, none twice, p99 ≤ ${run.p99LimitMs} ms, and the publisher kept its schedule. events/s = messages/s × subscribers that get each message.
- Idle memory: the first scenario, on a fresh process, after a warm-up of 200 connections opened and closed: RSS of the target's processes (server and its Redis; nginx's worker) before and 3 s after opening the connections, divided by their number. The sandbox's open-files limit (${run.nofile ?? '?'}) caps the naive peer, which needs two descriptors per client, below the others' N.
- Tokens: ${n(run.sizes.tokens)} tokens published with \`full_text\` as the original format has it, one client; every byte its socket received is counted. Client CPU: the captured bytes replayed through de-chunking, eventsource-parser and JSON.parse (best of 3).
- Render: a page with the kit's single-file build (\`scripts/build-client.mjs\`) and one \`<sse-stream-viewer>\` (which asks for compact events) in headless Chromium, alone on core ${run.placement.loadgen}; \`bench/token-publisher.ts\` publishes the tokens with \`full_text\` as fast as Redis takes them from core ${run.placement.server}. Long tasks come from the page's \`PerformanceObserver('longtask')\`, frame gaps from a \`requestAnimationFrame\` loop.
- Long resume (ours only): an answer of ${n(run.sizes.resumeTokens as number)} tokens of 20 bytes, each with \`full_text\` (about 10 MB of log), then ${run.sizes.resumeClients as number} plain GETs at once with \`Last-Event-ID\` of its first token, as browsers' EventSources reconnecting, each reading at full speed until its \`done\`. Redis's bytes are its \`total_net_output_bytes\`; the server's peak is its VmHWM, reset just before.
- Long answer (ours only, issue 14): one ${n(LONG_TOKENS)}-token answer of about 30 KB of the mock pipeline's mixed Chinese and English, on a fresh redis-server and server; see \`long-answer.md\`, which this scenario rewrites, for how each figure is taken.
- Late join (ours only, issue 15): the long answer's text, ${n(LATE_TOKENS)} tokens, on a fresh redis-server and server; fresh streams opened after ${n(LATE_MID_AT)} tokens and after the done, each timed to its \`snapshot\` event's last byte; see \`late-join.md\`, which this scenario rewrites.
- Churn: ${run.sizes.churnConcurrency as number} concurrent clients each open a stream, wait for it to be subscribed (our \`connected\` event; nchan's response head), and close it, for ${(run.sizes.churnMs as number) / 1000} s; one other viewer stays on the stage.

## Details
${details(run)}
`;
  const chart = svg(run);
  const files = [join(dir, `${stamp}.md`), join(dir, `${stamp}.svg`), join(dir, `${stamp}.json`)];
  writeFileSync(files[0]!, md.replace('(latest.svg)', `(${stamp}.svg)`));
  writeFileSync(files[1]!, chart);
  writeFileSync(files[2]!, JSON.stringify(run, null, 2));
  if (run.complete || process.env.BENCH_WRITE_LATEST === '1') {
    writeFileSync(join(dir, 'latest.md'), md.replace(`(${stamp}.svg)`, '(latest.svg)'));
    writeFileSync(join(dir, 'latest.svg'), chart);
    files.push(join(dir, 'latest.md'), join(dir, 'latest.svg'));
  }
  const summary = `${tableText}\n* load generator at >= ${LOADGEN_BOUND * 100}% of its core in that trial\n\nTargets of issues 6 and 20:\n${checkList.map((c) => `  ${c.status.padEnd(12)} ${c.target}: ${c.detail}`).join('\n')}`;
  return { table: summary, files };
}
