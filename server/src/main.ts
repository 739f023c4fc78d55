#!/usr/bin/env node
/**
 * The standalone server, and the package's `ai-story-sse` command (its `bin`, dist/server/bin.js, checks the peer
 * dependencies and then loads dist/server/main.js, which `npm start` runs with plain node). Reads the environment, loads the token keys, builds the real broker and server, handles
 * signals. `--help` lists every variable with its default, `--version` prints the version, `token …` prints a
 * development token. A bad setting is one line on stderr and exit code 2.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { collectDefaultMetrics } from 'prom-client';
import { chooseBroker } from './broker/choose-broker.js';
import { helpText } from './cli/help.js';
import { tokenCommand } from './cli/token.js';
import { ConfigError, readConfig, type ServerConfig } from './config.js';
import { DEFAULTS } from './defaults.js';
import { loadTokenKeys, TokenKeyError, type TokenKeys } from './http/token-keys.js';
import { startServer } from './server.js';

/** The package's version: package.json sits two folders up, from server/src/ and from dist/server/ alike. */
function version(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

function fail(message: string, code = 2): never {
  process.stderr.write(`ai-story-sse: ${message}\n`);
  process.exit(code);
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'token') {
    process.exitCode = await tokenCommand(argv.slice(1));
    return;
  }
  let flags: { help?: boolean; version?: boolean };
  try {
    ({ values: flags } = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } } }));
  } catch (error) {
    fail(`${(error as Error).message} (see ai-story-sse --help)`);
  }
  if (flags.help) return void process.stdout.write(helpText(version()));
  if (flags.version) return void process.stdout.write(`${version()}\n`);

  let config: ServerConfig;
  let authKeys: TokenKeys | undefined;
  try {
    config = readConfig();
    authKeys = config.authKeySource && (await loadTokenKeys(config.authKeySource));
  } catch (error) {
    if (error instanceof ConfigError || error instanceof TokenKeyError) fail(error.message);
    throw error;
  }
  await serve(config, authKeys);
}

async function serve(config: ServerConfig, authKeys: TokenKeys | undefined): Promise<void> {
  const log = pino({ level: config.logLevel });
  if (config.production && config.demoEnabled) {
    // Deliberate (SSE_ENABLE_DEMO=true), and loud: anyone who reaches the server can then mint tokens and start jobs.
    log.warn('SSE_ENABLE_DEMO=true in production: POST /api/v1/demo/token mints a token for ANY project, and execute_stage publishes into any project. Never expose this server to users.');
  }
  if (config.production && config.publicStreams) {
    log.warn('SSE_PUBLIC_STREAMS=true in production: anyone who knows a project id can read its streams without a token.');
  }
  if (!config.authSecret && !authKeys && !config.publicStreams) {
    log.warn('no SSE_AUTH_SECRET or public key, and public streams off: every stream endpoint refuses; set one to serve the authenticated ones.');
  }
  if (authKeys) log.info(`tokens verified with the ${authKeys.description}; iss ${config.authIssuer}, aud ${config.authAudience}`);
  if (config.trustedProxies) log.info(`client addresses from X-Forwarded-For of the trusted proxies ${config.trustedProxies.entries.join(', ')}`);
  if (config.corsOrigins) log.info(`cross-origin requests answered for ${config.corsOrigins.join(', ')} (SSE_CORS_ORIGINS)`);

  const { broker, reason } = await chooseBroker(config);
  log.info(reason);
  const server = await startServer({ ...config, authKeys }, broker, log).catch(async (error: NodeJS.ErrnoException) => {
    await broker.close().catch(() => {});
    if (error.code === 'EADDRINUSE' || error.code === 'EACCES' || error.code === 'EADDRNOTAVAIL') fail(`cannot listen on ${config.host}:${config.port} (${error.code})`, 1);
    throw error;
  });
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
}

await main(process.argv.slice(2));
