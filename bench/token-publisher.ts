/**
 * Publishes one generation of `tokens` tokens (with `full_text`, as the contract's token message has it) and
 * its `done` message through the kit's StreamPublisher, as fast as Redis takes them, then exits. A process
 * of its own so bench/run.ts can pin it away from the browser it feeds.
 *
 * Usage: node --import tsx bench/token-publisher.ts <redis-url> <project> <stage> <tokens>
 */
import { tokenPieces } from './lib/tokens.js';
import { StreamPublisher } from '../server/src/publisher.js';

const [redisUrl, projectId, stage, count] = process.argv.slice(2);
const publisher = new StreamPublisher({ projectId: projectId!, stage: stage!, redisUrl });
const inFlight = new Set<Promise<string>>();
let text = '';
for (const piece of tokenPieces(Number(count))) {
  text += piece;
  const sent = publisher.publishToken(piece, text);
  inFlight.add(sent);
  void sent.finally(() => inFlight.delete(sent));
  if (inFlight.size >= 256) await Promise.race(inFlight);
}
await Promise.all(inFlight);
await publisher.publishDone(text, { tokens_used: Number(count) });
await publisher.close();
