/**
 * Runs the mock pipeline the way a backend would: one `execute_stage` per stage, in order, each
 * started only after the previous one sent `done` (and stopping at the first `error`).
 * It watches the project with its own SSEClient, opened before the first stage starts,
 * so no `done` can slip by between the POST and the subscription.
 */
import { createSSEClient, type DisconnectedEvent, type Transport } from '../../client/src/index.js';
import type { DoneMessage, ErrorMessage } from '../../protocol/messages.js';
import { ApiError, executeStage, mintToken } from './api.js';

export const STAGES = ['rewrite', 'storyboard', 'image_generation', 'video_generation'] as const;

export interface RunOptions {
  projectId: string;
  stages: readonly string[];
  /** Multiplier of the mock's realistic pace. */
  speed: number;
  /** End each stage with an `error` halfway through. */
  fail: boolean;
  signal: AbortSignal;
  /** Called when a stage is started and when it ends. */
  onProgress?: (event: RunProgress) => void;
  /** How the pipeline's own watcher reaches the server, as the viewers do. Default `sse`. */
  transport?: Transport;
}

export type RunProgress =
  | { kind: 'started'; stage: string; index: number; total: number }
  | { kind: 'done'; stage: string; message: DoneMessage }
  | { kind: 'error'; stage: string; message: ErrorMessage };

export interface RunResult {
  outcome: 'completed' | 'failed' | 'stopped';
  /** The stage that failed, for `failed`. */
  stage?: string;
}

/** With `SSE_AUTH_SECRET` set, `execute_stage` wants a token: the demo mints a development one on the first 401. */
const tokens = new Map<string, { token: string; until: number }>();

async function start(projectId: string, stage: string, input: Record<string, unknown>): Promise<void> {
  const cached = tokens.get(projectId);
  const token = cached && cached.until > Date.now() ? cached.token : undefined;
  try {
    await executeStage(projectId, stage, input, token);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401 || token) throw error;
    const minted = await mintToken(projectId);
    tokens.set(projectId, { token: minted.token, until: Date.now() + (minted.expires_in - 30) * 1000 });
    await executeStage(projectId, stage, input, minted.token);
  }
}

/** Why the watching client stopped for good (it retries transient failures itself). */
function closedError(event: DisconnectedEvent): ApiError {
  return new ApiError(event.status ?? 0, event.error?.code ?? event.reason, event.error?.message ?? `The stream closed: ${event.reason}.`);
}

export async function runPipeline(options: RunOptions): Promise<RunResult> {
  const { projectId, stages, speed, fail, signal, onProgress } = options;
  const client = createSSEClient(projectId, null, { transport: options.transport ?? 'sse' });
  // What the current wait is for: `connected`, or the end of one stage.
  let waiting: { stage: string | null; resolve: (message?: DoneMessage | ErrorMessage) => void; reject: (error: unknown) => void } | undefined;
  const until = (stage: string | null) =>
    new Promise<DoneMessage | ErrorMessage | undefined>((resolve, reject) => {
      if (signal.aborted) return resolve(undefined);
      waiting = { stage, resolve, reject };
    });
  const onAbort = () => waiting?.resolve(undefined);
  signal.addEventListener('abort', onAbort);
  client
    .on('connected', () => {
      if (waiting?.stage === null) waiting.resolve();
    })
    .on('done', (message) => {
      if (waiting?.stage === message.stage) waiting.resolve(message);
    })
    .on('error', (message) => {
      if (waiting?.stage === message.stage) waiting.resolve(message);
    })
    .on('disconnected', (event) => {
      if (!event.willReconnect && event.reason !== 'disconnect') waiting?.reject(closedError(event));
    });

  try {
    const ready = until(null);
    client.connect();
    await ready;
    for (const [index, stage] of stages.entries()) {
      if (signal.aborted) return { outcome: 'stopped' };
      // Listen before starting: a fast stage may end before the POST returns.
      const ended = until(stage);
      await start(projectId, stage, { speed, fail });
      onProgress?.({ kind: 'started', stage, index, total: stages.length });
      const message = await ended;
      if (!message) return { outcome: 'stopped' };
      if (message.type === 'error') {
        onProgress?.({ kind: 'error', stage, message });
        return { outcome: 'failed', stage };
      }
      onProgress?.({ kind: 'done', stage, message });
    }
    return { outcome: signal.aborted ? 'stopped' : 'completed' };
  } finally {
    signal.removeEventListener('abort', onAbort);
    client.disconnect();
  }
}
