/**
 * A test client for the server's streams: real HTTP (fetch), parsed with eventsource-parser,
 * with helpers that wait for events instead of sleeping.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';

export interface ReceivedEvent {
  id: string | undefined;
  event: string;
  data: string;
  /** `data` parsed as JSON, or undefined when it is not JSON. */
  json: Record<string, unknown> | undefined;
}

export interface ReceivedComment {
  /** The comment's text without the colon and the space after it (`ping` for the heartbeat). */
  text: string;
  /** `performance.now()` when it was parsed, to measure intervals. */
  at: number;
}

export interface StreamReader {
  status: number;
  headers: Headers;
  /** Every event received so far, in order. */
  events: ReceivedEvent[];
  /** Every comment line received so far, in order, with when each arrived. */
  comments: ReceivedComment[];
  /** Raw text received so far (to check comments, `retry:` and framing). */
  raw: string;
  /** Events set aside from `events` by readStream's `divert` (the answers of a WebSocket's control messages). */
  diverted: ReceivedEvent[];
  /** Resolves with the first event (counting from the start) that matches, waiting for it if needed. */
  waitFor(predicate: (event: ReceivedEvent) => boolean, timeoutMs?: number): Promise<ReceivedEvent>;
  /** Resolves when the raw text contains `text`. */
  waitForRaw(text: string, timeoutMs?: number): Promise<void>;
  /** Resolves once `count` comment lines have arrived in all. */
  waitForComments(count: number, timeoutMs?: number): Promise<void>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  /** The id of the last event that had one, as a browser would send it back in `Last-Event-ID`. */
  lastEventId: string | undefined;
  close(): void;
}

export async function openStream(url: string, headers: Record<string, string> = {}): Promise<StreamReader> {
  const abort = new AbortController();
  const response = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers }, signal: abort.signal });
  async function* chunks(): AsyncGenerator<string> {
    if (!response.body) return;
    const decoder = new TextDecoder();
    const reader = response.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield decoder.decode(value, { stream: true });
    }
  }
  return readStream(response.status, response.headers, chunks(), () => abort.abort());
}

/**
 * A StreamReader over any source of SSE text: a response body (openStream) or the messages of a WebSocket
 * (mux-reader.ts), so both transports are read and checked by the same code.
 */
export function readStream(
  status: number,
  headers: Headers,
  chunks: AsyncIterable<string>,
  close: () => void,
  divert: (event: ReceivedEvent) => boolean = () => false,
): StreamReader {
  const events: ReceivedEvent[] = [];
  const diverted: ReceivedEvent[] = [];
  const comments: ReceivedComment[] = [];
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((wake) => wake());
  let lastEventId: string | undefined;
  let raw = '';
  let ended = false;

  const parser = createParser({
    onEvent(message: EventSourceMessage) {
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(message.data);
      } catch {
        json = undefined;
      }
      if (message.id !== undefined) lastEventId = message.id;
      const event = { id: message.id, event: message.event ?? 'message', data: message.data, json };
      (divert(event) ? diverted : events).push(event);
      notify();
    },
    onComment(text) {
      comments.push({ text, at: performance.now() });
    },
  });

  const done = (async () => {
    try {
      for await (const text of chunks) {
        raw += text;
        parser.feed(text);
        notify();
      }
    } catch {
      // aborted by close(), or the server went away
    } finally {
      ended = true;
      notify();
    }
  })();

  const wait = (check: () => boolean, what: string, timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      if (check()) return resolve();
      const timer = setTimeout(() => {
        waiters.delete(wake);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${events.length} events: ${events.map((e) => e.event).join(',')}`));
      }, timeoutMs);
      const wake = () => {
        if (!check()) return;
        clearTimeout(timer);
        waiters.delete(wake);
        resolve();
      };
      waiters.add(wake);
    });

  return {
    status,
    headers,
    events,
    diverted,
    comments,
    get raw() {
      return raw;
    },
    get lastEventId() {
      return lastEventId;
    },
    async waitFor(predicate, timeoutMs = 10_000) {
      let found: ReceivedEvent | undefined;
      await wait(() => (found = events.find(predicate) ?? diverted.find(predicate)) !== undefined || ended, 'a matching event', timeoutMs);
      if (!found) throw new Error(`stream ended before a matching event; got ${events.map((e) => e.event).join(',')}`);
      return found;
    },
    async waitForRaw(text, timeoutMs = 10_000) {
      await wait(() => raw.includes(text), JSON.stringify(text), timeoutMs);
    },
    async waitForComments(count, timeoutMs = 10_000) {
      await wait(() => comments.length >= count, `${count} comments (got ${comments.length})`, timeoutMs);
    },
    ended: done,
    close,
  };
}

/** Reads a whole non-stream response as JSON. */
export async function requestJson(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text, the test will say so
  }
  return { status: response.status, headers: response.headers, body };
}
