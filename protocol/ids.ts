/** The id rule: project ids, stage names, message types and prefixes, on every side of the wire. */

/** No glob characters, no separators, bounded length: an id can never widen a Redis subscription. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Names that match {@link ID_PATTERN} but are refused as ids: as a key of a plain JavaScript object they reach
 * its internals (`obj.__proto__` is Object.prototype), so a map keyed by them could rewrite every object of the
 * process. workers/python and publish.lua refuse the same names.
 */
export const RESERVED_IDS: readonly string[] = Object.freeze(['__proto__', 'constructor', 'prototype']);

/** The id rule in words, for error messages: `project_id must be ${ID_RULE}.` */
export const ID_RULE = `1-64 characters of A-Z, a-z, 0-9, "_" or "-", and not ${RESERVED_IDS.map((name) => `"${name}"`).join(', ')} (they name an object's internals)`;

/** True for a string that matches {@link ID_PATTERN} and is none of the {@link RESERVED_IDS}. */
export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value) && !RESERVED_IDS.includes(value);
}
