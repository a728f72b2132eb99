// Client: one device (docs/protocol.md; a port of pkg/client). It keeps a
// WebSocket to some push node, logs in, heartbeats, reconnects with backoff
// and jitter (rotating through the node URLs), honours drain and kick,
// refreshes its token, syncs from a persisted cursor after every login (and
// once more resync_after_ms later), resyncs after 410 cursor_expired,
// de-duplicates by (conv_id, seq), batches delivered acks, and sends over
// the socket with a client_msg_id, numbered attempts and retries.

import { Api, ErrorCodeNetwork, FetchLike, errText } from "./api.js";
import { Dedupe, WINDOW } from "./dedupe.js";
import { Emitter } from "./emitter.js";
import { CursorStorage, MemoryStorage } from "./storage.js";
import {
  Body, Conversation, ErrorCode, Event, HistoryPage, ImError, MessageType, ReadResponse, RecallResponse,
  SendRequest, SendResponse, ServerFrame, Welcome, convId,
} from "./types.js";

/** The part of the WebSocket API the client uses (browsers' WebSocket, the `ws` package). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;

export type TokenSource = () => Promise<string>;

export interface ClientOptions {
  /** Push node WebSocket URLs (ws:// or wss://), rotated on reconnect. */
  urls: string[];
  /** Message API base URL, for sync, resync, history, read, recall. */
  apiUrl: string;
  /** A user JWT (ignored when tokenSource is set). */
  token?: string;
  /**
   * Asked for a fresh token before every login and before the live
   * session's token expires (sent in a refresh frame). Without it a
   * session ends for good when token expires.
   */
  tokenSource?: TokenSource;
  deviceId: string;
  /** web, ios, android, desktop… (1–32 of a-z0-9_-) */
  terminal: string;
  /** Where the sync cursor persists (default: memory). */
  storage?: CursorStorage;
  /** The cursor's key in storage (default "cursor:" + deviceId). */
  storageKey?: string;
  /** The WebSocket constructor (default: the global one; in Node 20 pass the `ws` package's). */
  WebSocket?: WebSocketCtor;
  fetch?: FetchLike;
  /**
   * Does the app already have ev (in its store keyed by conv_id and seq)?
   * Asked for every event memory does not recognise as a repeat; with it,
   * no repeat ever reaches the app.
   */
  known?: (ev: Event) => boolean;
  /** Conversations the dedupe memory remembers (default 1024). */
  dedupeConversations?: number;
  /** Ack message events from others (default true). */
  autoAck?: boolean;
  /** Sync after login (default true). */
  sync?: boolean;
  /** Backoff of failed connects: full jitter, doubling (default 200 ms → 5 s). */
  backoffMs?: { initial: number; max: number };
  /** Default send attempts (default 6) and deadline per attempt (default 10 s). */
  sendAttempts?: number;
  sendAttemptTimeoutMs?: number;
  /** API call deadline (default 15 s). */
  apiTimeoutMs?: number;
  log?: (level: "debug" | "info" | "warn", msg: string, data?: unknown) => void;
}

export type ConnState = "idle" | "connecting" | "connected" | "disconnected" | "stopped";

/** The events a Client emits (client.on(name, fn)). */
export interface ClientEvents {
  /** Every event once per (conv_id, seq) (see known), by push or by sync. */
  event: { event: Event; pushed: boolean };
  message: Event;
  read: Event;
  recall: Event;
  delivered: Event;
  /** A send of this user was refused after it entered the log (event.reason: idempotency_clash when absent, not_member, forbidden, group_dissolved). */
  rejected: Event;
  /** A change to a group this user is in (event.group; docs/protocol.md §8). */
  group: Event;
  /** After each welcome. */
  connected: Welcome;
  /** After each lost connection; willReconnect is false after a kick, a refused token or close(). */
  disconnected: { error: Error; willReconnect: boolean };
  state: ConnState;
  /** The session's token now lasts until expiresAtMs. */
  refreshed: { expiresAtMs: number };
  /**
   * The node says pushes to this session may have been dropped (a sync
   * hint: route_skipped, stale_route, lease_lost); the client syncs within
   * the frame's sync_within_ms and retries until a sync completes.
   */
  syncHint: { reason: string };
  /** After each complete sync (cursor stored). */
  synced: { cursor: string };
  /**
   * After a resync (the sync cursor had expired): unread messages came as
   * events; conversations carries the current read/delivered cursors
   * (docs/protocol.md, section 5 step 2).
   */
  resync: { conversations: Conversation[] };
  /** The same terminal logged in elsewhere; the client stopped. */
  kicked: ImError;
  /** The client stopped for good (error undefined after close()). */
  stopped: { error?: Error };
}

/** A message to send; clientMsgId is made when missing (keep it to retry later). */
export interface OutgoingMessage {
  /** The peer (1:1), or set groupId instead for a group message. */
  to?: string;
  groupId?: string;
  type?: MessageType;
  body: Body;
  clientMsgId?: string;
}

export interface SendOptions {
  /** Attempts before giving up (default: the client's sendAttempts). */
  attempts?: number;
  /** Overall deadline (default 60 s). */
  timeoutMs?: number;
}

interface Pending {
  resolve: (r: SendResponse) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const MAX_PENDING_ACKS = 4096;
const MAX_ACKS_PER_FRAME = 256;
const SYNC_AFTER_PUSHES = WINDOW / 2;
const OPEN = 1;

export class Client extends Emitter<ClientEvents> {
  readonly opts: ClientOptions;
  readonly api: Api;
  private readonly storage: CursorStorage;
  private readonly storageKey: string;
  private readonly seen: Dedupe;

  private cursor_ = "";
  private token = "";
  private user_ = "";
  private node_ = "";
  private expiresAt_ = 0;
  private state_: ConnState = "idle";
  private closed = false;
  private stopError: Error | undefined;
  private started: Promise<void> | null = null;
  private urlIdx = 0;
  private ws: WebSocketLike | null = null; // the socket being dialed or used
  private live: WebSocketLike | null = null; // ws once its welcome came
  private endSession: ((err: Error, waitMs?: number) => void) | null = null;
  private readonly wakers = new Set<() => void>(); // end the sleeps at close()

  private readonly acks = new Map<string, number>();
  private readonly pending = new Map<string, Pending>();
  private reqId = 0;
  private attemptField = true; // false after a server refused the attempt field (older than the contract)

  private syncTail: Promise<void> = Promise.resolve();
  private syncQueued: Promise<void> | null = null;
  private pushedSinceSync = 0;

  /** Counters: events by push and by sync, repeats dropped, resyncs, events memory could not judge. */
  readonly stats = { pushed: 0, synced: 0, duplicates: 0, resyncs: 0, unsure: 0, acksSent: 0, acksDropped: 0, syncHints: 0 };

  // Sync hints: hintGen counts them, hintDone is the highest hintGen a
  // completed sync started after; a hint's sync is retried until then.
  private hintGen = 0;
  private hintDone = 0;
  private hintRetryMs = 2000;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>(); // cleared at close()

  constructor(opts: ClientOptions) {
    super();
    if (!opts.urls?.length) throw new Error("imcluster Client: urls is empty");
    this.opts = opts;
    this.storage = opts.storage ?? new MemoryStorage();
    this.storageKey = opts.storageKey ?? "cursor:" + opts.deviceId;
    this.seen = new Dedupe(opts.dedupeConversations);
    this.token = opts.token ?? "";
    this.api = new Api({
      baseUrl: opts.apiUrl, token: () => this.token, deviceId: opts.deviceId, fetch: opts.fetch, timeoutMs: opts.apiTimeoutMs,
    });
  }

  /** The user id the node's welcome named ("" before the first welcome). */
  get user(): string { return this.user_; }
  /** The node of the current connection. */
  get node(): string { return this.node_; }
  /** The sync cursor after the last applied page. */
  get cursor(): string { return this.cursor_; }
  get state(): ConnState { return this.state_; }
  /** When the session's token expires (unix ms; 0: unknown). */
  get expiresAt(): number { return this.expiresAt_; }
  get connected(): boolean { return this.live !== null; }

  /** Loads the persisted cursor and connects in the background; only the first call does anything. */
  start(): Promise<void> {
    if (!this.started) {
      this.started = (async () => {
        const c = await this.storage.get(this.storageKey);
        if (c) this.cursor_ = c;
        void this.loop();
      })();
    }
    return this.started;
  }

  /** Resolves at the next welcome (at once when connected); rejects when the client stops or after timeoutMs. */
  async waitConnected(timeoutMs = 30_000): Promise<Welcome | void> {
    if (this.live) return;
    if (this.closed) throw this.stopError ?? new Error("client closed");
    return new Promise((resolve, reject) => {
      const offs: Array<() => void> = [];
      const done = () => { offs.forEach((f) => f()); clearTimeout(t); };
      offs.push(this.on("connected", (w) => { done(); resolve(w); }));
      offs.push(this.on("stopped", ({ error }) => { done(); reject(error ?? new Error("client closed")); }));
      const t = setTimeout(() => { done(); reject(new ImError("timeout", `not connected within ${timeoutMs} ms`)); }, timeoutMs);
    });
  }

  /** Disconnects and stops for good. */
  close(): void {
    this.stop(undefined);
  }

  private stop(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.stopError = err;
    this.endSession?.(new Error("client closed"));
    for (const w of [...this.wakers]) w();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.setState("stopped");
    this.emit("stopped", { error: err });
  }

  private setState(s: ConnState): void {
    if (this.state_ === s || this.state_ === "stopped") return;
    this.state_ = s;
    this.emit("state", s);
  }

  private log(level: "debug" | "info" | "warn", msg: string, data?: unknown): void {
    this.opts.log?.(level, msg, data);
  }

  /** Runs fn after ms unless the client is closed first. */
  private later(fn: () => void, ms: number): void {
    if (this.closed) return;
    const t = setTimeout(() => { this.timers.delete(t); if (!this.closed) fn(); }, ms);
    this.timers.add(t);
  }

  private sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const w = () => { clearTimeout(t); this.wakers.delete(w); resolve(); };
      const t = setTimeout(w, ms);
      this.wakers.add(w);
    });
  }

  // --- the connection loop -------------------------------------------------

  private async loop(): Promise<void> {
    const initial = this.opts.backoffMs?.initial ?? 200, maxB = this.opts.backoffMs?.max ?? 5000;
    let backoff = initial;
    while (!this.closed) {
      const url = this.opts.urls[this.urlIdx % this.opts.urls.length];
      this.setState("connecting");
      const { err, waitMs, welcomed } = await this.session(url);
      if (this.closed) return;
      let wait = waitMs;
      const code = err instanceof ImError ? err.code : "";
      let stopWith: Error | null = null;
      if (code === ErrorCode.Kicked) stopWith = err;
      else if (code === ErrorCode.Unauthenticated) stopWith = err;
      else if (code === ErrorCode.TokenExpired) {
        if (!this.opts.tokenSource) stopWith = err; // the same token would be refused
        else wait = Math.random() * 500;
      }
      this.setState("disconnected");
      this.emit("disconnected", { error: err, willReconnect: !stopWith });
      if (stopWith) {
        if (code === ErrorCode.Kicked) this.emit("kicked", stopWith as ImError);
        this.stop(stopWith);
        return;
      }
      this.urlIdx++;
      if (wait === undefined) {
        if (!welcomed) { // exponential backoff, full jitter
          wait = Math.random() * backoff + 50;
          backoff = Math.min(2 * backoff, maxB);
        } else {
          wait = Math.random() * initial; // a little jitter: devices of a dead node do not return at once
          backoff = initial;
        }
      } else {
        backoff = initial;
      }
      this.log("debug", "reconnecting", { inMs: Math.round(wait), err: errText(err) });
      await this.sleep(wait);
    }
  }

  /** Runs one connection until it ends; waitMs is set after a drain. */
  private async session(url: string): Promise<{ err: Error; waitMs?: number; welcomed: boolean }> {
    let tok: string;
    try {
      tok = await this.loginToken();
    } catch (e) {
      return { err: new ImError(ErrorCodeNetwork, "while getting a token: " + errText(e)), welcomed: false };
    }
    if (this.closed) return { err: new Error("client closed"), welcomed: false };
    const Ctor = this.opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    if (!Ctor) {
      this.stop(new Error("no WebSocket: pass options.WebSocket (e.g. the ws package in Node 20)"));
      return { err: this.stopError!, welcomed: false };
    }
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url);
    } catch (e) {
      return { err: new ImError(ErrorCodeNetwork, `while dialing ${url}: ${errText(e)}`), welcomed: false };
    }
    this.ws = ws;
    return new Promise((resolve) => {
      let welcomed = false, frameErr: ImError | null = null, lastRecv = Date.now(), hb = 30_000;
      const timers: Array<ReturnType<typeof setTimeout>> = [];
      const intervals: Array<ReturnType<typeof setInterval>> = [];
      let refreshTimer: ReturnType<typeof setTimeout> | null = null;
      let ended = false;

      const end = (err: Error, waitMs?: number) => {
        if (ended) return;
        ended = true;
        timers.forEach(clearTimeout);
        intervals.forEach(clearInterval);
        if (refreshTimer) clearTimeout(refreshTimer);
        ws.onopen = ws.onmessage = ws.onclose = null;
        // Closing a socket still connecting makes it report an error: with
        // no handler, the ws package (Node) would throw it as uncaught.
        ws.onerror = () => undefined;
        try { ws.close(1000, "bye"); } catch { /* already closed */ }
        if (this.ws === ws) this.ws = null;
        if (this.live === ws) this.live = null;
        this.endSession = null;
        this.failPending();
        resolve({ err, waitMs, welcomed });
      };
      this.endSession = end;

      const scheduleRefresh = (expMs: number) => {
        this.expiresAt_ = expMs;
        if (refreshTimer) clearTimeout(refreshTimer);
        refreshTimer = null;
        const d = this.refreshDelay(expMs);
        if (d < 0) return;
        const fire = () => {
          // Retried later unless a refreshed frame reschedules first.
          refreshTimer = setTimeout(fire, Math.max(1000, (this.expiresAt_ - Date.now()) / 2));
          void this.refreshToken(ws);
        };
        refreshTimer = setTimeout(fire, d);
      };

      // No welcome within 20 s of the dial: give up on this node.
      timers.push(setTimeout(() => end(new ImError("timeout", `no welcome from ${url} within 20 s`)), 20_000));

      ws.onopen = () => {
        this.writeOn(ws, { type: "login", token: tok, device_id: this.opts.deviceId, terminal: this.opts.terminal });
      };
      ws.onerror = () => { /* the close event follows and says why */ };
      ws.onclose = (ev) => {
        if (frameErr) return end(frameErr);
        if (ev.reason) return end(new ImError(ev.reason, `closed with status ${ev.code}`));
        end(new ImError(ErrorCodeNetwork, `connection to ${url} closed (status ${ev.code})`));
      };
      ws.onmessage = (ev) => {
        lastRecv = Date.now();
        let f: ServerFrame;
        try {
          const text = typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data as ArrayBuffer);
          f = JSON.parse(text) as ServerFrame;
        } catch (e) {
          return end(new ImError("bad_json", "bad server frame: " + errText(e)));
        }
        if (!welcomed) {
          if (f.type !== "welcome") {
            return end(f.error ? new ImError(f.error.code, f.error.message ?? "") : new ImError("bad_frame", `unexpected ${f.type} frame before welcome`));
          }
          welcomed = true;
          timers.forEach(clearTimeout);
          const w: Welcome = {
            node_id: f.node_id ?? "", user_id: f.user_id ?? "", epoch: f.epoch ?? 0,
            heartbeat_ms: f.heartbeat_ms ?? 0, resync_after_ms: f.resync_after_ms ?? 0, expires_at_ms: f.expires_at_ms ?? 0,
          };
          this.live = ws;
          this.node_ = w.node_id;
          this.user_ = w.user_id;
          hb = w.heartbeat_ms > 0 ? w.heartbeat_ms : 30_000;
          scheduleRefresh(w.expires_at_ms);
          intervals.push(setInterval(() => this.writeOn(ws, { type: "ping" }), hb));
          intervals.push(setInterval(() => {
            if (Date.now() - lastRecv > hb * 2.5) end(new ImError("idle_timeout", `nothing from ${w.node_id} for ${hb * 2.5} ms`));
          }, Math.min(1000, hb / 2)));
          intervals.push(setInterval(() => this.flushAcks(), 100));
          if (this.syncEnabled()) {
            this.requestSync();
            if (w.resync_after_ms > 0) timers.push(setTimeout(() => this.requestSync(), w.resync_after_ms));
          }
          this.setState("connected");
          this.emit("connected", w);
          this.flushAcks(); // acks kept from the last connection
          return;
        }
        switch (f.type) {
          case "event":
            if (f.event) this.deliver(f.event, true);
            return;
          case "pong":
            return;
          case "refreshed":
            scheduleRefresh(f.expires_at_ms ?? 0);
            this.emit("refreshed", { expiresAtMs: f.expires_at_ms ?? 0 });
            return;
          case "send_result":
            this.answer(f);
            return;
          case "sync":
            this.syncHint(f.reason ?? "", f.sync_within_ms ?? 0);
            return;
          case "kick":
            return end(new ImError(ErrorCode.Kicked, f.error?.message ?? "the same terminal logged in elsewhere"));
          case "drain":
            return end(new ImError(ErrorCode.Draining, f.error?.message ?? "node draining"), f.reconnect_in_ms ?? 0);
          case "error":
            // The close frame follows; keep the richer error frame.
            frameErr = new ImError(f.error?.code ?? "error", f.error?.message ?? "");
            return;
          default:
            // A frame type of a newer node: ignored (the node closes the
            // socket itself when something is fatal).
            this.log("warn", "ignoring an unknown frame type", f.type);
            return;
        }
      };
    });
  }

  private writeOn(ws: WebSocketLike, frame: unknown): boolean {
    // A closing socket silently discards what is sent: count it as not written.
    if (ws.readyState !== OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  // --- tokens --------------------------------------------------------------

  private async loginToken(): Promise<string> {
    if (!this.opts.tokenSource) return this.token;
    this.token = await withTimeout(this.opts.tokenSource(), 10_000, "token source");
    return this.token;
  }

  /**
   * When to refresh a token expiring at expMs: after four fifths of its
   * remaining life and at least 30 s before expiry; for very short tokens
   * after 1 s, or halfway when sooner (pkg/client's refreshDelay). -1: never.
   */
  private refreshDelay(expMs: number): number {
    if (!this.opts.tokenSource || expMs <= 0) return -1;
    const left = expMs - Date.now();
    let floor = 1000;
    if (left > 0) floor = Math.min(floor, Math.max(left / 2, 10));
    return Math.max(Math.min(left * 4 / 5, left - 30_000), floor);
  }

  private async refreshToken(ws: WebSocketLike): Promise<void> {
    try {
      const tok = await this.loginToken();
      if (!this.writeOn(ws, { type: "refresh", token: tok })) throw new Error("not connected");
    } catch (e) {
      this.log("warn", "token refresh failed; retrying", errText(e));
    }
  }

  // --- events, dedupe, acks -----------------------------------------------

  private deliver(ev: Event, pushed: boolean): void {
    // The wire omits a ref_seq of 0 (a valid seq): receipts and recalls always carry one here.
    if (ev.kind !== "message" && ev.ref_seq === undefined) ev = { ...ev, ref_seq: 0 };
    const { seen, sure } = this.seen.check(ev.conv_id, ev.seq);
    let fresh = !seen;
    if (!seen) {
      if (this.opts.known) fresh = !this.opts.known(ev);
      else if (!sure) this.stats.unsure++;
    }
    if (!fresh) {
      this.stats.duplicates++;
      return;
    }
    this.seen.add(ev.conv_id, ev.seq);
    if (pushed) {
      this.stats.pushed++;
      // Every pushed event comes back by the next sync; syncing every
      // SYNC_AFTER_PUSHES keeps those replays within the dedupe memory.
      if (++this.pushedSinceSync % SYNC_AFTER_PUSHES === 0) this.requestSync();
    } else {
      this.stats.synced++;
    }
    // Delivered receipts are for messages from someone else only.
    if (this.opts.autoAck !== false && ev.kind === "message" && ev.from !== this.user_) this.queueAck(ev.conv_id, ev.seq);
    this.emit("event", { event: ev, pushed });
    this.emit(ev.kind, ev);
  }

  private queueAck(conv: string, seq: number): void {
    const cur = this.acks.get(conv);
    if (cur === undefined && this.acks.size >= MAX_PENDING_ACKS) {
      this.stats.acksDropped++; // cumulative receipts: the next ack covers it
      return;
    }
    if (cur === undefined || seq > cur) this.acks.set(conv, seq);
  }

  /** Sends the queued acks (every 100 ms while connected); unwritten ones wait for the next connection. */
  private flushAcks(): void {
    const ws = this.live;
    if (!ws || this.acks.size === 0) return;
    const items = [...this.acks].map(([conv_id, seq]) => ({ conv_id, seq }));
    this.acks.clear();
    for (let i = 0; i < items.length; i += MAX_ACKS_PER_FRAME) {
      const chunk = items.slice(i, i + MAX_ACKS_PER_FRAME);
      if (!this.writeOn(ws, { type: "ack", acks: chunk })) {
        for (const it of items.slice(i)) this.queueAck(it.conv_id, it.seq);
        return;
      }
      this.stats.acksSent += chunk.length;
    }
  }

  // --- sync and resync -------------------------------------------------------

  private syncEnabled(): boolean {
    return this.opts.sync !== false && !!this.opts.apiUrl;
  }

  private requestSync(): void {
    this.syncNow().catch((e) => this.log("warn", "sync failed", errText(e)));
  }

  /**
   * Syncs from the cursor (page by page, then stores the cursor); resolves
   * when a sync that started after this call is complete. Calls made while
   * one waits to start share it.
   */
  syncNow(): Promise<void> {
    if (this.syncQueued) return this.syncQueued;
    const p = this.syncTail.then(() => {
      this.syncQueued = null;
      return this.syncAll();
    });
    this.syncQueued = p;
    this.syncTail = p.catch(() => undefined);
    return p;
  }

  /**
   * A sync hint: pushes to this session may have been dropped while the
   * connection stayed up (docs/protocol.md, section 5 step 5). Sync at a
   * random moment within withinMs; a sync under way is followed by one
   * more; a failed one is retried (2 s doubling to 30 s) until one
   * completes, since nothing else would bring the dropped pushes before
   * the next login.
   */
  private syncHint(reason: string, withinMs: number): void {
    this.stats.syncHints++;
    this.hintGen++;
    this.emit("syncHint", { reason });
    if (!this.syncEnabled()) return;
    if (withinMs <= 0) this.hintSync();
    else this.later(() => this.hintSync(), Math.random() * withinMs);
  }

  private hintSync(): void {
    const gen = this.hintGen;
    this.syncNow().then(() => {
      this.hintDone = Math.max(this.hintDone, gen);
      this.hintRetryMs = 2000;
    }, (e) => {
      if (this.hintDone >= this.hintGen) return;
      this.log("warn", "a sync hint's sync failed; retrying", errText(e));
      const d = this.hintRetryMs;
      this.hintRetryMs = Math.min(2 * d, 30_000);
      this.later(() => this.hintSync(), d);
    });
  }

  private async syncAll(): Promise<void> {
    const pushed = this.pushedSinceSync; // covered once this sync completes
    let resyncs = 0, tries = 0, last: unknown;
    while (tries < 5 && !this.closed) {
      let page;
      try {
        page = await this.api.sync(this.cursor_);
      } catch (e) {
        last = e;
        if (e instanceof ImError && e.code === ErrorCode.CursorExpired && resyncs < 3) {
          resyncs++; // bounded: a server that keeps expiring fresh cursors is an error
          this.log("info", "sync cursor expired: resyncing");
          try {
            await this.resync();
            continue;
          } catch (e2) {
            last = e2;
          }
        }
        tries++;
        this.log("warn", "sync failed", errText(last));
        await this.sleep(tries * 300);
        continue;
      }
      for (const ev of page.events ?? []) this.deliver(ev, false);
      if (page.next_cursor) await this.setCursor(page.next_cursor);
      if (!page.has_more) {
        this.pushedSinceSync -= pushed;
        this.emit("synced", { cursor: this.cursor_ });
        return;
      }
    }
    if (this.closed) return;
    throw last instanceof Error ? last : new Error(String(last));
  }

  /**
   * Recovers from an expired cursor (docs/protocol.md, section 5): pulls
   * every unread message, then takes the first page's sync_cursor (taken
   * before the pull) as the cursor — stored only now, so a crash repeats
   * the resync — and fetches the conversation list for the app.
   */
  private async resync(): Promise<void> {
    let head = "", cursor = "";
    for (let page = 0; ; page++) {
      if (page === 10_000) throw new Error("while resyncing: more than 10000 unread pages");
      const p = await this.api.unreadPage(cursor);
      if (page === 0) head = p.sync_cursor ?? "";
      for (const ev of p.events ?? []) this.deliver(ev, false);
      if (!p.has_more || !p.next_cursor) break;
      cursor = p.next_cursor;
    }
    if (!head) throw new Error("while resyncing: the unread pull gave no sync_cursor");
    await this.setCursor(head);
    this.stats.resyncs++;
    let conversations: Conversation[] = [];
    try {
      conversations = await this.api.conversations();
    } catch (e) {
      this.log("warn", "conversation list after resync failed", errText(e));
    }
    this.emit("resync", { conversations });
  }

  private async setCursor(c: string): Promise<void> {
    this.cursor_ = c;
    await this.storage.set(this.storageKey, c);
  }

  // --- sending -----------------------------------------------------------------

  /**
   * Sends a message over the socket. The same client_msg_id is used for
   * every attempt (numbered 1, 2, …); an error that may have left it
   * stored (unavailable, lost connection, timeout, 5xx, rate limit) is
   * retried with backoff and jitter, waiting for a connection. The answer
   * may lack `seq` (the API does not always know it yet).
   */
  async send(msg: OutgoingMessage, opts: SendOptions = {}): Promise<SendResponse> {
    const clientMsgId = msg.clientMsgId ?? newClientMsgId();
    const attempts = opts.attempts ?? this.opts.sendAttempts ?? 6;
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    let backoff = 200;
    for (let attempt = 1; ; attempt++) {
      try {
        const left = deadline - Date.now();
        if (left <= 0) throw new ImError("timeout", "send deadline passed");
        await this.waitConnected(left);
        const req: SendRequest = msg.groupId
          ? { group_id: msg.groupId, client_msg_id: clientMsgId, type: msg.type ?? "text", body: msg.body }
          : { to: msg.to, client_msg_id: clientMsgId, type: msg.type ?? "text", body: msg.body };
        return await this.sendOnce(req, attempt, Math.min(left, this.opts.sendAttemptTimeoutMs ?? 10_000));
      } catch (e) {
        if (this.closed || !retryable(e) || attempt >= attempts || Date.now() >= deadline) {
          if (e instanceof ImError) (e as ImError & { clientMsgId?: string }).clientMsgId = clientMsgId;
          throw e;
        }
        this.log("info", "send failed; retrying", { clientMsgId, attempt, err: errText(e) });
        await this.sleep(Math.min(Math.random() * backoff + 50, Math.max(0, deadline - Date.now())));
        backoff = Math.min(2 * backoff, 5000);
      }
    }
  }

  /** Sends a text message. */
  sendText(to: string, text: string, opts?: SendOptions & { clientMsgId?: string }): Promise<SendResponse> {
    return this.send({ to, type: "text", body: { text }, clientMsgId: opts?.clientMsgId }, opts);
  }

  /** Sends a text message to a group, mentioning some members (or "all"). */
  sendGroupText(groupId: string, text: string, opts?: SendOptions & { clientMsgId?: string; mentions?: string[] }): Promise<SendResponse> {
    const body: Body = opts?.mentions?.length ? { text, mentions: opts.mentions } : { text };
    return this.send({ groupId, type: "text", body, clientMsgId: opts?.clientMsgId }, opts);
  }

  /** Sends an image by URL. */
  sendImage(to: string, url: string, meta: Omit<Body, "url" | "text"> = {}, opts?: SendOptions): Promise<SendResponse> {
    return this.send({ to, type: "image", body: { url, ...meta } }, opts);
  }

  private async sendOnce(req: SendRequest, attempt: number, timeoutMs: number): Promise<SendResponse> {
    const withAttempt = this.attemptField;
    try {
      return await this.sendFrame(withAttempt ? { ...req, attempt } : req, timeoutMs);
    } catch (e) {
      // A message tier older than the attempt contract refuses the field:
      // the same attempt again without it (nothing was stored for a 400).
      if (withAttempt && e instanceof ImError && e.code === ErrorCode.UnknownField && /attempt/.test(e.message)) {
        this.attemptField = false;
        this.log("info", "the message tier does not know the attempt field; sending without it");
        return this.sendFrame(req, timeoutMs);
      }
      throw e;
    }
  }

  private sendFrame(req: SendRequest, timeoutMs: number): Promise<SendResponse> {
    const ws = this.live;
    if (!ws) return Promise.reject(new ImError(ErrorCode.Unavailable, "not connected"));
    const id = String(++this.reqId);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ImError("timeout", `no send_result within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      if (!this.writeOn(ws, { type: "send", id, send: req })) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new ImError(ErrorCode.Unavailable, "not connected"));
      }
    });
  }

  private answer(f: ServerFrame): void {
    const p = this.pending.get(f.id ?? "");
    if (!p) return; // timed out already
    this.pending.delete(f.id ?? "");
    clearTimeout(p.timer);
    if (f.error) p.reject(new ImError(f.error.code, f.error.message ?? "", f.status ?? 0));
    else if (f.status === 200) p.resolve(f.result as SendResponse);
    else {
      // The message tier's error answer, relayed: its code is the contract.
      const r = (f.result ?? {}) as { code?: string; message?: string };
      p.reject(new ImError(r.code ?? "http_" + f.status, r.message ?? JSON.stringify(f.result ?? null), f.status ?? 0));
    }
  }

  private failPending(): void {
    const ps = [...this.pending.values()];
    this.pending.clear();
    for (const p of ps) {
      clearTimeout(p.timer);
      p.reject(new ImError(ErrorCode.Unavailable, "connection lost before the answer; retry with the same client_msg_id"));
    }
  }

  // --- HTTP calls as this user ---------------------------------------------------

  /** Marks conv read up to seq (conv: a conversation id — p:… or g:… — or the peer's user id). */
  read(conv: string, seq: number): Promise<ReadResponse> {
    return this.api.read(this.conv(conv), seq);
  }

  /** Recalls this user's message at seq in conv. */
  recall(conv: string, seq: number): Promise<RecallResponse> {
    return this.api.recall(this.conv(conv), seq);
  }

  /** One page of history, newest first. */
  history(conv: string, opts?: { before?: number; limit?: number }): Promise<HistoryPage> {
    return this.api.history(this.conv(conv), opts);
  }

  /** Every unread message (all pages; does not move the sync cursor). */
  async unread(): Promise<Event[]> {
    return (await this.api.unread()).events;
  }

  /** The conversation list with read and delivered cursors (all pages). */
  conversations(): Promise<Conversation[]> {
    return this.api.conversations();
  }

  /** A conversation id as is (p:… or g:…), or a peer's user id. */
  private conv(c: string): string {
    return c.startsWith("p:") || c.startsWith("g:") || !this.user_ ? c : convId(this.user_, c);
  }
}

function retryable(e: unknown): boolean {
  if (!(e instanceof ImError)) return false;
  if (["unavailable", "rate_limited", "timeout", "internal", ErrorCodeNetwork].includes(e.code)) return true;
  return e.status === 0 || e.status === 429 || e.status >= 500;
}

/** A fresh client_msg_id (printable ASCII, no spaces, ≤ 64). */
export function newClientMsgId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });
}
