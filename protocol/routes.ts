/** The URL layout of the HTTP API, and the query parameters a stream takes. */

/** Query parameters of the stream endpoints. */
export const QueryParam = {
  /** `1`: compact token events (no `full_text`, an `offset`); the client rebuilds the text. */
  compact: 'compact',
  /** `0`: no `snapshot` event first on a stream opened without `Last-Event-ID` (it is sent by default). */
  snapshot: 'snapshot',
  /** The `Last-Event-ID` for clients that cannot send the header. */
  lastEventId: 'lastEventId',
  /** The token for clients that cannot send `Authorization` (a native EventSource). It lands in URLs: prefer the header. */
  accessToken: 'access_token',
  /** Only messages of these types, comma-separated (`types=progress,done`); at most 16. */
  types: 'types',
  /** On a project's stream: only these stages, comma-separated (`stages=rewrite,storyboard`); at most 16. */
  stages: 'stages',
} as const;

/** The four stream endpoints as route patterns (`:projectId`, `:stage`), and whether each needs a token. */
export const STREAM_ROUTES: readonly { readonly pattern: string; readonly authenticated: boolean }[] = [
  { pattern: '/api/v1/sse/projects/:projectId/stages/:stage/stream', authenticated: true },
  { pattern: '/api/v1/sse/projects/:projectId/stages/:stage', authenticated: false },
  { pattern: '/api/v1/sse/projects/:projectId/stream', authenticated: true },
  { pattern: '/api/v1/sse/projects/:projectId', authenticated: false },
];

/** Other routes of the API. */
export const Route = {
  executeStage: '/api/v1/projects/:projectId/execute_stage',
  cancelStage: '/api/v1/projects/:projectId/stages/:stage/cancel',
  demoCut: '/api/v1/demo/projects/:projectId/cut',
  demoToken: '/api/v1/demo/token',
  healthz: '/healthz',
  readyz: '/readyz',
  livez: '/livez',
  metrics: '/metrics',
  demo: '/sse-demo',
} as const;

/**
 * The path of a stream endpoint (with its trailing slash): one stage, or every stage when `stage` is null or
 * empty; `authenticated` picks the `…/stream/` endpoint that takes a token.
 */
export function streamPath(projectId: string, stage: string | null | undefined, authenticated: boolean): string {
  let path = `/api/v1/sse/projects/${encodeURIComponent(projectId)}/`;
  if (stage) path += `stages/${encodeURIComponent(stage)}/`;
  return authenticated ? `${path}stream/` : path;
}

/** The URL of a stream endpoint under `baseUrl` (an origin, or an origin and a path prefix; `''` for the page's own). */
export function streamUrl(baseUrl: string, projectId: string, stage: string | null | undefined, authenticated: boolean): string {
  return baseUrl.replace(/\/+$/, '') + streamPath(projectId, stage, authenticated);
}

/** `POST` path that starts a mock stage. */
export function executeStagePath(projectId: string): string {
  return `/api/v1/projects/${encodeURIComponent(projectId)}/execute_stage/`;
}

/** `POST` path that cancels a stage (needs a token for the project when the server has a secret). */
export function cancelStagePath(projectId: string, stage: string): string {
  return `/api/v1/projects/${encodeURIComponent(projectId)}/stages/${encodeURIComponent(stage)}/cancel/`;
}
