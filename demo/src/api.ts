/** The server's HTTP endpoints the demo calls besides the streams, with its one JSON error shape. */

/** `GET /healthz` */
export interface Health {
  status: 'ok' | 'unavailable';
  broker: 'redis' | 'memory';
  streams?: number;
  subscriptions?: number;
  tasks?: number;
  uptime_s?: number;
}

/** `202` of `execute_stage`. */
export interface StartedStage {
  task_id: string;
  channel: string;
  message: string;
}

/** `POST /api/v1/demo/token` */
export interface DevToken {
  token: string;
  /** Seconds. */
  expires_in: number;
}

/** A non-2xx answer: the server's `{"error": {"code", "message"}}`, or what the demo could make of the response. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function request<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers['Authorization'] = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'network', 'The server does not answer. Is it running (`npm start`)?');
  }
  const text = await response.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (response.ok) return json as T;
  const error = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  throw new ApiError(
    response.status,
    typeof error?.code === 'string' ? error.code : 'http_error',
    typeof error?.message === 'string' ? error.message : `HTTP ${response.status} ${response.statusText}`,
  );
}

/** Resolves on 200 and on 503 (the server is up, its broker is not); rejects when the server does not answer. */
export async function getHealth(): Promise<Health> {
  let response: Response;
  try {
    response = await fetch('/healthz', { headers: { Accept: 'application/json' }, cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network', 'The server does not answer. Is it running (`npm start`)?');
  }
  if (response.status !== 200 && response.status !== 503) throw new ApiError(response.status, 'http_error', `HTTP ${response.status}`);
  return (await response.json()) as Health;
}

export function executeStage(projectId: string, stageName: string, inputData: Record<string, unknown>, token?: string): Promise<StartedStage> {
  return request('POST', `/api/v1/projects/${encodeURIComponent(projectId)}/execute_stage/`, { stage_name: stageName, input_data: inputData }, token);
}

/** Demo only: ends every open stream of the project, so the clients reconnect and resume. */
export function cutProject(projectId: string): Promise<{ cut: number }> {
  return request('POST', `/api/v1/demo/projects/${encodeURIComponent(projectId)}/cut`, {});
}

/** Demo only: a short-lived token for one project; needs `SSE_AUTH_SECRET` on the server. */
export function mintToken(projectId: string): Promise<DevToken> {
  return request('POST', '/api/v1/demo/token', { project_id: projectId });
}
