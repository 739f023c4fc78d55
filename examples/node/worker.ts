/**
 * A worker in a process of its own (the role Celery played in the original system): it does a job and
 * publishes its progress through Redis with StreamPublisher. Every viewer of the project sees it live.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 node --import tsx examples/node/worker.ts <project-id> [stage]
 *
 * WORKER_DELAY_MS (default 150) is the pause between tokens.
 */
import { StreamPublisher } from 'ai-story-sse/server';

const [projectId = 'example', stage = 'rewrite'] = process.argv.slice(2);
const delayMs = Number(process.env.WORKER_DELAY_MS ?? 150);
const pause = () => new Promise((resolve) => setTimeout(resolve, delayMs));

// The "model": a sentence, one word at a time.
const words = 'Once upon a time, a small robot learned to paint the sea at night.'.split(' ');

const publisher = new StreamPublisher({ projectId, stage, redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
const started = Date.now();
try {
  await publisher.publishStageUpdate('processing', 0, 'Rewriting the script');
  let text = '';
  for (const [index, word] of words.entries()) {
    const piece = index === 0 ? word : ` ${word}`;
    text += piece;
    await publisher.publishToken(piece, text);
    if (index % 4 === 3) await publisher.publishStageUpdate('processing', Math.round(((index + 1) / words.length) * 100), 'Rewriting the script');
    await pause();
  }
  await publisher.publishStageUpdate('completed', 100, 'Rewritten');
  await publisher.publishDone(text, { tokens_used: words.length, latency_ms: Date.now() - started });
  console.log(`published ${words.length} tokens to ${publisher.channel}`);
} catch (error) {
  // The job failed: say so on the stream too, then exit non-zero for the job queue.
  await publisher.publishError(error instanceof Error ? error : String(error)).catch(() => {});
  throw error;
} finally {
  await publisher.close();
}
