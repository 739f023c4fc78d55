/** What the orchestrator (bench/run.ts) asks the load generator (bench/loadgen.ts) over IPC, and what it answers. */
import type { ReadyOn } from './sse-connection.js';
import type { StormFinish, StormOpen, StormResume } from './storm.js';

/** How message number k of a run maps to a channel and to the seq its subscribers expect. */
export type Routing =
  /** Every message on one stage: seq = k. */
  | { kind: 'stage'; project: string; stage: string }
  /** Round-robin over the stages of one project (all-stages subscribers): seq = k. */
  | { kind: 'stages'; project: string; stages: string[] }
  /** Message k goes to project `${prefix}${k % count}`: seq = floor(k / count). */
  | { kind: 'projects'; prefix: string; count: number; stage: string };

export interface Target {
  name: string;
  port: number;
  readyOn: ReadyOn;
  /** Publishing: the kit's StreamPublisher on this Redis, or nchan's HTTP publisher on `port`. */
  publish: { via: 'redis'; url: string } | { via: 'nchan-http' };
  /** Pids whose CPU is measured during trials (server, its Redis, nginx worker). */
  pids: number[];
}

export interface TrialResult {
  /** Messages per second published (to all channels together). */
  rate: number;
  durationMs: number;
  messages: number;
  expected: number;
  received: number;
  /** Delivered events per second (expected / publish duration when all arrived in time). */
  eventsPerSec: number;
  missing: number;
  dupes: number;
  gaps: number;
  late: number;
  p50: number;
  p99: number;
  max: number;
  /** Every event arrived within the grace period, none twice, p99 within the limit, publisher kept pace. */
  pass: boolean;
  why: string;
  /** CPU share (1.0 = one core) of the load generator (it includes the publisher) during the trial. */
  loadgenCpu: number;
  /** CPU share of each measured pid of the target, in `Target.pids` order. */
  targetCpu: number[];
  /** CPU the whole machine used besides the load generator and the target (other processes, softirq), in cores. */
  otherCpu: number;
  /** Socket reads the load generator made: events / reads shows how much the target batched its writes. */
  reads: number;
  connections: number;
}

export type Command =
  | { id: number; cmd: 'target'; target: Target }
  | { id: number; cmd: 'open'; paths: string[]; concurrency?: number }
  | { id: number; cmd: 'closeAll' }
  | { id: number; cmd: 'trial'; routing: Routing; rate: number; durationMs: number; p99LimitMs: number; graceMs: number }
  | {
      id: number;
      cmd: 'search';
      routing: Routing;
      startRate: number;
      durationMs: number;
      p99LimitMs: number;
      graceMs: number;
      maxTrials: number;
      /** Stop when the passing and failing rates are this close (ratio). */
      resolution: number;
    }
  | { id: number; cmd: 'churn'; path: string; concurrency: number; durationMs: number }
  | { id: number; cmd: 'tokens'; project: string; stage: string; path: string; tokens: number }
  | { id: number; cmd: 'resume'; project: string; stage: string; path: string; tokens: number; pieceBytes: number; clients: number }
  | { id: number; cmd: 'longPublish'; redisUrl: string; project: string; stage: string; tokens: number; control?: string }
  | { id: number; cmd: 'longView'; redisUrl: string; port: number; project: string; stage: string; tokens: number; compactQuery: string }
  | { id: number; cmd: 'lateJoin'; redisUrl: string; port: number; project: string; stage: string; tokens: number; midAt: number; compactQuery: string }
  | { id: number; cmd: 'renderStart'; url: string; chromium: string }
  | { id: number; cmd: 'renderFinish'; tokens: number }
  | ({ id: number; cmd: 'stormOpen' } & StormOpen)
  | ({ id: number; cmd: 'stormResume' } & StormResume)
  | ({ id: number; cmd: 'stormFinish' } & StormFinish)
  | { id: number; cmd: 'exit' };

export interface SearchResult {
  best: TrialResult | undefined;
  trials: TrialResult[];
}

export interface OpenResult {
  opened: number;
  failed: number;
  ms: number;
  firstError?: string;
}

export interface ChurnResult {
  cycles: number;
  failed: number;
  perSec: number;
  loadgenCpu: number;
  targetCpu: number[];
  otherCpu: number;
  firstError?: string;
}

export interface TokensResult {
  tokens: number;
  /** UTF-8 bytes of all token pieces together (the final text). */
  textBytes: number;
  /** Every byte the client socket received: HTTP head, chunk framing, SSE framing, JSON. */
  wireBytes: number;
  /** UTF-8 bytes of the `full_text` fields the original format sends (every token's, and the done message's). */
  fullTextBytes: number;
  events: number;
  /** Token events that carried `full_text` (0 in compact mode). */
  withFullText: number;
  /** CPU ms a client spends on it: de-chunk, eventsource-parser, JSON.parse, rebuilding the text. */
  clientCpuMs: number;
  /** The rebuilt text equals the published text. */
  textOk: boolean;
  ms: number;
}

/** Many non-compact clients resuming one long answer from its first token, all at once. */
export interface ResumeResult {
  clients: number;
  tokens: number;
  /** Clients that received the answer's `done` (the end of the log). */
  completed: number;
  /** Clients sent a `reset` (the current state) instead of the replay. */
  resets: number;
  /** Clients whose stream ended before it (dropped, e.g. as slow consumers). */
  dropped: number;
  /** Bytes all clients received. */
  bytes: number;
  /** From the first request to the last client done or dropped. */
  ms: number;
}

export interface RenderResult {
  tokens: number;
  /** Token DOM events the viewer dispatched. */
  tokenEvents: number;
  /** Durations (ms) of the page's long tasks (over 50 ms), longest first. */
  longTasks: number[];
  /** Longest gap between two animation frames while the stream arrived (ms). */
  maxFrameGap: number;
  /** From the first publish to the final text on screen (ms). */
  ms: number;
  /** The viewer shows the end of the final text. */
  shown: boolean;
}

export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** A command without its id (the orchestrator numbers them). */
export type CommandBody = Command extends infer C ? (C extends unknown ? Omit<C, 'id'> : never) : never;
