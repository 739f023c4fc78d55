/** publish.lua, the one atomic log-and-publish step, as RedisBroker runs it. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ReplyError } from 'ioredis';
import { LeaseLostError, StageCancelledError, TokenOffsetError } from './errors.js';
import type { CommandClient } from './redis-connections.js';

/** Loaded from disk once: Node and Python run the very same file. */
/** publish.lua's text and SHA-1 (what EVALSHA names it by). */
export const PUBLISH_LUA = readFileSync(new URL('./publish.lua', import.meta.url), 'utf8');
export const PUBLISH_SHA = createHash('sha1').update(PUBLISH_LUA).digest('hex');

/** Runs publish.lua with `keys` and `args` (documented at its top) by its SHA, or, when Redis has not cached it, as a script. */
export async function runPublishScript(client: CommandClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
  try {
    return await client.evalsha(PUBLISH_SHA, keys.length, ...keys, ...args);
  } catch (error) {
    // The script cache is empty after a Redis restart or SCRIPT FLUSH: send the script itself once.
    if (error instanceof ReplyError && String((error as Error).message).startsWith('NOSCRIPT')) {
      return await client.eval(PUBLISH_LUA, keys.length, ...keys, ...args);
    }
    throw error;
  }
}

/** publish.lua's refusal of a linear token that does not continue its stage's text. */
const OFFSET_REFUSAL = /publish\.lua: token offset (\d+) does not continue the text of stage "([^"]*)", which has (\d+) UTF-16 code units/;

const CANCELLED_REFUSAL = /publish\.lua: stage cancelled: stage "([^"]*)"/;
const LOST_REFUSAL = /publish\.lua: lease lost: the lease of run "[^"]*" on stage "([^"]*)"/;

/** The script's refusals as {@link TokenOffsetError}, {@link StageCancelledError}, {@link LeaseLostError}; any other error as it is. */
export function publishScriptError(error: unknown): unknown {
  if (!(error instanceof ReplyError)) return error;
  const text = String((error as Error).message);
  const match = OFFSET_REFUSAL.exec(text);
  if (match) return new TokenOffsetError(match[2]!, Number(match[3]), Number(match[1]));
  const cancelled = CANCELLED_REFUSAL.exec(text);
  if (cancelled) return new StageCancelledError(cancelled[1]!);
  const lost = LOST_REFUSAL.exec(text);
  return lost ? new LeaseLostError(lost[1]!) : error;
}

/** The control options as publish.lua's last argument (see its header). */
export function controlArgument(op: string | undefined, control: { producer?: string; seq?: number; run?: string; leaseMs?: number; final?: boolean } = {}): string {
  const options: Record<string, unknown> = {};
  if (op !== undefined) options.op = op;
  if (control.producer !== undefined) options.producer = control.producer;
  if (control.seq !== undefined) options.seq = control.seq;
  if (control.run !== undefined) options.run = control.run;
  if (control.leaseMs !== undefined) options.lease_ms = control.leaseMs;
  if (control.final) options.final = true;
  return JSON.stringify(options);
}
