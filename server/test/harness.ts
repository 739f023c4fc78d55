/** One private redis-server + broker + HTTP server per test file, torn down in hooks. */
import type { Broker } from '../src/broker/broker.js';
import { MemoryBroker } from '../src/broker/memory-broker.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { startServer, type RunningServer, type ServerSettings } from '../src/server.js';
import { startRedis, type TestRedis } from './redis-server.js';

export const TEST_SETTINGS: ServerSettings = {
  port: 0,
  host: '127.0.0.1',
  authSecret: undefined,
  heartbeatMs: 15_000,
  retryMs: 1_000,
  publicStreams: true,
  demoEnabled: true,
  maxStreams: 1_000,
  maxStreamsPerClient: 500,
  maxBufferBytes: 1024 * 1024,
};

export interface Harness {
  redis: TestRedis | undefined;
  broker: Broker;
  server: RunningServer;
  url: string;
  close(): Promise<void>;
}

export interface HarnessOptions {
  broker?: 'redis' | 'memory';
  settings?: Partial<ServerSettings>;
  logMaxLen?: number;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const redis = options.broker === 'memory' ? undefined : await startRedis();
  const brokerOptions = { prefix: 'ai_story', logMaxLen: options.logMaxLen ?? 1000, logTtlSeconds: 3600 };
  const broker = redis ? new RedisBroker({ ...brokerOptions, url: redis.url }) : new MemoryBroker(brokerOptions);
  const server = await startServer({ ...TEST_SETTINGS, ...options.settings }, broker);
  return {
    redis,
    broker,
    server,
    url: server.url,
    async close() {
      await server.close();
      await broker.close();
      await redis?.close();
    },
  };
}

export function streamUrl(base: string, projectId: string, stage?: string, auth = false): string {
  const path = stage === undefined ? `/api/v1/sse/projects/${projectId}/` : `/api/v1/sse/projects/${projectId}/stages/${stage}/`;
  return base + path + (auth ? 'stream/' : '');
}
