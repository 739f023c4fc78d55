/**
 * Watches a stage from Node with the same SSEClient the browser elements use (fetch + reconnect + resume):
 * prints the text as it streams and exits when the stage is done (0) or failed (1).
 *
 *   node --import tsx examples/node/watch.ts [base-url] [project-id] [stage]
 */
import { createSSEClient } from 'ai-story-sse/client';

const [baseUrl = 'http://127.0.0.1:8010', projectId = 'example', stage = 'rewrite'] = process.argv.slice(2);

const client = createSSEClient(projectId, stage, { baseUrl, closeOnDone: true })
  .on('connected', () => console.error(`watching ${projectId}/${stage} on ${baseUrl}`))
  .on('token', (message) => process.stdout.write(message.content))
  .on('done', (message) => {
    process.stdout.write('\n');
    console.error(`done: ${message.full_text.length} characters`, message.metadata);
  })
  .on('error', (message) => {
    console.error(`\nthe stage failed: ${message.error}`);
    process.exitCode = 1;
    client.disconnect();
  })
  .on('reconnecting', ({ attempt, delayMs }) => console.error(`connection lost; retry ${attempt} in ${delayMs} ms`))
  .on('disconnected', (event) => {
    if (event.willReconnect) return;
    // closeOnDone ends with reason "done"; anything else is a failure to report.
    if (event.reason !== 'done' && event.reason !== 'disconnect') {
      console.error(`stopped: ${event.reason}${event.status ? ` (HTTP ${event.status})` : ''}`);
      process.exitCode = 1;
    }
  });

client.connect();
process.once('SIGINT', () => client.disconnect());
