/** The entry point: reads the environment, builds the real broker and server, handles signals. */
import { pino } from 'pino';
import { collectDefaultMetrics } from 'prom-client';
import { chooseBroker } from './broker/choose-broker.js';
import { readConfig } from './config.js';
import { DEFAULTS } from './defaults.js';
import { startServer } from './server.js';

const config = readConfig();
const log = pino({ level: config.logLevel });
if (config.production && config.demoEnabled) {
  // Deliberate (SSE_ENABLE_DEMO=true), and loud: anyone who reaches the server can then mint tokens and start jobs.
  log.warn('SSE_ENABLE_DEMO=true in production: POST /api/v1/demo/token mints a token for ANY project, and execute_stage publishes into any project. Never expose this server to users.');
}
if (config.production && config.publicStreams) {
  log.warn('SSE_PUBLIC_STREAMS=true in production: anyone who knows a project id can read its streams without a token.');
}
if (!config.authSecret && !config.publicStreams) {
  log.warn('no SSE_AUTH_SECRET and public streams off: every stream endpoint refuses; set SSE_AUTH_SECRET to serve the authenticated ones.');
}

const { broker, reason } = await chooseBroker(config);
log.info(reason);
const server = await startServer(config, broker, log);
// The process's own metrics (CPU, memory, event-loop lag) beside the hub's, at /metrics.
collectDefaultMetrics({ register: server.metrics.registry });
log.info(`listening on ${server.url}${config.demoEnabled ? ` — demo at ${server.url}/sse-demo` : ''}`);
if (server.metricsUrl) log.info(`metrics at ${server.metricsUrl}`);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info(`${signal}: closing streams and the broker`);
  // A second signal, or a hang, must not keep the process alive.
  setTimeout(() => process.exit(1), DEFAULTS.shutdownTimeoutMs).unref();
  await server.close();
  await broker.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
