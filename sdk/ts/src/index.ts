// @imcluster/sdk — the imcluster device SDK for browsers and Node ≥ 20.
// docs/protocol.md is the protocol; pkg/client is the Go reference.

export { Client, newClientMsgId } from "./client.js";
export type {
  ClientEvents, ClientOptions, ConnState, OutgoingMessage, SendOptions, TokenSource, WebSocketCtor, WebSocketLike,
} from "./client.js";
export { Api, ErrorCodeNetwork } from "./api.js";
export type { ApiOptions, FetchLike } from "./api.js";
export { Dedupe } from "./dedupe.js";
export { Emitter } from "./emitter.js";
export { LocalStorage, MemoryStorage } from "./storage.js";
export type { CursorStorage, WebStorageLike } from "./storage.js";
export { ErrorCode, ImError, convId, groupConvId, groupOf, mentions, peerOf } from "./types.js";
export type {
  Body, Conversation, Group, GroupChange, GroupResult, LastMessage, ConversationsPage, Event, EventKind, HistoryPage, Message, MessageType, ReadResponse,
  RecallResponse, SendRequest, SendResponse, ServerFrame, SyncPage, UnreadPage, Welcome,
} from "./types.js";
