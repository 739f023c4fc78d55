/**
 * The filters of a stream (`?types=token,done&stages=rewrite,storyboard` on the stream endpoints, `types` and
 * `stages` on a subscription of the multiplexed connection), checked into a StreamFilter: a bad one is a 400 that
 * says what is wrong, never a silent "everything".
 */
import { ID_RULE, isValidId } from '../../../protocol/ids.js';
import type { StreamFilter } from '../hub/client-stream.js';
import { ErrorCode, HttpError } from './http-error.js';

/** At most this many types, and this many stages, per filter. */
export const MAX_FILTER_ITEMS = 16;

/**
 * One list: a comma-separated string (the query) or an array of strings (JSON). Undefined when absent; an empty
 * list, an empty item, a duplicate, more than MAX_FILTER_ITEMS or an item that breaks the id rule is refused.
 */
function list(name: string, raw: unknown): ReadonlySet<string> | undefined {
  if (raw === undefined || raw === null) return undefined;
  const items = typeof raw === 'string' ? raw.split(',') : Array.isArray(raw) ? raw : undefined;
  const rule = `"${name}" must be a list of 1 to ${MAX_FILTER_ITEMS} names, comma-separated in a query ("${name}=a,b") or a JSON array, each ${ID_RULE}`;
  if (!items || items.length === 0 || items.length > MAX_FILTER_ITEMS) throw new HttpError(400, ErrorCode.badRequest, `${rule}.`);
  const set = new Set<string>();
  for (const item of items) {
    if (!isValidId(item)) throw new HttpError(400, ErrorCode.invalidId, `${rule}; ${JSON.stringify(item)} is not.`);
    set.add(item);
  }
  if (set.size !== items.length) throw new HttpError(400, ErrorCode.badRequest, `${rule}, each once.`);
  return set;
}

/**
 * The filter of a stream that watches `stage` (null: every stage of the project). `stages` narrows an all-stages
 * stream to some of them; on a one-stage stream it is refused (it would mean nothing or nothing at all).
 */
export function parseFilter(types: unknown, stages: unknown, stage: string | null): StreamFilter | undefined {
  const filter: { types?: ReadonlySet<string>; stages?: ReadonlySet<string> } = {};
  const byType = list('types', types);
  const byStage = list('stages', stages);
  if (byStage && stage !== null) {
    throw new HttpError(400, ErrorCode.badRequest, '"stages" narrows a stream of every stage of a project; this one watches one stage already.');
  }
  if (byType) filter.types = byType;
  if (byStage) filter.stages = byStage;
  return byType || byStage ? filter : undefined;
}
