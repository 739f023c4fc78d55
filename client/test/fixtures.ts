/** Builders for wire messages, shaped like the server's. */
import type {
  ConnectedMessage,
  DoneMessage,
  ErrorMessage,
  ProgressMessage,
  ResetMessage,
  SnapshotMessage,
  StageStatus,
  StageUpdateMessage,
  TokenMessage,
} from '../../protocol/messages.js';

const base = (stage: string, type: string, id?: string) => ({
  type,
  stage,
  project_id: '1',
  timestamp: 1_732_670_000.5,
  ...(id === undefined ? {} : { id }),
});

export const connected = (stage: string | null = 'rewrite', resumed = false): ConnectedMessage => ({
  type: 'connected',
  project_id: '1',
  stage,
  resumed,
  timestamp: 1_732_670_000,
});

export const token = (stage: string, fullText: string, content: string, id?: string): TokenMessage => ({
  ...base(stage, 'token', id),
  type: 'token',
  content,
  full_text: fullText,
});

export const stageUpdate = (stage: string, status: StageStatus, progress: number, message: string, id?: string): StageUpdateMessage => ({
  ...base(stage, 'stage_update', id),
  type: 'stage_update',
  status,
  progress,
  message,
});

export const progress = (stage: string, current: number, total: number, itemName: string, id?: string): ProgressMessage => ({
  ...base(stage, 'progress', id),
  type: 'progress',
  current,
  total,
  progress: Math.round((current / total) * 100),
  item_name: itemName,
});

export const done = (stage: string, fullText: string, metadata: Record<string, unknown> = {}, id?: string): DoneMessage => ({
  ...base(stage, 'done', id),
  type: 'done',
  full_text: fullText,
  metadata,
});

export const failure = (stage: string, error: string, retryCount: number, id?: string): ErrorMessage => ({
  ...base(stage, 'error', id),
  type: 'error',
  error,
  retry_count: retryCount,
});

export const reset = (stages: ResetMessage['stages'], stage: string | null = null): ResetMessage => ({
  type: 'reset',
  project_id: '1',
  stage,
  reason: 'expired',
  stages,
  timestamp: 1_732_670_100,
});

export const snapshot = (stages: SnapshotMessage['stages'], stage: string | null = null): SnapshotMessage => ({
  type: 'snapshot',
  project_id: '1',
  stage,
  stages,
  timestamp: 1_732_670_001,
});
