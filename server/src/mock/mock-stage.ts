/**
 * The mock publisher: a simulated AI story pipeline stage, published through the same publisher
 * library a real worker uses, so the demo exercises the real path.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { IMAGE_ITEMS, REWRITE_TEXT, STORYBOARD_TEXT, VIDEO_ITEMS, toTokens } from './scripts.js';

export const MOCK_STAGES = ['rewrite', 'storyboard', 'image_generation', 'video_generation'] as const;
export type MockStage = (typeof MOCK_STAGES)[number];

export function isMockStage(stage: string): stage is MockStage {
  return (MOCK_STAGES as readonly string[]).includes(stage);
}

/** The part of the publisher library the mock uses. */
export interface StagePublisher {
  publishToken(content: string, fullText: string): Promise<unknown>;
  publishStageUpdate(status: 'pending' | 'processing' | 'completed' | 'failed', progress: number, message: string): Promise<unknown>;
  publishProgress(current: number, total: number, itemName: string): Promise<unknown>;
  publishDone(fullText: string, metadata?: Record<string, unknown>): Promise<unknown>;
  publishError(error: string, retryCount?: number): Promise<unknown>;
}

export interface MockOptions {
  /** Multiplier of the realistic pace: 1 is real time, 20 is twenty times faster. */
  speed: number;
  /** End the stage with an `error` message halfway through. */
  fail: boolean;
  signal?: AbortSignal;
}

/** Realistic pace at speed 1, in ms. */
const PACE = { token: 45, image: 900, video: 1400, start: 300 } as const;

export async function runMockStage(stage: MockStage, publisher: StagePublisher, { speed, fail, signal }: MockOptions): Promise<void> {
  const started = Date.now();
  const wait = (ms: number) => sleep(ms / speed, undefined, { signal });
  await publisher.publishStageUpdate('processing', 0, `${stage} started`);
  await wait(PACE.start);

  if (stage === 'rewrite' || stage === 'storyboard') {
    const tokens = toTokens(stage === 'rewrite' ? REWRITE_TEXT : STORYBOARD_TEXT);
    let fullText = '';
    for (const [index, token] of tokens.entries()) {
      if (fail && index === Math.floor(tokens.length / 2)) return failStage(stage, publisher);
      fullText += token;
      await publisher.publishToken(token, fullText);
      // Jitter: real models do not stream at a metronome's pace.
      await wait(PACE.token * (0.5 + Math.random()));
    }
    await publisher.publishStageUpdate('completed', 100, `${stage} completed`);
    await publisher.publishDone(fullText, { tokens_used: tokens.length, latency_ms: Date.now() - started, model: 'mock-llm' });
    return;
  }

  const items = stage === 'image_generation' ? IMAGE_ITEMS : VIDEO_ITEMS;
  for (const [index, item] of items.entries()) {
    if (fail && index === Math.floor(items.length / 2)) return failStage(stage, publisher);
    await wait(stage === 'image_generation' ? PACE.image : PACE.video);
    await publisher.publishProgress(index + 1, items.length, item);
  }
  await publisher.publishStageUpdate('completed', 100, `${stage} completed`);
  await publisher.publishDone(`${items.length} ${stage === 'image_generation' ? 'images' : 'clips'} generated`, {
    items,
    latency_ms: Date.now() - started,
    model: stage === 'image_generation' ? 'mock-diffusion' : 'mock-video',
  });
}

async function failStage(stage: MockStage, publisher: StagePublisher): Promise<void> {
  await publisher.publishStageUpdate('failed', 50, `${stage} failed`);
  await publisher.publishError(`Simulated failure in ${stage}: the model provider returned 503 after 3 attempts`, 3);
}
