/** The entry point: reads the environment, builds the real broker and server, handles signals. */
import { pino } from 'pino';
import { collectDefaultMetrics } from 'prom-client';
import { chooseBroker } from './broker/choose-broker.js';
import { readConfig } from './config.js';
import { startServer } from './server.js';

const config = readConfig();
const log = pino({ level: config.logLevel });

const { broker, reason } = await chooseBroker(config);
log.info(reason);
const server = await startServer(config, broker, log);
// The process's own metrics (CPU, memory, event-loop lag) beside the hub's, at /metrics.
collectDefaultMetrics({ register: server.metrics.registry });
log.info(`listening on ${server.url} — demo at ${server.url}/sse-demo`);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info(`${signal}: closing streams and the broker`);
  // A second signal, or a hang, must not keep the process alive.
  setTimeout(() => process.exit(1), 10_000).unref();
  await server.close();
  await broker.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
