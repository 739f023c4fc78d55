/**
 * The long-answer scenario (issue 14, "linear cost for long answers"): one 5,000-token answer of about 30 KB of
 * mixed Chinese and English, published with the kit's StreamPublisher into a fresh project on a fresh
 * redis-server. What it costs Redis (memory of the project's keys), every hub process (pub/sub bytes), the
 * publisher (rate at the start against the rate at the end) and a browser (body bytes, original and compact).
 *
 * The load generator publishes and reads the streams (`longPublish`, `longView` in bench/loadgen.ts); the
 * orchestrator (bench/run.ts) holds the raw pub/sub subscriber and reads Redis's memory. This module has what
 * both share, the issue's targets and the report `bench/results/long-answer.md`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { REWRITE_TEXT, STORYBOARD_TEXT, toTokens } from '../../server/src/mock/scripts.js';
import { ROOT } from './targets.js';

export const LONG_TOKENS = 5000;
/** Tokens published into a project of their own first, so the measured first 100 do not pay for the JIT. */
export const LONG_WARMUP_TOKENS = 2000;
/** The windows the publish rate is compared over: the first and the last this many tokens. */
export const RATE_WINDOW = 100;

/**
 * The answer's pieces: the mock pipeline's story (server/src/mock/scripts.ts) split as its `toTokens` does, a
 * piece of punctuation joined to the piece before it (as an LLM's tokens usually carry it), over and over:
 * about 6 UTF-8 bytes a token, so 5,000 tokens are about 30 KB.
 */
export function longAnswerPieces(count: number): string[] {
  const pieces: string[] = [];
  for (const piece of toTokens(`${REWRITE_TEXT} ${STORYBOARD_TEXT} `)) {
    if (pieces.length > 0 && !/[A-Za-z0-9\u3400-\u9fff]/u.test(piece)) pieces[pieces.length - 1] += piece;
    else pieces.push(piece);
  }
  return Array.from({ length: count }, (_, i) => pieces[i % pieces.length]!);
}

/** Publish rates (tokens/s) over a window of tokens, each token awaited before the next is sent. */
export interface RateWindow {
  from: number;
  to: number;
  /** 1 / the median time of a token: robust against a GC pause or a scheduling hiccup in a window of 10 ms. */
  median: number;
  /** Tokens / the window's total time. */
  mean: number;
}

/** The load generator's answer to `longPublish`. */
export interface LongPublishResult {
  tokens: number;
  textBytes: number;
  ms: number;
  first: RateWindow;
  last: RateWindow;
  first500: RateWindow;
  last500: RateWindow;
  /**
   * A fresh answer's first tokens (another project), each published just before one of the last tokens of this one:
   * the rate at 100 tokens measured at the same moment, JIT state and machine load as the rate at 5,000.
   */
  control?: RateWindow;
}

/** One browser stream of `longView`: what its body held from the first token on. */
export interface LongStream {
  /** De-chunked body bytes (SSE framing and JSON), from the first token to the `done`. */
  bodyBytes: number;
  /** Every byte the socket received (HTTP head, chunk framing, the `connected` event). */
  wireBytes: number;
  events: number;
  withFullText: number;
  textOk: boolean;
}

/** The load generator's answer to `longView`. */
export interface LongViewResult {
  tokens: number;
  textBytes: number;
  /** UTF-8 bytes of the `full_text` the original format sends: every token's and the `done`'s. */
  fullTextBytes: number;
  original: LongStream;
  compact: LongStream;
  ms: number;
  /** The publisher's rates with the two viewers on the stage (for comparison; the target is on the answer without). */
  first: RateWindow;
  last: RateWindow;
}

export interface LongKey {
  key: string;
  type: string;
  bytes: number;
}

export interface LongAnswerResult {
  tokens: number;
  textBytes: number;
  /** What the publisher sent, as seen on the channel: token messages with `full_text`, or pieces with an offset. */
  format: 'full_text' | 'linear' | 'mixed';
  commit: string;
  started: string;
  /** `logEntries`: what the log keeps of the answer (it is trimmed to the broker's log length, 1,000 by default). */
  redis: { keys: LongKey[]; total: number; usedMemoryDelta: number; logEntries: number };
  pubsub: { messages: number; bytes: number; textFieldBytes: number; tokensWithFullText: number };
  publish: LongPublishResult;
  view: LongViewResult;
}

/** Sums `MEMORY USAGE <key> SAMPLES 0` (every element counted) over the project's keys: `<prefix>:project:{<id>}:*`. */
export async function projectMemory(redis: Redis, prefix: string, projectId: string): Promise<{ keys: LongKey[]; total: number }> {
  const keys: LongKey[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}:project:{${projectId}}:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of found) {
      const bytes = Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
      keys.push({ key, type: await redis.type(key), bytes });
    }
  } while (cursor !== '0');
  keys.sort((a, b) => a.key.localeCompare(b.key));
  return { keys, total: keys.reduce((total, k) => total + k.bytes, 0) };
}

export async function usedMemory(redis: Redis): Promise<number> {
  return Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))?.[1]);
}

/**
 * A hub process's view of one project's channels: a raw ioredis subscriber on the project's pattern, counting
 * the payload bytes it receives. `done` resolves on the stage's `done` message. The payloads are kept and read
 * (JSON.parse) only after the answer, so the count costs nothing while the answer is measured.
 */
export class PubsubCounter {
  messages = 0;
  bytes = 0;
  readonly done: Promise<void>;
  readonly #client: Redis;
  readonly #payloads: Buffer[] = [];
  #resolve!: () => void;

  constructor(redisUrl: string, readonly pattern: string) {
    this.#client = new Redis(redisUrl, { connectionName: 'bench:long-answer-subscriber' });
    this.done = new Promise((resolve) => (this.#resolve = resolve));
    const needle = Buffer.from('"type":"done"');
    this.#client.on('pmessageBuffer', (_pattern: Buffer, _channel: Buffer, payload: Buffer) => {
      this.messages++;
      this.bytes += payload.length;
      this.#payloads.push(payload);
      if (payload.indexOf(needle) >= 0) this.#resolve();
    });
  }

  async start(): Promise<void> {
    await this.#client.psubscribe(this.pattern);
  }

  /** The bytes of the text fields (`content`, `full_text`) of every message, and the tokens that carried `full_text`. */
  textFields(): { textFieldBytes: number; tokensWithFullText: number; tokens: number } {
    let textFieldBytes = 0;
    let tokensWithFullText = 0;
    let tokens = 0;
    for (const payload of this.#payloads) {
      const message = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
      for (const field of ['content', 'full_text']) if (typeof message[field] === 'string') textFieldBytes += Buffer.byteLength(message[field] as string);
      if (message.type === 'token') {
        tokens++;
        if (typeof message.full_text === 'string') tokensWithFullText++;
      }
    }
    return { textFieldBytes, tokensWithFullText, tokens };
  }

  async close(): Promise<void> {
    await this.#client.quit().catch(() => this.#client.disconnect());
  }
}

/** The checkout's commit, or BENCH_COMMIT (e.g. for a `git archive` of a commit, which is no work tree). */
export function gitCommit(): string {
  if (process.env.BENCH_COMMIT) return process.env.BENCH_COMMIT;
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || '?';
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  return dirty ? `${head} + uncommitted changes` : head;
}

export interface LongCheck {
  target: string;
  measure: string;
  value: string;
  ratio: string;
  status: 'met' | 'NOT met';
  /** The same against the text plus the messages' framing (the convention of issue 6's token target). */
  framed?: string;
}

const int = (v: number) => Math.round(v).toLocaleString('en-US');
const x = (v: number) => `${v < 10 ? v.toFixed(2) : v.toFixed(1)}×`;

/** Where the project's memory goes: the log's entries (trimmed to the broker's log length) and the kept text. */
function memoryContext(r: LongAnswerResult): string {
  const log = r.redis.keys.find((k) => k.key.endsWith(':log'));
  const text = r.redis.keys.filter((k) => /:text:[^:]+$/.test(k.key)).reduce((total, k) => total + k.bytes, 0);
  const perEntry = log && r.redis.logEntries ? `${int(log.bytes / r.redis.logEntries)} B per entry` : '';
  return `the log keeps the last ${int(r.redis.logEntries)} of ${int(r.tokens + 1)} messages (log length ${int(r.redis.logEntries)}), ${perEntry}; ${text ? `the kept text ${int(text)} B (${x(text / r.textBytes)})` : 'no kept text'}`;
}

/** The issue's four targets (five figures: the original format's bytes are reported against the run before). */
export function longChecks(r: LongAnswerResult): LongCheck[] {
  const text = r.textBytes;
  // Framing: every message's bytes besides its text fields (id, type, stage, project_id, timestamp, offset, JSON).
  const framing = r.pubsub.bytes - r.pubsub.textFieldBytes;
  const memoryRatio = r.redis.total / text;
  const pubsubRatio = r.pubsub.bytes / text;
  // The rate at 100 tokens: the control (a fresh answer published alternately with the last tokens) when there is one.
  const control = r.publish.control;
  const rateRatio = r.publish.last.median / (control ?? r.publish.first).median;
  const original = r.view.original;
  const compact = r.view.compact;
  // The browser's framing, as issue 6 counts it: what the original format sends besides the text pieces and full_text.
  const sseFraming = original.bodyBytes - r.view.textBytes - r.view.fullTextBytes;
  const compactLimit = 1.5 * (r.view.textBytes + sseFraming);
  return [
    {
      target: 'Redis memory for the project ≤ 3× the text',
      measure: `Σ MEMORY USAGE of ${r.redis.keys.length} keys`,
      value: `${int(r.redis.total)} B`,
      ratio: x(memoryRatio),
      status: memoryRatio <= 3 ? 'met' : 'NOT met',
      framed: memoryContext(r),
    },
    {
      target: 'pub/sub bytes per hub process ≤ 2× the text',
      measure: `${int(r.pubsub.messages)} messages on the project's pattern`,
      value: `${int(r.pubsub.bytes)} B`,
      ratio: x(pubsubRatio),
      status: pubsubRatio <= 2 ? 'met' : 'NOT met',
      framed: `${x(r.pubsub.bytes / (text + framing))} of text + framing`,
    },
    {
      target: `publish rate at ${int(r.tokens)} tokens within 10% of the rate at ${RATE_WINDOW}`,
      measure: control
        ? `tokens ${r.publish.last.from + 1}–${r.publish.last.to} vs a fresh answer's 1–${control.to}, alternating (medians)`
        : `tokens ${r.publish.last.from + 1}–${r.publish.last.to} vs 1–${r.publish.first.to} (medians)`,
      value: `${int(r.publish.last.median)} vs ${int((control ?? r.publish.first).median)} tokens/s`,
      ratio: `${x(rateRatio)} (last ÷ first)`,
      status: rateRatio >= 0.9 ? 'met' : 'NOT met',
      framed: `the same answer's own tokens 1–${r.publish.first.to}: ${int(r.publish.first.median)} tokens/s, last ÷ first ${x(r.publish.last.median / r.publish.first.median)} (means ${x(r.publish.last.mean / r.publish.first.mean)}); last 500 ÷ first 500: ${x(r.publish.last500.median / r.publish.first500.median)}`,
    },
    {
      target: 'bytes to a browser, original format: unchanged',
      measure: 'body bytes of one plain stream (no `?compact=1`)',
      value: `${int(original.bodyBytes)} B`,
      ratio: x(original.bodyBytes / r.view.textBytes),
      // Unchanged means: every token event still carries its full_text and the text is exactly the published one.
      status: original.textOk && original.withFullText === r.tokens ? 'met' : 'NOT met',
      framed: `${original.withFullText} of ${int(r.tokens)} token events with full_text, text ${original.textOk ? 'exact' : 'WRONG'}`,
    },
    {
      target: 'bytes to a browser, compact mode ≤ 1.5× the text',
      measure: 'body bytes of one `?compact=1` stream',
      value: `${int(compact.bodyBytes)} B`,
      ratio: x(compact.bodyBytes / r.view.textBytes),
      status: compact.bodyBytes <= 1.5 * r.view.textBytes && compact.textOk ? 'met' : 'NOT met',
      framed: `${x(compact.bodyBytes / (r.view.textBytes + sseFraming))} of text + SSE framing (limit ${int(compactLimit)} B: ${compact.bodyBytes <= compactLimit ? 'within' : 'over'}), text ${compact.textOk ? 'exact' : 'WRONG'}`,
    },
  ];
}

const TITLES: Record<LongAnswerResult['format'], string> = {
  full_text: 'Before: the publisher sends every token with `full_text`',
  linear: 'After: the publisher sends every token as its piece plus an offset',
  mixed: 'Mixed: some tokens with `full_text`, some without',
};

function section(r: LongAnswerResult): string {
  const checks = longChecks(r);
  const mib = (v: number) => `${(v / 1024 / 1024).toFixed(2)} MiB`;
  const lines = [
    `## ${TITLES[r.format]}`,
    '',
    `Run ${r.started.slice(0, 19).replace('T', ' ')} UTC on commit ${r.commit}. ${int(r.tokens)} tokens, text ${int(r.textBytes)} UTF-8 bytes; ${r.pubsub.tokensWithFullText} of ${int(r.tokens)} token messages on the channel carried \`full_text\`.`,
    '',
    '| target | measured | value | ÷ text | verdict | for context |',
    '| --- | --- | ---: | ---: | --- | --- |',
    ...checks.map((c) => `| ${c.target} | ${c.measure} | ${c.value} | ${c.ratio} | **${c.status}** | ${c.framed ?? ''} |`),
    '',
    `Redis keys: ${r.redis.keys.map((k) => `\`${k.key}\` (${k.type}) ${int(k.bytes)} B`).join('; ')}. \`used_memory\` grew by ${mib(r.redis.usedMemoryDelta)} over the answer.`,
    '',
    `Publisher (each token awaited): ${int(r.publish.tokens)} tokens in ${(r.publish.ms / 1000).toFixed(2)} s; median rate tokens 1–${r.publish.first.to} ${int(r.publish.first.median)}/s, ${r.publish.last.from + 1}–${r.publish.last.to} ${int(r.publish.last.median)}/s; first 500 ${int(r.publish.first500.median)}/s, last 500 ${int(r.publish.last500.median)}/s${r.publish.control ? `; the control (a fresh answer's tokens 1–${r.publish.control.to}, alternately with the last 100) ${int(r.publish.control.median)}/s` : ''}. With the two browser streams on the stage: ${int(r.view.first.median)}/s and ${int(r.view.last.median)}/s (${x(r.view.last.median / r.view.first.median)}).`,
    '',
    `Browser streams: original ${int(r.view.original.bodyBytes)} body bytes (${int(r.view.original.wireBytes)} on the wire, ${r.view.original.events} events), compact ${int(r.view.compact.bodyBytes)} body bytes (${int(r.view.compact.wireBytes)} on the wire, ${r.view.compact.events} events, ${r.view.compact.withFullText} with full_text); the original format's \`full_text\` fields alone are ${int(r.view.fullTextBytes)} B.`,
  ];
  return lines.join('\n');
}

/**
 * Writes bench/results/long-answer.md from bench/results/long-answer.json, which keeps the latest run of each
 * format (before: `full_text`; after: linear): a run replaces the earlier one of its own format only.
 */
export function writeLongAnswerReport(r: LongAnswerResult): string {
  const dir = join(ROOT, 'bench/results');
  const jsonPath = join(dir, 'long-answer.json');
  const runs: Partial<Record<LongAnswerResult['format'], LongAnswerResult>> = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, 'utf8')) : {};
  runs[r.format] = r;
  writeFileSync(jsonPath, `${JSON.stringify(runs, null, 2)}\n`);
  const order: LongAnswerResult['format'][] = ['full_text', 'linear', 'mixed'];
  const present = order.filter((f) => runs[f]);
  let summary = '';
  if (runs.full_text && runs.linear) {
    const b = longChecks(runs.full_text);
    const a = longChecks(runs.linear);
    summary = [
      '## Before and after',
      '',
      '| target | before | after | verdict after |',
      '| --- | ---: | ---: | --- |',
      ...a.map((c, i) => `| ${c.target} | ${b[i]!.value} (${b[i]!.ratio}) | ${c.value} (${c.ratio}) | **${c.status}** |`),
      '',
      '',
    ].join('\n');
  }
  const md = `# Long answer (issue 14): one ${int(r.tokens)}-token answer

Written by \`npm run bench\` (scenario \`long-answer\`; alone: \`BENCH_TARGETS=ours BENCH_ONLY=long-answer npm run bench\`). Each section is the latest run with that publisher format.

How it is measured: a fresh redis-server and a fresh server of ours (the same core placement as the rest of the bench). The answer is the mock pipeline's story (\`server/src/mock/scripts.ts\`, split by its \`toTokens\`, punctuation joined to the piece before it), repeated to ${int(r.tokens)} tokens, about 6 bytes each; published on stage \`rewrite\` with the TypeScript \`StreamPublisher\` (\`publishToken(content, fullText)\` per token, each awaited, then \`publishDone\`), after a warm-up of ${LONG_WARMUP_TOKENS} tokens in another project.
- Redis memory: the sum of \`MEMORY USAGE <key> SAMPLES 0\` over \`SCAN MATCH ai_story:project:{<id>}:*\` after the \`done\` (log, state, and the texts hash and per-stage text keys when there are any), at the broker's defaults: the log is trimmed to its last 1,000 entries (issue 14's 83 MB / 21.5 MB were at \`log_maxlen=10000\`).
- Pub/sub per hub process: a raw ioredis subscriber on the project's pattern (\`PSUBSCRIBE ai_story:project:<id>:stage:*\`), payload bytes of every message of the answer. No browser stream is open during this answer, so our server is not subscribed and its Redis core is free.
- Publish rate: the time of each awaited \`publishToken\`; the rate of a window is 1 / its median token time (a 100-token window is about 10–50 ms, where a single pause would move a mean; the means are given too). On this shared machine the rate drifts by ±20–30% over the seconds an answer takes (other work, JIT tier-up), more than the 10% to be told apart; so the verdict compares the last 100 tokens with the first 100 of a fresh answer (another project, the same text) published alternately with them, one control token before each: same moment, same load, same JIT state. The answer's own first 100 (after the warm-up) are given as well.
- Browser: a second answer, the same text, in another project, read by two raw HTTP clients of our server, one plain (as a native EventSource) and one with \`?compact=1\`; the de-chunked body bytes from the first token to the \`done\` are counted, and the text is rebuilt from each and compared.
- "÷ text" is the literal target: the value over the text's UTF-8 bytes. "For context" also gives it against the text plus the messages' framing (every byte of the messages besides \`content\` and \`full_text\`: id, type, stage, project_id, timestamp, offset, JSON), as issue 6's token target counted: with tokens of about 6 bytes, a message's envelope (~120 bytes) is many times its text, so a literal ≤ 3×, ≤ 2× or ≤ 1.5× needs fewer messages than tokens, not only no \`full_text\`.

${summary}${present.map((f) => section(runs[f]!)).join('\n\n')}
`;
  const path = join(dir, 'long-answer.md');
  writeFileSync(path, md);
  return path;
}
