/**
 * Runs the mock pipeline the way a backend would: one `execute_stage` per stage, in order, each
 * started only after the previous one sent `done` (and stopping at the first `error`).
 * It watches the project with its own {@link SSEClient}, opened before the first stage starts,
 * so no `done` can slip by between the POST and the subscription.
 */
import { createSSEClient, type SSEClient } from '../../client/src/index.js';
import type { DoneMessage, ErrorMessage } from '../../client/src/messages.js';
import { ApiError, executeStage, mintToken } from './api.js';

export const STAGES = ['rewrite', 'storyboard', 'image_generation', 'video_generation'] as const;
export type Stage = (typeof STAGES)[number];

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

/** Waits for `connected`; rejects if the client gives up first. */
function opened(client: SSEClient, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    client.on('connected', () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
    client.on('disconnected', (event) => {
      if (event.willReconnect) return;
      signal.removeEventListener('abort', onAbort);
      reject(new ApiError(event.status ?? 0, event.error?.code ?? event.reason, event.error?.message ?? `The stream closed: ${event.reason}.`));
    });
  });
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

export async function runPipeline(options: RunOptions): Promise<RunResult> {
  const { projectId, stages, speed, fail, signal, onProgress } = options;
  const client = createSSEClient(projectId);
  let settle: ((message: DoneMessage | ErrorMessage) => void) | undefined;
  let waitingFor = '';
  client.on('done', (message) => {
    if (message.stage === waitingFor) settle?.(message);
  });
  client.on('error', (message) => {
    if (message.stage === waitingFor) settle?.(message);
  });
  const ready = opened(client, signal);
  client.connect();
  try {
    await ready;
    for (const [index, stage] of stages.entries()) {
      if (signal.aborted) return { outcome: 'stopped' };
      waitingFor = stage;
      const ended = new Promise<DoneMessage | ErrorMessage | undefined>((resolve) => {
        settle = resolve;
        signal.addEventListener('abort', () => resolve(undefined), { once: true });
      });
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
    return { outcome: 'completed' };
  } catch (error) {
    if (signal.aborted) return { outcome: 'stopped' };
    throw error;
  } finally {
    client.disconnect();
  }
}
