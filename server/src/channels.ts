/** Channel and key names, and the validation that keeps user input out of them. */

import { InvalidArgumentError } from './broker/errors.js';

import { ID_RULE, isValidId } from '../../protocol/ids.js';

// The id rule is the protocol's (protocol/ids.ts); re-exported for the server's own modules and its public entry point.
export { ID_PATTERN, ID_RULE, RESERVED_IDS, isValidId } from '../../protocol/ids.js';

export const DEFAULT_PREFIX = 'ai_story';

/**
 * The `prefix` option of a broker, publisher or subscriber, checked by the id rule: a prefix with separators
 * (`ai_story:project:victim:stage:x#`) would put a worker's keys and channels inside another project's.
 */
export function checkPrefix(prefix: unknown): string {
  if (!isValidId(prefix)) throw new InvalidArgumentError('prefix', `${JSON.stringify(prefix)} must be ${ID_RULE}`);
  return prefix;
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
 * Redis Cluster hash tag, `{project_id}`, so that a project's log, state and texts live in one hash slot and
 * publish.lua can touch them atomically on a cluster. Every publisher derives the keys by this one rule
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

/**
 * The length of each stage's text so far and the id of its last token (a Redis hash; field `{stage}`: the length
 * in UTF-16 code units, `{stage}|id`: the id): `{prefix}:project:{<project_id>}:texts`, in the slot of the log.
 * Written by publish.lua for linear tokens (a piece and its offset, no `full_text`).
 */
export function textsKey(prefix: string, projectId: string): string {
  return `${prefix}:project:{${projectId}}:texts`;
}

/**
 * One stage's text so far (a Redis string grown by APPEND, one per linear token):
 * `{prefix}:project:{<project_id>}:text:{stage}`, in the slot of the log.
 */
export function textKey(prefix: string, projectId: string, stage: string): string {
  return `${prefix}:project:{${projectId}}:text:${stage}`;
}

/**
 * The project's control hash (run, status, lease, cancel and producer sequences of each stage; see publish.lua):
 * `{prefix}:project:{<project_id>}:control`, in the slot of the log, with the log's TTL.
 */
export function controlKey(prefix: string, projectId: string): string {
  return `${prefix}:project:{${projectId}}:control`;
}

/** Where a stage's worker hears its cancel and worker-lost messages: `{prefix}:project:<project_id>:control:<stage>`. */
export function controlChannel(prefix: string, projectId: string, stage: string): string {
  return `${prefix}:project:${projectId}:control:${stage}`;
}

/**
 * The index of leases the hubs' reapers read: a sorted set, member `<project_id>|<stage>`, score a deadline (ms) at
 * or before the lease's own (publish.lua's control hash is the truth; the index only says when to look).
 */
export function leaseIndexKey(prefix: string): string {
  return `${prefix}:leases`;
}
