/** Channel and key names, and the validation that keeps user input out of them. */

/** `project_id` and `stage_name`: no glob characters, no separators, bounded length. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export const DEFAULT_PREFIX = 'ai_story';

export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

export function stageChannel(prefix: string, projectId: string, stage: string): string {
  return `${prefix}:project:${projectId}:stage:${stage}`;
}

/** PSUBSCRIBE pattern for every stage of a project. Safe because ids never hold glob characters. */
export function projectPattern(prefix: string, projectId: string): string {
  return `${prefix}:project:${projectId}:stage:*`;
}

/*
 * Key names (internal; the channel names above are the external contract). The project id is wrapped in a
 * Redis Cluster hash tag, `{project_id}`, so that a project's log and state live in one hash slot and
 * publish.lua can touch both atomically on a cluster. Every publisher derives the keys by this one rule
 * (workers/python/ai_story_stream.py too; publish.lua documents it). Ids never hold braces, so the tag is
 * always exactly the project id. Channels carry no tag: classic PUBLISH reaches every node of a cluster.
 */

/** The project's replay log (a Redis stream): `{prefix}:project:{<project_id>}:log`. */
export function logKey(prefix: string, projectId: string): string {
  return `${prefix}:project:{${projectId}}:log`;
}

/**
 * The latest message of each stage and type (a Redis hash, field `{stage}|{type}`), for reset events:
 * `{prefix}:project:{<project_id>}:state`, in the same hash slot as the log.
 */
export function stateKey(prefix: string, projectId: string): string {
  return `${prefix}:project:{${projectId}}:state`;
}

/** The stage name from a channel name, or null when the channel is not a stage channel of `prefix`. */
export function stageOfChannel(prefix: string, channel: string): string | null {
  const match = /:stage:([^:]+)$/.exec(channel);
  return channel.startsWith(`${prefix}:project:`) && match ? (match[1] ?? null) : null;
}
