/**
 * The original design, reimplemented as the bench's naive peer: every SSE client opens its own Redis
 * subscriber connection, parses and re-serializes every message itself, and has its own heartbeat timer.
 * Same URLs and framing as our server, so the load generator treats both alike. Not part of the kit.
 *
 * Env: PORT (default 8001), REDIS_URL (default redis://127.0.0.1:6379), CHANNEL_PREFIX (default ai_story).
 */
import { createServer, type ServerResponse } from 'node:http';
import { Redis } from 'ioredis';

const port = Number(process.env.PORT ?? 8001);
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = process.env.CHANNEL_PREFIX || 'ai_story';
const heartbeatMs = Number(process.env.SSE_HEARTBEAT_MS ?? 15_000);
const ID = '[A-Za-z0-9_-]{1,64}';
const STAGE_PATH = new RegExp(`^/api/v1/sse/projects/(${ID})/stages/(${ID})/?$`);
const PROJECT_PATH = new RegExp(`^/api/v1/sse/projects/(${ID})/?$`);

function frame(message: Record<string, unknown>): string {
  const id = typeof message.id === 'string' ? `id: ${message.id}\n` : '';
  return `${id}event: ${String(message.type ?? 'message')}\ndata: ${JSON.stringify(message)}\n\n`;
}

function stream(res: ServerResponse, projectId: string, stage: string | null): void {
  const subscriber = new Redis(redisUrl, { maxRetriesPerRequest: null });
  let open = true;
  const heartbeat = setInterval(() => res.write(': ping\n\n'), heartbeatMs);
  const onMessage = (payload: string) => {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(payload) as Record<string, unknown>;
    } catch {
      message = { type: 'message', data: payload };
    }
    res.write(frame(message));
  };
  subscriber.on('error', () => {});
  subscriber.on('message', (_channel: string, payload: string) => onMessage(payload));
  subscriber.on('pmessage', (_pattern: string, _channel: string, payload: string) => onMessage(payload));
  res.on('close', () => {
    open = false;
    clearInterval(heartbeat);
    subscriber.disconnect();
  });
  const subscribed =
    stage === null
      ? subscriber.psubscribe(`${prefix}:project:${projectId}:stage:*`)
      : subscriber.subscribe(`${prefix}:project:${projectId}:stage:${stage}`);
  subscribed.then(
    () => {
      if (!open) return;
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-cache, no-transform',
        'X-Accel-Buffering': 'no',
        Connection: 'keep-alive',
      });
      res.write('retry: 3000\n\n');
      res.write(frame({ type: 'connected', project_id: projectId, stage, timestamp: Date.now() / 1000 }));
    },
    () => {
      if (!open) return;
      res.writeHead(503, { 'Content-Type': 'application/json' }).end('{"error":{"code":"unavailable","message":"Redis"}}');
    },
  );
}

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0]!;
  const byStage = STAGE_PATH.exec(path);
  const byProject = byStage ? null : PROJECT_PATH.exec(path);
  if (req.method === 'GET' && byStage) return stream(res, byStage[1]!, byStage[2]!);
  if (req.method === 'GET' && byProject) return stream(res, byProject[1]!, null);
  if (req.method === 'GET' && path === '/healthz') return void res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
  res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"error":{"code":"not_found","message":"Nothing here."}}');
});
server.keepAliveTimeout = 5000;
server.listen(port, '127.0.0.1', () => console.log(`naive peer on http://127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
