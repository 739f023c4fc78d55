/**
 * The words a viewer shows, in English and Chinese. A viewer picks them from `lang` (the closest
 * ancestor with one, else the document's); its `labels` property overrides any of them.
 */
import type { StageStatus } from '../../protocol/messages.js';
import type { ConnectionState, DisconnectedEvent } from './sse-client.js';

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
  /** A metadata key's display name, e.g. `tokens_used`. */
  metadataKey: (key: string) => string;
  error: string;
  retryCount: (count: number) => string;
  logs: string;
  /** The cancel button (`cancelable`), and the line a cancelled stage shows. */
  cancel: string;
  cancelled: string;
  /** Why the connection closed, under the badge. */
  disconnected: (detail: DisconnectedEvent) => string;
}

const humanize = (name: string) => name.replace(/[_-]+/g, ' ').replace(/^./, (first) => first.toUpperCase());

export const englishLabels: ViewerLabels = {
  state: { connecting: 'Connecting…', open: 'Live', reconnecting: 'Reconnecting…', offline: 'Offline', closed: 'Closed' },
  reconnectingIn: (seconds) => `Reconnecting in ${seconds} s`,
  retry: 'Retry now',
  connect: 'Connect',
  disconnect: 'Disconnect',
  stage: (name) => ({ rewrite: 'Rewrite', storyboard: 'Storyboard', image_generation: 'Image generation', video_generation: 'Video generation' })[name] ?? humanize(name),
  status: { pending: 'Pending', processing: 'Processing', completed: 'Completed', failed: 'Failed' },
  waiting: 'Waiting for the first stage…',
  output: (stage) => `${englishLabels.stage(stage)} output`,
  progress: (stage) => `${englishLabels.stage(stage)} progress`,
  items: (current, total) => `${current} / ${total}`,
  done: 'Done',
  metadataKey: humanize,
  error: 'Error',
  retryCount: (count) => (count === 1 ? '1 retry' : `${count} retries`),
  logs: 'Event log',
  cancel: 'Cancel',
  cancelled: 'Cancelled',
  disconnected: ({ reason, status, error }) => {
    if (status === 401) return 'Not signed in or the token expired (401).';
    if (status === 403) return 'This token does not grant access to the project (403).';
    if (status === 404) return 'No such stream (404).';
    if (status) return `The server refused the stream: ${error?.message ?? status} (${status}).`;
    if (reason === 'content_type') return 'The URL does not serve an event stream.';
    if (reason === 'done') return 'The stage is done.';
    return '';
  },
};

export const chineseLabels: ViewerLabels = {
  state: { connecting: '连接中…', open: '实时', reconnecting: '重新连接中…', offline: '离线', closed: '已关闭' },
  reconnectingIn: (seconds) => `${seconds} 秒后重新连接`,
  retry: '立即重试',
  connect: '连接',
  disconnect: '断开',
  stage: (name) => ({ rewrite: '改写', storyboard: '分镜', image_generation: '图像生成', video_generation: '视频生成' })[name] ?? name,
  status: { pending: '等待中', processing: '处理中', completed: '已完成', failed: '失败' },
  waiting: '等待第一个阶段…',
  output: (stage) => `${chineseLabels.stage(stage)}输出`,
  progress: (stage) => `${chineseLabels.stage(stage)}进度`,
  items: (current, total) => `${current} / ${total}`,
  done: '完成',
  metadataKey: (key) => ({ tokens_used: '令牌数', latency_ms: '耗时（毫秒）', model: '模型' })[key] ?? key,
  error: '错误',
  retryCount: (count) => `重试 ${count} 次`,
  logs: '事件日志',
  cancel: '取消',
  cancelled: '已取消',
  disconnected: ({ reason, status, error }) => {
    if (status === 401) return '未登录或令牌已过期（401）。';
    if (status === 403) return '此令牌无权访问该项目（403）。';
    if (status === 404) return '没有这个数据流（404）。';
    if (status) return `服务器拒绝了数据流：${error?.message ?? status}（${status}）。`;
    if (reason === 'content_type') return '该地址不提供事件流。';
    if (reason === 'done') return '该阶段已完成。';
    return '';
  },
};

/** The labels for a BCP 47 language tag: Chinese for `zh*`, English otherwise. */
export function labelsFor(lang: string): ViewerLabels {
  return /^zh\b/i.test(lang) ? chineseLabels : englishLabels;
}
