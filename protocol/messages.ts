/**
 * The messages: one JSON object per Redis message and per SSE event, and the events the server adds
 * (`connected`, `reset`, `token_expired`). Shared by the server, the client, the demo and the tests,
 * so every side agrees by construction.
 */

/** Values of `stage_update.status`. */
export const StageStatus = {
  pending: 'pending',
  processing: 'processing',
  completed: 'completed',
  failed: 'failed',
} as const;
export type StageStatus = (typeof StageStatus)[keyof typeof StageStatus];

/** Fields every message carries. `timestamp` is in seconds (float), as the original Python workers send it. */
export interface BaseMessage {
  type: string;
  stage: string;
  project_id: string;
  timestamp: number;
  /** Replay-log id, present on messages published through the kit's publisher; absent on foreign `PUBLISH`es. */
  id?: string;
  [extra: string]: unknown;
}

export interface TokenMessage extends BaseMessage {
  type: 'token';
  /** The new piece of text. */
  content: string;
  /** Everything generated so far. */
  full_text: string;
}

export interface StageUpdateMessage extends BaseMessage {
  type: 'stage_update';
  status: StageStatus;
  /** 0-100. */
  progress: number;
  message: string;
}

export interface ProgressMessage extends BaseMessage {
  type: 'progress';
  current: number;
  total: number;
  /** 0-100. */
  progress: number;
  item_name: string;
}

export interface DoneMessage extends BaseMessage {
  type: 'done';
  full_text: string;
  metadata: Record<string, unknown>;
}

/** The task failed. Not to be confused with a transport failure of the client. */
export interface ErrorMessage extends BaseMessage {
  type: 'error';
  error: string;
  retry_count: number;
}

/**
 * The stage was cancelled (`POST …/stages/{stage}/cancel/`): published once by the hub, in the log. The worker stops;
 * it may follow with a last `stage_update`. An `error` with `code: "worker_lost"` is the hub's word that the
 * stage's worker died (its lease expired).
 */
export interface CancelledMessage extends BaseMessage {
  type: 'cancelled';
  /** Why, as the cancel request gave it. */
  reason: string;
}

/** Messages a worker publishes (and `cancelled`, which the hub publishes for the user). */
export type StageMessage = TokenMessage | StageUpdateMessage | ProgressMessage | DoneMessage | ErrorMessage | CancelledMessage;
export type StageMessageType = StageMessage['type'];

/** First event of every stream, sent once the server's subscription is live. */
export interface ConnectedMessage {
  type: 'connected';
  project_id: string;
  /** `null` on an all-stages stream. */
  stage: string | null;
  /** True when the stream resumed from a `Last-Event-ID`. */
  resumed: boolean;
  timestamp: number;
  [extra: string]: unknown;
}

/**
 * Why a resume got a `reset`: `unknown_id`, never in the log; `expired`, trimmed from it or expired; `too_long`,
 * more than one resume may replay (`SSE_MAX_REPLAY_ENTRIES` / `SSE_MAX_REPLAY_BYTES`).
 */
export type ResetReason = 'unknown_id' | 'expired' | 'too_long';

/**
 * Sent instead of a replay when the requested `Last-Event-ID` is no longer (`expired`) or never was (`unknown_id`)
 * in the replay log, or instead of the rest of a replay longer than the server's caps (`too_long`).
 * `stages` maps each stage to the latest message of each type the log knows, so a viewer can redraw its state.
 */
export interface ResetMessage {
  type: 'reset';
  project_id: string;
  stage: string | null;
  reason: ResetReason;
  stages: Record<string, Partial<Record<StageMessageType, StageMessage>>>;
  timestamp: number;
  [extra: string]: unknown;
}

/**
 * What a viewer needs to draw one stage at once: the latest message of each kind, and its text so far.
 * Tokens are not repeated one by one: the text is there once.
 */
export interface StageState {
  stage_update?: StageUpdateMessage;
  progress?: ProgressMessage;
  done?: DoneMessage;
  error?: ErrorMessage;
  cancelled?: CancelledMessage;
  /** The stage's text so far; absent when `done` is there (its `full_text` is the text) or the stage has none. */
  text?: string;
}

/**
 * Event `snapshot`, the first event of a stream opened without `Last-Event-ID` on a project that has history (unless `?snapshot=0`):
 * the current state of every stage it watches. Its `id:` is the log id it is current up to, so the live messages
 * after it follow with no gap and no duplicate, and a reconnect resumes from it exactly. Consumers that know
 * nothing of it (a plain EventSource listening for `token`) ignore the event type.
 */
export interface SnapshotMessage {
  type: 'snapshot';
  project_id: string;
  /** `null` on an all-stages stream. */
  stage: string | null;
  stages: Record<string, StageState>;
  timestamp: number;
  [extra: string]: unknown;
}

/** Sent when the stream's token expires, just before the server ends the stream. It has no id. */
export interface TokenExpiredMessage {
  type: 'token_expired';
  project_id: string;
  stage: string | null;
  timestamp: number;
  [extra: string]: unknown;
}

/** A token event of a compact stream (`?compact=1`): no `full_text`; `offset` is where `content` starts in it. */
export interface CompactTokenMessage extends BaseMessage {
  type: 'token';
  content: string;
  /** In UTF-16 code units (JavaScript string length). 0 starts a new run of the stage. */
  offset: number;
}

/** The body of every HTTP error answer. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** The event names a stream can carry, mapped to their data. */
export interface StreamEventMap {
  connected: ConnectedMessage;
  reset: ResetMessage;
  snapshot: SnapshotMessage;
  token_expired: TokenExpiredMessage;
  token: TokenMessage;
  stage_update: StageUpdateMessage;
  progress: ProgressMessage;
  done: DoneMessage;
  error: ErrorMessage;
  cancelled: CancelledMessage;
}
