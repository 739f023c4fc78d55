/**
 * The control requests of a multiplexed connection (protocol/mux.ts), whichever transport carries them: the HTTP
 * `POST subscribe` / `POST unsubscribe` (mux-routes.ts) and the messages of a WebSocket (ws-routes.ts). Each answer
 * is a status and a JSON body, the same on both.
 */
import { ID_RULE, isValidId } from '../../../protocol/ids.js';
import { MUX_LIMITS, MUX_SUBSCRIPTION_PATTERN, type MuxSubscribeResult, type MuxUnsubscribeAnswer } from '../../../protocol/mux.js';
import type { Hub, SubscribeRequest } from '../hub/hub.js';
import type { MuxConnection } from '../hub/mux-connection.js';
import { authorize, type TokenPolicy } from './auth.js';
import type { StreamFilter } from '../hub/client-stream.js';
import { parseFilter } from './filter.js';
import { ErrorCode, HttpError } from './http-error.js';
import { isValidLastEventId } from './stream-routes.js';

export interface MuxControlOptions {
  hub: Hub;
  /** How each subscription's token is checked. */
  policy: TokenPolicy;
  /** Allow subscriptions without a token; false answers them 403. */
  publicStreams: boolean;
  /** Seconds a refused client is asked to wait (Retry-After). */
  retryAfter: string;
}

/** A control request's answer: what the HTTP request answers, and what the WebSocket's `result` event carries. */
export interface ControlAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** An HttpError as an answer. */
export function answerOf(error: unknown): ControlAnswer {
  const refusal = error instanceof HttpError ? error : new HttpError(500, ErrorCode.internal, 'Internal error.');
  return { status: refusal.status, body: { error: { code: refusal.code, message: refusal.message } }, headers: refusal.headers };
}

export class UnknownConnectionError extends HttpError {
  constructor() {
    super(404, ErrorCode.unknownConnection, 'No such connection on this server (it ended, or never was here): open the stream again.');
  }
}

const SUBSCRIPTION_RULE = '1-64 characters of A-Z, a-z, 0-9, ".", "_", ":" or "-"';

/** The JSON body's `subscriptions` array, or the body itself as the one item; `batch` says which. */
function itemsOf(body: Record<string, unknown>, max: number, what: string): { items: unknown[]; batch: boolean } {
  if (!('subscriptions' in body)) return { items: [body], batch: false };
  const items = body.subscriptions;
  if (!Array.isArray(items) || items.length > max) {
    throw new HttpError(400, ErrorCode.badRequest, `"subscriptions" must be an array of at most ${max} ${what}.`);
  }
  return { items, batch: true };
}

/** One subscription of a `subscribe` body, checked field by field (400 naming the field). */
interface ParsedItem {
  subscription: string;
  projectId: string;
  stage: string | null;
  token: string | undefined;
  lastEventId: string | undefined;
  snapshot: boolean;
  compact: boolean;
  filter: StreamFilter | undefined;
}

function parseItem(raw: unknown): ParsedItem {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new HttpError(400, ErrorCode.badRequest, 'Each subscription must be a JSON object.');
  }
  const item = raw as Record<string, unknown>;
  if (typeof item.subscription !== 'string' || !MUX_SUBSCRIPTION_PATTERN.test(item.subscription)) {
    throw new HttpError(400, ErrorCode.invalidId, `"subscription" must be ${SUBSCRIPTION_RULE}.`);
  }
  if (!isValidId(item.project_id)) throw new HttpError(400, ErrorCode.invalidId, `"project_id" must be ${ID_RULE}.`);
  const stage = item.stage ?? null;
  if (stage !== null && !isValidId(stage)) {
    throw new HttpError(400, ErrorCode.invalidId, `"stage" must be null or absent (every stage), or ${ID_RULE}.`);
  }
  if (item.token !== undefined && typeof item.token !== 'string') throw new HttpError(400, ErrorCode.badRequest, '"token" must be a string (a JWT).');
  const cursor = item.last_event_id ?? '';
  if (typeof cursor !== 'string' || !isValidLastEventId(cursor)) {
    throw new HttpError(400, ErrorCode.badRequest, `"last_event_id" must be a string of at most ${MUX_LIMITS.maxCursorChars} printable characters.`);
  }
  for (const flag of ['snapshot', 'compact'] as const) {
    if (item[flag] !== undefined && typeof item[flag] !== 'boolean') throw new HttpError(400, ErrorCode.badRequest, `"${flag}" must be true or false.`);
  }
  return {
    subscription: item.subscription,
    projectId: item.project_id,
    stage,
    token: item.token,
    lastEventId: cursor === '' ? undefined : cursor,
    snapshot: item.snapshot !== false,
    compact: item.compact === true,
    filter: parseFilter(item.types, item.stages, stage),
  };
}

export class MuxControl {
  readonly #options: MuxControlOptions;

  constructor(options: MuxControlOptions) {
    this.#options = options;
  }

  /**
   * `subscribe`: one subscription (its result as the status and body) or a batch (200 and one result each, in
   * order: one refused does not fail the others).
   */
  async subscribe(connection: MuxConnection, body: Record<string, unknown>, bearer: string | undefined, requestId: string): Promise<ControlAnswer> {
    try {
      const { items, batch } = itemsOf(body, connection.maxSubscriptions, 'subscriptions');
      if (!batch) return { status: 200, body: await this.#subscribeOne(connection, items[0], bearer, requestId) };
      const results = await Promise.all(
        items.map((item) =>
          this.#subscribeOne(connection, item, bearer, requestId).catch((error: unknown): MuxSubscribeResult => {
            const { status, body } = answerOf(error);
            const subscription = (item as { subscription?: unknown } | null)?.subscription;
            return { subscription: typeof subscription === 'string' ? subscription : '', ok: false, status, error: (body as { error: { code: string; message: string } }).error };
          }),
        ),
      );
      return { status: 200, body: { results } };
    } catch (error) {
      return answerOf(error);
    }
  }

  /** `unsubscribe`: `{ subscription }` or `{ subscriptions: [...] }`; each removed one's last event is `unsubscribed`. */
  unsubscribe(connection: MuxConnection, body: Record<string, unknown>): ControlAnswer {
    try {
      const ids = 'subscriptions' in body ? itemsOf(body, connection.maxSubscriptions, 'subscription ids').items : [body.subscription];
      for (const subscription of ids) {
        if (typeof subscription !== 'string' || !MUX_SUBSCRIPTION_PATTERN.test(subscription)) {
          throw new HttpError(400, ErrorCode.invalidId, `"subscription" must be ${SUBSCRIPTION_RULE}.`);
        }
      }
      const answer: MuxUnsubscribeAnswer = { unsubscribed: [], unknown: [] };
      for (const subscription of ids as string[]) (connection.unsubscribe(subscription) ? answer.unsubscribed : answer.unknown).push(subscription);
      return { status: 200, body: answer };
    } catch (error) {
      return answerOf(error);
    }
  }

  /**
   * Adds (or renews) one subscription; throws the HttpError of its refusal. Answers once it joined its topic:
   * whatever is published from then on reaches it.
   */
  async #subscribeOne(connection: MuxConnection, raw: unknown, bearer: string | undefined, requestId: string): Promise<MuxSubscribeResult> {
    const { hub, policy, retryAfter } = this.#options;
    const unavailable = () => new HttpError(503, ErrorCode.unavailable, 'The message broker is unavailable; retry later.', { 'Retry-After': retryAfter });
    const item = parseItem(raw);
    const { subscription, projectId, stage } = item;
    // The item's own token, else the request's; never public when a token was given, even a bad one.
    const token = item.token ?? bearer;
    let expiresAt: number | undefined;
    if (token !== undefined) expiresAt = (await authorize(policy, token, projectId)).exp * 1000;
    else if (!this.#options.publicStreams) throw new HttpError(403, ErrorCode.disabled, 'Public streams are off on this server: give the subscription a token.');
    const ok = (renewed: boolean): MuxSubscribeResult => ({ subscription, ok: true, status: 200, renewed, expires_at: expiresAt === undefined ? null : expiresAt / 1000 });

    const existing = connection.subscription(subscription);
    if (existing) {
      if (existing.projectId !== projectId || existing.stage !== stage) {
        throw new HttpError(409, ErrorCode.subscriptionExists, `The connection holds "${subscription}" for another project or stage: unsubscribe it first, or choose another id.`);
      }
      // A renew of one still joining answers once it joined, as its subscribe does.
      await existing.joined.catch(() => {
        throw unavailable();
      });
      if (connection.ended) throw new UnknownConnectionError();
      if (connection.subscription(subscription) === existing) {
        existing.stream?.renew(expiresAt);
        return ok(true);
      }
      // Removed meanwhile (unsubscribed, or its token ran out): subscribe it anew.
      if (connection.subscription(subscription)) {
        throw new HttpError(409, ErrorCode.subscriptionExists, `The connection holds "${subscription}" already.`);
      }
    }
    if (connection.size >= connection.maxSubscriptions) {
      throw new HttpError(429, ErrorCode.tooManySubscriptions, `At most ${connection.maxSubscriptions} subscriptions per connection.`, { 'Retry-After': retryAfter });
    }
    const request: SubscribeRequest = {
      subscription,
      projectId,
      stage,
      lastEventId: item.lastEventId,
      requestId,
      compact: item.compact,
      snapshot: item.snapshot,
      expiresAt,
      filter: item.filter,
    };
    try {
      await hub.subscribe(connection, request);
    } catch {
      throw unavailable();
    }
    // It ended while joining: the client reconnects and subscribes again.
    if (connection.ended) throw new UnknownConnectionError();
    return ok(false);
  }
}
