/** Ordering of replay-log ids (`<ms>-<seq>`, as Redis streams make them). */

/** True when `id` comes strictly after `than`. Ids that are not log ids are never "after". */
export function isAfter(id: string, than: string): boolean {
  const [ms, seq] = split(id);
  const [thanMs, thanSeq] = split(than);
  if (ms === undefined || thanMs === undefined) return false;
  return ms > thanMs || (ms === thanMs && seq! > thanSeq!);
}

function split(id: string): [bigint, bigint] | [undefined, undefined] {
  const match = /^(\d{1,20})-(\d{1,20})$/.exec(id);
  return match ? [BigInt(match[1]!), BigInt(match[2]!)] : [undefined, undefined];
}
