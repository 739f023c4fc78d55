/**
 * The words a viewer shows, in English and Chinese. A viewer picks them from `lang` (the closest
 * ancestor with one, else the document's); its `labels` property overrides any of them, deep-merged
 * over the language's own (see {@link mergeLabels}).
 */
import type { StageStatus } from '../../protocol/messages.js';
import type { ConnectionFailure, ConnectionState, DisconnectedEvent, DisconnectReason } from './sse-client.js';
import type { HubEvent } from './stream-hub.js';

/** What a failure label knows about where the viewer runs. */
export interface FailureContext {
  /** The server is on another origin than the page: the browser may have blocked it (CORS). */
  crossOrigin: boolean;
}

export interface ViewerLabels {
  /** Badge text per connection state (`reconnecting` is used when the delay is unknown). */
  state: Record<ConnectionState, string>;
  /** Badge text while a retry is pending. */
  reconnectingIn: (seconds: number) => string;
  retry: string;
  connect: string;
  disconnect: string;
  /** A stage's display name. */
  stage: (name: string) => string;
  status: Record<StageStatus, string>;
  /** Shown before the first stage appears. */
  waiting: string;
  /** Accessible name of a stage's streaming text. */
  output: (stage: string) => string;
  /** Accessible name of a stage's progress bar. */
  progress: (stage: string) => string;
  /** `current/total`, e.g. "3 / 10". */
  items: (current: number, total: number) => string;
  done: string;
  /** A metadata key's display name, e.g. `tokens_used` → "Tokens". */
  metadataKey: (key: string) => string;
  /** A metadata value as shown for its key, e.g. `latency_ms` 3817 → "3.8 s", an array → "a, b". */
  metadataValue: (key: string, value: unknown) => string;
  error: string;
  retryCount: (count: number) => string;
  logs: string;
  /** The text of an event log line (after the time and the event's name). */
  log: (event: HubEvent) => string;
  /** The cancel button (`cancelable`), and the line a cancelled stage shows. */
  cancel: string;
  cancelled: string;
  /** Why the connection closed, under the badge. */
  disconnected: (detail: DisconnectedEvent) => string;
  /** Why the attempts keep failing, under the badge while it counts down (after two failures in a row); '' for none. */
  failing: (failure: ConnectionFailure, context: FailureContext) => string;
}

/** Overrides of {@link ViewerLabels}: any label, and any entry of the grouped ones (`state`, `status`). */
export type ViewerLabelOverrides = {
  [K in keyof ViewerLabels]?: ViewerLabels[K] extends (...args: never[]) => unknown ? ViewerLabels[K] : Partial<ViewerLabels[K]>;
};

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;

/**
 * `overrides` deep-merged over `base`: a nested group (`state`, `status`) keeps the entries it does not override;
 * functions and strings are replaced whole; `undefined` and `null` keep the default. Neither argument is changed.
 */
export function mergeLabels(base: ViewerLabels, overrides: ViewerLabelOverrides | undefined): ViewerLabels {
  return overrides ? (merge(base as unknown as Record<string, unknown>, overrides) as unknown as ViewerLabels) : base;
}

function merge(base: Record<string, unknown>, overrides: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined || value === null || key === '__proto__') continue;
    const current = merged[key];
    merged[key] = isPlainObject(current) && isPlainObject(value) ? merge(current, value) : value;
  }
  return merged;
}

const humanize = (name: string) => name.replace(/[_-]+/g, ' ').trim().replace(/^./, (first) => first.toUpperCase());

/** A key's name without a unit suffix: `latency_ms` → `latency`. */
const withoutUnit = (key: string) => key.replace(/_(ms|s|sec|seconds)$/i, '');

/** How long, in milliseconds, a metadata value says (for keys ending in `_ms`, `_s`, `_seconds`); undefined otherwise. */
function durationMs(key: string, value: unknown): number | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return undefined;
  if (/_ms$/i.test(key)) return value;
  if (/_(s|sec|seconds)$/i.test(key)) return value * 1000;
  return undefined;
}

interface ValueWords {
  locale: string;
  list: string;
  yes: string;
  no: string;
  ms: (n: string) => string;
  seconds: (n: string) => string;
  minutes: (m: string, s: string) => string;
}

function formatDuration(ms: number, words: ValueWords): string {
  const number = (n: number, digits: number) => n.toLocaleString(words.locale, { maximumFractionDigits: digits });
  if (Math.abs(ms) < 1000) return words.ms(number(ms, 0));
  if (Math.abs(ms) < 60_000) return words.seconds(number(ms / 1000, 1));
  const minutes = Math.trunc(ms / 60_000);
  return words.minutes(number(minutes, 0), number(Math.round((ms - minutes * 60_000) / 1000), 0));
}

/** One value: numbers grouped, arrays as a list, objects as compact JSON. */
function formatValue(value: unknown, words: ValueWords, nested = false): string {
  if (typeof value === 'number') return value.toLocaleString(words.locale);
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? words.yes : words.no;
  if (value === null || value === undefined) return '—';
  if (Array.isArray(value) && !nested) return value.map((item) => formatValue(item, words, true)).join(words.list);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function metadataValue(words: ValueWords): (key: string, value: unknown) => string {
  return (key, value) => {
    const ms = durationMs(key, value);
    return ms === undefined ? formatValue(value, words) : formatDuration(ms, words);
  };
}

const englishWords: ValueWords = {
  locale: 'en',
  list: ', ',
  yes: 'yes',
  no: 'no',
  ms: (n) => `${n} ms`,
  seconds: (n) => `${n} s`,
  minutes: (m, s) => `${m} min ${s} s`,
};

const chineseWords: ValueWords = {
  locale: 'zh-CN',
  list: '、',
  yes: '是',
  no: '否',
  ms: (n) => `${n} 毫秒`,
  seconds: (n) => `${n} 秒`,
  minutes: (m, s) => `${m} 分 ${s} 秒`,
};

/** A worker's message, a stream event or a connection change as a log line, in the words of one language. */
interface LogWords {
  state: Record<ConnectionState, string>;
  reason: (reason: DisconnectReason) => string;
  status: (status: string) => string;
  stages: (names: string[]) => string;
  attempt: (attempt: number, delay: string, reason: string) => string;
  resumed: string;
  characters: (count: number) => string;
  taskError: (error: string, retries: number) => string;
  resetReason: (reason: string) => string;
  delay: (ms: number) => string;
}

function logLine(words: LogWords): (event: HubEvent) => string {
  return (event) => {
    switch (event.type) {
      case 'state':
        return `${words.state[event.data.previous] ?? event.data.previous} → ${words.state[event.data.state] ?? event.data.state}`;
      case 'reconnecting':
        return words.attempt(event.data.attempt, words.delay(event.data.delayMs), words.reason(event.data.reason));
      case 'disconnected':
        return `${words.reason(event.data.reason)}${event.data.status ? ` ${event.data.status}` : ''}`;
      case 'connected':
        return event.data.resumed ? words.resumed : '';
      case 'reset':
        return event.data.reason ? words.resetReason(event.data.reason) : '';
      case 'snapshot':
        return words.stages(Object.keys(event.data.stages ?? {}));
      case 'stage_update': {
        const { status, progress, message } = event.data;
        return `${words.status(status)} ${progress}%${message ? ` — ${message}` : ''}`;
      }
      case 'progress':
        return `${event.data.current}/${event.data.total} ${event.data.item_name ?? ''}`.trim();
      case 'done':
        return words.characters(event.data.full_text?.length ?? 0);
      case 'error':
        return words.taskError(event.data.error, event.data.retry_count);
      case 'cancelled':
        return event.data.reason ?? '';
      case 'message':
        return typeof event.data.data === 'string' ? event.data.data : '';
      default:
        return '';
    }
  };
}

const englishStages: Record<string, string> = { rewrite: 'Rewrite', storyboard: 'Storyboard', image_generation: 'Image generation', video_generation: 'Video generation' };
const englishStage = (name: string) => englishStages[name] ?? humanize(name);
const englishStatus: Record<StageStatus, string> = { pending: 'Pending', processing: 'Processing', completed: 'Completed', failed: 'Failed' };

export const englishLabels: ViewerLabels = {
  state: { connecting: 'Connecting…', open: 'Live', reconnecting: 'Reconnecting…', offline: 'Offline', closed: 'Closed' },
  reconnectingIn: (seconds) => `Reconnecting in ${seconds} s`,
  retry: 'Retry now',
  connect: 'Connect',
  disconnect: 'Disconnect',
  stage: englishStage,
  status: englishStatus,
  waiting: 'Waiting for the first stage…',
  // Methods: called on the merged labels, they use an overridden `stage` too.
  output(stage) {
    return `${this.stage(stage)} output`;
  },
  progress(stage) {
    return `${this.stage(stage)} progress`;
  },
  items: (current, total) => `${current} / ${total}`,
  done: 'Done',
  metadataKey: (key) => ({ tokens_used: 'Tokens', latency_ms: 'Latency', model: 'Model' })[key] ?? humanize(withoutUnit(key)),
  metadataValue: metadataValue(englishWords),
  error: 'Error',
  retryCount: (count) => (count === 1 ? '1 retry' : `${count} retries`),
  logs: 'Event log',
  log: logLine({
    state: { connecting: 'connecting', open: 'open', reconnecting: 'reconnecting', offline: 'offline', closed: 'closed' },
    reason: (reason) => reason,
    status: (status) => status,
    stages: (names) => names.join(', '),
    attempt: (attempt, delay, reason) => `attempt ${attempt} in ${delay} (${reason})`,
    resumed: 'resumed',
    characters: (count) => (count === 1 ? '1 character' : `${count} characters`),
    taskError: (error, retries) => `${error} (retry ${retries})`,
    resetReason: (reason) => reason,
    delay: (ms) => `${ms} ms`,
  }),
  cancel: 'Cancel',
  cancelled: 'Cancelled',
  disconnected: ({ reason, status, error }) => {
    if (error?.code === 'auth_not_configured') {
      return 'The server has no token keys, so it refuses streams with a token (503): set SSE_AUTH_SECRET (or a public key) on the server, or drop the token to use its public streams.';
    }
    if (status === 401) return 'Not signed in or the token expired (401).';
    if (status === 403) return 'This token does not grant access to the project (403).';
    if (status === 404) return 'No such stream (404).';
    if (status) return `The server refused the stream: ${error?.message ?? status} (${status}).`;
    if (reason === 'content_type') return 'The URL does not serve an event stream.';
    if (reason === 'done') return 'The stage is done.';
    return '';
  },
  failing: ({ kind, status, message, server }, { crossOrigin }) => {
    if (kind === 'network') {
      return crossOrigin
        ? `Cannot reach ${server}. The server may be down, or the browser blocked it (CORS): on another origin, set SSE_CORS_ORIGINS on the server or proxy it through your own origin.`
        : `Cannot reach ${server}. The server may be down, or a proxy in between is not forwarding the stream.`;
    }
    if (kind === 'token') return `Could not get a token: ${message}`;
    if (kind === 'http') return `${server} keeps refusing the stream: ${message} (${status}).`;
    return '';
  },
};

const chineseStages: Record<string, string> = { rewrite: '改写', storyboard: '分镜', image_generation: '图像生成', video_generation: '视频生成' };
const chineseStage = (name: string) => chineseStages[name] ?? name;
const chineseStatus: Record<StageStatus, string> = { pending: '等待中', processing: '处理中', completed: '已完成', failed: '失败' };
const chineseReasons: Record<DisconnectReason, string> = {
  disconnect: '已断开',
  done: '已完成',
  http_status: 'HTTP 状态',
  content_type: '内容类型不符',
  network: '网络错误',
  stream_ended: '服务器结束了数据流',
  watchdog: '心跳超时',
  offline: '离线',
  protocol: '协议错误',
  token_expired: '令牌过期',
};

export const chineseLabels: ViewerLabels = {
  state: { connecting: '连接中…', open: '实时', reconnecting: '重新连接中…', offline: '离线', closed: '已关闭' },
  reconnectingIn: (seconds) => `${seconds} 秒后重新连接`,
  retry: '立即重试',
  connect: '连接',
  disconnect: '断开',
  stage: chineseStage,
  status: chineseStatus,
  waiting: '等待第一个阶段…',
  output(stage) {
    return `${this.stage(stage)}输出`;
  },
  progress(stage) {
    return `${this.stage(stage)}进度`;
  },
  items: (current, total) => `${current} / ${total}`,
  done: '完成',
  // "词元" (not "令牌", which is an auth token): the units an LLM reads and writes.
  metadataKey: (key) => ({ tokens_used: '词元数', latency_ms: '耗时', model: '模型' })[key] ?? humanize(withoutUnit(key)),
  metadataValue: metadataValue(chineseWords),
  error: '错误',
  retryCount: (count) => `重试 ${count} 次`,
  logs: '事件日志',
  log: logLine({
    state: { connecting: '连接中', open: '已连接', reconnecting: '重新连接中', offline: '离线', closed: '已关闭' },
    reason: (reason) => chineseReasons[reason] ?? reason,
    status: (status) => chineseStatus[status as StageStatus] ?? status,
    stages: (names) => names.map(chineseStage).join('、'),
    attempt: (attempt, delay, reason) => `第 ${attempt} 次重试，${delay}后（${reason}）`,
    resumed: '已续传',
    characters: (count) => `${count} 个字符`,
    taskError: (error, retries) => `${error}（重试 ${retries} 次）`,
    resetReason: (reason) => ({ expired: '记录已过期', unknown_id: '未知的事件 ID', too_long: '缺失过多' })[reason] ?? reason,
    delay: (ms) => `${ms} 毫秒`,
  }),
  cancel: '取消',
  cancelled: '已取消',
  disconnected: ({ reason, status, error }) => {
    if (error?.code === 'auth_not_configured') {
      return '服务器未配置令牌密钥，因此拒绝带令牌的数据流（503）：请在服务器上设置 SSE_AUTH_SECRET（或公钥），或去掉令牌以使用公开数据流。';
    }
    if (status === 401) return '未登录或令牌已过期（401）。';
    if (status === 403) return '此令牌无权访问该项目（403）。';
    if (status === 404) return '没有这个数据流（404）。';
    if (status) return `服务器拒绝了数据流：${error?.message ?? status}（${status}）。`;
    if (reason === 'content_type') return '该地址不提供事件流。';
    if (reason === 'done') return '该阶段已完成。';
    return '';
  },
  failing: ({ kind, status, message, server }, { crossOrigin }) => {
    if (kind === 'network') {
      return crossOrigin
        ? `无法连接 ${server}。服务器可能未运行，或浏览器拦截了请求（CORS）：跨域时，请在服务器上设置 SSE_CORS_ORIGINS，或通过你自己的域名代理它。`
        : `无法连接 ${server}。服务器可能未运行，或中间的代理没有转发数据流。`;
    }
    if (kind === 'token') return `无法获取令牌：${message}`;
    if (kind === 'http') return `${server} 一直拒绝数据流：${message}（${status}）。`;
    return '';
  },
};

/** The labels for a BCP 47 language tag: Chinese for `zh*`, English otherwise. */
export function labelsFor(lang: string): ViewerLabels {
  return /^zh\b/i.test(lang) ? chineseLabels : englishLabels;
}
