/** publish.lua, the one atomic log-and-publish step, as RedisBroker runs it. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ReplyError } from 'ioredis';
import { TokenOffsetError } from './errors.js';
import type { CommandClient } from './redis-connections.js';

/** Loaded from disk once: Node and Python run the very same file. */
const PUBLISH_LUA = readFileSync(new URL('./publish.lua', import.meta.url), 'utf8');
const PUBLISH_SHA = createHash('sha1').update(PUBLISH_LUA).digest('hex');

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

/** The script's refusal of a token offset as a {@link TokenOffsetError}; any other error as it is. */
export function publishScriptError(error: unknown): unknown {
  const match = error instanceof ReplyError ? OFFSET_REFUSAL.exec(String((error as Error).message)) : null;
  return match ? new TokenOffsetError(match[2]!, Number(match[3]), Number(match[1])) : error;
}
