/**
 * The latest state of a project: one field per stage and message type, `<stage>|<type>`, holding that type's
 * latest message. publish.lua writes the Redis hash by the same rule; both brokers read it back with snapshotStages.
 */
import type { Snapshot } from './broker.js';

/** The state field of a stage's messages of one type. Stage names never contain "|" (the id rule). */
export function stateField(stage: string, type: string): string {
  return `${stage}|${type}`;
}

/**
 * State fields and their messages as {@link Snapshot.stages}. Prototype-less at both levels: the names come from
 * the broker, and anyone who can write the Redis hash chooses them. A field without "|" is no state field: skipped.
 */
export function snapshotStages(fields: Iterable<readonly [field: string, message: string]>): Snapshot['stages'] {
  const stages: Snapshot['stages'] = Object.create(null);
  for (const [field, message] of fields) {
    // The first "|" separates the stage from the type.
    const bar = field.indexOf('|');
    if (bar < 0) continue;
    (stages[field.slice(0, bar)] ??= Object.create(null))[field.slice(bar + 1)] = message;
  }
  return stages;
}
