/** Channel and key names, and the validation that keeps user input out of them. */

import { InvalidArgumentError } from './broker/errors.js';

/** `project_id` and `stage_name`: no glob characters, no separators, bounded length. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Names that match {@link ID_PATTERN} but are refused as ids (project ids, stage names, message types, prefixes):
 * as a key of a plain JavaScript object they reach its internals (`obj.__proto__` is Object.prototype), so a
 * map keyed by them could rewrite every object of the process. workers/python and publish.lua refuse the same.
 */
export const RESERVED_IDS: readonly string[] = Object.freeze(['__proto__', 'constructor', 'prototype']);

/** The id rule in words, for error messages: `project_id must be ${ID_RULE}.` */
export const ID_RULE = `1-64 characters of A-Z, a-z, 0-9, "_" or "-", and not ${RESERVED_IDS.map((name) => `"${name}"`).join(', ')} (they name an object's internals)`;

export const DEFAULT_PREFIX = 'ai_story';

/** True for a string that matches {@link ID_PATTERN} and is none of the {@link RESERVED_IDS}. */
export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value) && !RESERVED_IDS.includes(value);
}

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
