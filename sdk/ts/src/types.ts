// Wire types of the imcluster device protocol (docs/protocol.md) and of the
// message API (api/openapi/message.yaml). The JSON field names are the
// contract: they mirror services/protocol.

/** The kinds of conversation events. */
export type EventKind = "message" | "read" | "recall" | "delivered" | "rejected" | "group";

/** Message content types. */
export type MessageType = "text" | "image" | "file" | "voice" | "video";

/** A message body: text for text messages, url plus metadata for media. */
export interface Body {
  text?: string;
  url?: string;
  name?: string;
  mime?: string;
  size?: number;
  duration_ms?: number;
  width?: number;
  height?: number;
  /** Group messages: the user ids mentioned, or "all" (docs/protocol.md §8). */
  mentions?: string[];
}

/** A change to a group (a `group` event; docs/protocol.md §8). */
export interface GroupChange {
  op: "created" | "joined" | "left" | "removed" | "role" | "updated" | "dissolved";
  users?: string[];
  role?: "owner" | "admin" | "member";
  name?: string;
  avatar?: string;
  attrs?: Record<string, string>;
}

export interface Message {
  msg_id: string;
  client_msg_id?: string;
  from: string;
  to: string;
  type: MessageType;
  body?: Body;
  recalled?: boolean;
  sent_at_ms: number;
}

/**
 * One change to a conversation. A `rejected` event goes only to the
 * sender's devices: a send accepted into the log was not stored because
 * its client_msg_id had been used earlier for other content
 * (idempotency_clash); `message` carries the rejected content. `seq` is strictly increasing within a
 * conversation but sparse; (conv_id, seq) identifies an event.
 */
export interface Event {
  kind: EventKind;
  conv_id: string;
  seq: number;
  from?: string;
  device_id?: string;
  /** read/recall/delivered/rejected: the seq referred to (the Client fills in 0, which the wire omits). */
  ref_seq?: number;
  message?: Message;
  /** kind group: the change. */
  group?: GroupChange;
  /** kind rejected: why (idempotency_clash when absent, not_member, forbidden, group_dissolved). */
  reason?: string;
  at_ms?: number;
}

/** The body of a send (POST /v1/messages, or a socket send frame). */
export interface SendRequest {
  /** The peer of a 1:1 message; group_id for a group message (exactly one). */
  to?: string;
  group_id?: string;
  client_msg_id: string;
  type: MessageType;
  body: Body;
  /** 1 for the first try, incremented per retry (docs/TEAM.md). */
  attempt?: number;
}

/** A group's description (GET /v1/groups/{group}). */
export interface Group {
  group_id: string;
  conv_id: string;
  name: string;
  avatar?: string;
  attrs?: Record<string, string>;
  owner: string;
  members: number;
  created_ms: number;
  dissolved?: boolean;
  /** The seq of the change an answer is about. */
  seq?: number;
}

/** The answer to a group change or read; pending: in the log, not applied yet. */
export interface GroupResult {
  group: Group;
  pending?: boolean;
}

/** The answer to a send. `seq` is present only when the API knows it. */
export interface SendResponse {
  msg_id: string;
  conv_id: string;
  seq?: number;
  sent_at_ms: number;
  duplicate?: boolean;
}

export interface SyncPage {
  events?: Event[];
  conversations?: string[];
  next_cursor?: string;
  has_more?: boolean;
}

export interface UnreadPage {
  events?: Event[];
  next_cursor?: string;
  has_more?: boolean;
  sync_cursor?: string;
}

export interface Conversation {
  conv_id: string;
  /** The other participant ("" for a group). */
  peer: string;
  last_seq?: number;
  last_msg_seq?: number;
  /** -1: none */
  read_seq?: number;
  peer_read_seq?: number;
  peer_delivered_seq?: number;
  /** Unread messages from others (at most 99; unread_more: more). */
  unread?: number;
  unread_more?: boolean;
  last_message?: LastMessage;
  activity_ms?: number;
  pinned?: boolean;
  muted?: boolean;
}

/** A conversation's last message, as the list shows it. */
export interface LastMessage {
  seq: number;
  msg_id: string;
  from: string;
  type: string;
  /** The text (or file name), at most 100 characters. */
  preview?: string;
  at_ms: number;
  recalled?: boolean;
}

export interface ConversationsPage {
  conversations?: Conversation[];
  after?: string;
}

export interface HistoryPage {
  messages?: Event[];
  next_before?: number;
  has_more?: boolean;
}

export interface ReadResponse {
  read_seq?: number;
  changed?: boolean;
  event_seq?: number;
}

export interface RecallResponse {
  seq?: number;
  event_seq?: number;
}

export interface ProtocolError {
  code: string;
  message?: string;
}

/** A node → device frame. */
export interface ServerFrame {
  type: string;
  node_id?: string;
  user_id?: string;
  epoch?: number;
  heartbeat_ms?: number;
  resync_after_ms?: number;
  expires_at_ms?: number;
  event?: Event;
  id?: string;
  status?: number;
  result?: unknown;
  error?: ProtocolError;
  reconnect_in_ms?: number;
  /** sync (a hint): why pushes may have been dropped, and within how long to sync. */
  reason?: string;
  sync_within_ms?: number;
}

/** The welcome frame: the login was accepted. */
export interface Welcome {
  node_id: string;
  user_id: string;
  epoch: number;
  heartbeat_ms: number;
  resync_after_ms: number;
  expires_at_ms: number;
}

/** Stable error codes (docs/protocol.md, "Error codes"). */
export const ErrorCode = {
  Unauthenticated: "unauthenticated",
  TokenExpired: "token_expired",
  Forbidden: "forbidden",
  Kicked: "kicked",
  Draining: "draining",
  CursorExpired: "cursor_expired",
  Unavailable: "unavailable",
  RateLimited: "rate_limited",
  UnknownField: "unknown_field",
  IdempotencyClash: "idempotency_clash",
  RecallExpired: "recall_expired",
  NotFound: "not_found",
} as const;

/** A non-2xx answer of the message API, or an error frame of a node. */
export class ImError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 0) {
    super(code + ": " + message);
    this.name = "ImError";
    this.code = code;
    this.status = status;
  }
}

/** 1:1 conversation id of two users (ids sorted), as the server makes it. */
export function convId(a: string, b: string): string {
  return a < b ? `p:${a}:${b}` : `p:${b}:${a}`;
}

/** The conversation id of a group. */
export function groupConvId(group: string): string {
  return `g:${group}`;
}

/** The group of a group conversation id ("" for a 1:1 conversation). */
export function groupOf(conv: string): string {
  return conv.startsWith("g:") ? conv.slice(2) : "";
}

/** Whether a message event mentions user me (by name or "all"). */
export function mentions(ev: Event, me: string): boolean {
  const m = ev.message?.body?.mentions ?? [];
  return m.includes(me) || m.includes("all");
}

/** The other participant of a 1:1 conversation. */
export function peerOf(conv: string, me: string): string {
  const parts = conv.split(":");
  if (parts.length !== 3 || parts[0] !== "p") return "";
  return parts[1] === me ? parts[2] : parts[1];
}
