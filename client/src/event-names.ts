/**
 * The names of an {@link SSEClient}'s events, in one table: the client, the {@link StreamHub} behind the provider
 * and the viewer's controller all read their lists from here. Keyed by the client's event map, so the compiler
 * flags a name added to the protocol (or to the client) that this table does not sort.
 */
import type { StageMessageType } from '../../protocol/messages.js';
import type { SSEClientEventMap } from './sse-client.js';

/** `stage`: a worker's message about a stage; `stream`: another event the server sends; `client`: the client's own. */
type EventKind = 'stage' | 'stream' | 'client';

const EVENT_KINDS = {
  token: 'stage',
  stage_update: 'stage',
  progress: 'stage',
  done: 'stage',
  error: 'stage',
  cancelled: 'stage',
  connected: 'stream',
  reset: 'stream',
  snapshot: 'stream',
  token_expired: 'stream',
  message: 'client',
  disconnected: 'client',
  reconnecting: 'client',
  state: 'client',
} as const satisfies Record<keyof SSEClientEventMap, EventKind>;

type EventName = keyof typeof EVENT_KINDS;
type NameOf<K extends EventKind> = { [N in EventName]: (typeof EVENT_KINDS)[N] extends K ? N : never }[EventName];

function namesOf<K extends EventKind>(...kinds: K[]): readonly NameOf<K>[] {
  return Object.freeze((Object.keys(EVENT_KINDS) as EventName[]).filter((name) => (kinds as EventKind[]).includes(EVENT_KINDS[name]))) as readonly NameOf<K>[];
}

/** Every event of a client, the server's and its own. */
export const EVENT_NAMES: readonly (keyof SSEClientEventMap)[] = namesOf('stage', 'stream', 'client');

/** The workers' message types: `token`, `stage_update`, `progress`, `done`, `error`. */
export const STAGE_MESSAGE_TYPES: readonly StageMessageType[] = namesOf('stage');

function kindOf(name: string): EventKind | undefined {
  return Object.hasOwn(EVENT_KINDS, name) ? EVENT_KINDS[name as EventName] : undefined;
}

/** True for a worker's message type. */
export function isStageMessageType(name: string): name is StageMessageType {
  return kindOf(name) === 'stage';
}

/** True for an event the protocol defines (a worker's message, `connected`, `reset`, `snapshot`, `token_expired`). */
export function isStreamEvent(name: string): boolean {
  const kind = kindOf(name);
  return kind === 'stage' || kind === 'stream';
}

/** True for a name of the client's own events: a server event with one of these names is only delivered as `message`. */
export function isClientEvent(name: string): boolean {
  return kindOf(name) === 'client';
}
