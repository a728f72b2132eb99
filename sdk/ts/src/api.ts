// The message tier's HTTP API as a user (user token): sync, unread pull,
// conversation list, history, read, recall, send. api/openapi/message.yaml
// is the reference.

import {
  ConversationsPage, Conversation, Event, GroupResult, HistoryPage, ImError, ReadResponse, RecallResponse,
  SendRequest, SendResponse, SyncPage, UnreadPage,
} from "./types.js";

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface ApiOptions {
  /** Base URL of the message API, e.g. http://127.0.0.1:8080 (no trailing slash needed). */
  baseUrl: string;
  /** The current user token (called before every request). */
  token: () => string | Promise<string>;
  /** Sent as X-IM-Device: events this device causes are not pushed back to it. */
  deviceId?: string;
  /** Defaults to the global fetch. */
  fetch?: FetchLike;
  /** Each call's deadline (default 15 s): a tier that never answers must not hang the device. */
  timeoutMs?: number;
}

/** Calls the message API as one user. */
export class Api {
  private readonly opts: ApiOptions;
  private readonly base: string;

  constructor(opts: ApiOptions) {
    this.opts = opts;
    this.base = opts.baseUrl.replace(/\/+$/, "");
  }

  /** One sync page after cursor ("" = from the beginning). */
  sync(cursor: string, limit?: number): Promise<SyncPage> {
    return this.call("GET", "/v1/sync" + query({ cursor, limit }));
  }

  /** One unread page (cursor: "" for the first, then next_cursor). */
  unreadPage(cursor: string, limit?: number): Promise<UnreadPage> {
    return this.call("GET", "/v1/unread" + query({ cursor, limit }));
  }

  /** Every unread message (all pages) and the first page's sync_cursor. */
  async unread(maxPages = 10_000): Promise<{ events: Event[]; syncCursor: string }> {
    const events: Event[] = [];
    let cursor = "", syncCursor = "";
    for (let page = 0; page < maxPages; page++) {
      const p = await this.unreadPage(cursor);
      if (page === 0) syncCursor = p.sync_cursor ?? "";
      events.push(...(p.events ?? []));
      if (!p.has_more || !p.next_cursor) return { events, syncCursor };
      cursor = p.next_cursor;
    }
    throw new ImError("internal", `more than ${maxPages} unread pages`);
  }

  /** One page of the conversation list (after: the last conv_id of the previous page). */
  conversationsPage(after = "", limit?: number): Promise<ConversationsPage> {
    return this.call("GET", "/v1/conversations" + query({ after, limit }));
  }

  /** Every conversation of the user (all pages): pinned first, then by last activity. */
  async conversations(maxPages = 1000): Promise<Conversation[]> {
    const out: Conversation[] = [];
    let after = "";
    for (let page = 0; page < maxPages; page++) {
      const p = await this.conversationsPage(after);
      const cs = p.conversations ?? [];
      out.push(...cs);
      const next = p.after || (cs.length ? cs[cs.length - 1].conv_id : "");
      if (!p.after || cs.length === 0 || next === after) return out;
      after = next;
    }
    return out;
  }

  /** One page of a conversation's messages, newest first (before: only seq < before). */
  history(conv: string, opts: { before?: number; limit?: number } = {}): Promise<HistoryPage> {
    return this.call("GET", `/v1/conversations/${encodeURIComponent(conv)}/messages` + query(opts));
  }

  /** Marks conv read up to seq (the cursor never moves back). */
  read(conv: string, seq: number): Promise<ReadResponse> {
    return this.call("POST", `/v1/conversations/${encodeURIComponent(conv)}/read`, { seq });
  }

  /** Recalls the caller's own message at seq (within the recall window). */
  recall(conv: string, seq: number): Promise<RecallResponse> {
    return this.call("POST", `/v1/conversations/${encodeURIComponent(conv)}/recall`, { seq });
  }

  /**
   * One send attempt over HTTP. The attempt number travels in the
   * Idempotency-Attempt header (equivalent to the body's `attempt`).
   */
  send(req: SendRequest): Promise<SendResponse> {
    const { attempt, ...body } = req;
    const headers: Record<string, string> = {};
    if (attempt) headers["Idempotency-Attempt"] = String(attempt);
    return this.call("POST", "/v1/messages", body, headers);
  }

  // --- groups (docs/protocol.md §8): every change answers with the group once applied ---

  /** Creates a group owned by the caller (groupId optional: generated when absent). */
  createGroup(g: { groupId?: string; name: string; members?: string[]; avatar?: string; attrs?: Record<string, string> }): Promise<GroupResult> {
    return this.call("POST", "/v1/groups", { group_id: g.groupId, name: g.name, members: g.members, avatar: g.avatar, attrs: g.attrs });
  }

  /** A group's description (members only). */
  group(groupId: string): Promise<GroupResult> {
    return this.call("GET", `/v1/groups/${encodeURIComponent(groupId)}`);
  }

  /** Adds members (owner and admins). */
  addMembers(groupId: string, users: string[]): Promise<GroupResult> {
    return this.call("POST", `/v1/groups/${encodeURIComponent(groupId)}/members`, { users });
  }

  /** Removes a member (owner and admins); removing oneself leaves. */
  removeMember(groupId: string, user: string): Promise<GroupResult> {
    return this.call("DELETE", `/v1/groups/${encodeURIComponent(groupId)}/members/${encodeURIComponent(user)}`);
  }

  /** One page of the group's members (after: the previous page's `after`). */
  members(groupId: string, after = "", limit?: number): Promise<{ members?: { user_id: string; role: string; joined_seq: number }[]; after?: string }> {
    return this.call("GET", `/v1/groups/${encodeURIComponent(groupId)}/members` + query({ after, limit }));
  }

  /** One page of the caller's groups. */
  groups(after = "", limit?: number): Promise<{ groups?: { group_id: string; conv_id: string; joined_seq: number }[]; after?: string }> {
    return this.call("GET", "/v1/groups" + query({ after, limit }));
  }

  /** Calls the API; a non-2xx answer throws an ImError carrying its code and status. */
  async call<T>(method: string, path: string, body?: unknown, extra?: Record<string, string>): Promise<T> {
    const f = this.opts.fetch ?? globalThis.fetch.bind(globalThis);
    const headers: Record<string, string> = { Authorization: "Bearer " + (await this.opts.token()), ...extra };
    if (this.opts.deviceId) headers["X-IM-Device"] = this.opts.deviceId;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.opts.timeoutMs ?? 15_000);
    let resp: Response;
    let text: string;
    try {
      resp = await f(this.base + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: ctl.signal,
      });
      text = await resp.text();
    } catch (e) {
      throw new ImError(ErrorCodeNetwork, `${method} ${path}: ${errText(e)}`);
    } finally {
      clearTimeout(timer);
    }
    if (!resp.ok) {
      let code = "http_" + resp.status, msg = text.slice(0, 200);
      try {
        const j = JSON.parse(text);
        if (j && typeof j.code === "string") { code = j.code; msg = j.message ?? ""; }
      } catch { /* not JSON */ }
      throw new ImError(code, msg, resp.status);
    }
    return (text ? JSON.parse(text) : {}) as T;
  }
}

/** The code of an ImError for a call that got no answer (network, timeout). */
export const ErrorCodeNetwork = "network";

function query(q: Record<string, string | number | undefined>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === "") continue;
    parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(String(v)));
  }
  return parts.length ? "?" + parts.join("&") : "";
}

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
