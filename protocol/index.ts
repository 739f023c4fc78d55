/** The wire protocol every side shares: messages, ids, routes, log ids and compact tokens. */
export { ID_PATTERN, ID_RULE, RESERVED_IDS, isValidId } from './ids.js';
export { compareLogIds, isLogId, parseLogId } from './log-id.js';
export { QueryParam, Route, STREAM_ROUTES, executeStagePath, streamPath, streamUrl } from './routes.js';
export { StageTexts, TokenTexts, continueText, encodeCompactToken, isCompactToken, withFullText, type LinearToken } from './compact.js';
export { StageStatus } from './messages.js';
export type {
  BaseMessage,
  CompactTokenMessage,
  ConnectedMessage,
  DoneMessage,
  ErrorBody,
  ErrorMessage,
  ProgressMessage,
  ResetMessage,
  ResetReason,
  StageMessage,
  StageMessageType,
  StageState,
  SnapshotMessage,
  StageUpdateMessage,
  StreamEventMap,
  TokenExpiredMessage,
  TokenMessage,
} from './messages.js';
export {
  MUX_CONNECTION_HEADER,
  MUX_CONNECTION_PARAM,
  MUX_CONNECTION_PATTERN,
  MUX_LIMITS,
  MUX_ROUTES,
  MUX_SUBSCRIPTION_FIELD,
  MUX_CLOSE,
  MUX_SUBSCRIPTION_PATTERN,
  MUX_WS_ROUTE,
  closeReason,
  newConnectionId,
  tagJson,
} from './mux.js';
export type {
  MuxConnectionMessage,
  MuxControlMessage,
  MuxRawMessage,
  MuxResultMessage,
  MuxSubscribeBatchAnswer,
  MuxSubscribeBody,
  MuxSubscribeRequest,
  MuxSubscribeResult,
  MuxUnsubscribeAnswer,
  MuxUnsubscribeBody,
  MuxUnsubscribeReason,
  MuxUnsubscribedMessage,
} from './mux.js';
