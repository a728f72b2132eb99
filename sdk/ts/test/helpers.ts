// Test helpers: the stack's endpoints from the environment (set by
// test/browser's TestSDK), a device that records what it got, and waiting
// with deadlines.

import WebSocket from "ws";
import { Client, ClientOptions, Event, MemoryStorage, WebSocketCtor } from "../src/index.js";

export const stack = {
  api: process.env.IM_SDK_API ?? "",
  push: (process.env.IM_SDK_PUSH ?? "").split(",").filter(Boolean),
  pushNames: (process.env.IM_SDK_PUSH_NAMES ?? "").split(",").filter(Boolean),
  ctl: process.env.IM_SDK_CTL ?? "",
  aheadCursor: process.env.IM_SDK_AHEAD_CURSOR ?? "",
};

/** Why the stack tests skip (undefined: they run). */
export const noStack = stack.api && stack.push.length >= 2 && stack.ctl
  ? undefined : "no stack (run through test/browser's TestSDK)";

export const WS = WebSocket as unknown as WebSocketCtor;

let uniq = 0;
/** A user id unique to this run. */
export function uniqueUser(name: string): string {
  return `${name}${Date.now().toString(36)}${process.pid.toString(36)}x${++uniq}`;
}

export async function token(user: string, ttlS = 3600): Promise<string> {
  const r = await fetch(`${stack.ctl}/token?user=${encodeURIComponent(user)}&ttl_s=${ttlS}`);
  if (!r.ok) throw new Error(`token: ${r.status} ${await r.text()}`);
  return r.text();
}

export async function ctl(action: "stop" | "restart", proc: string): Promise<void> {
  const r = await fetch(`${stack.ctl}/${action}?proc=${encodeURIComponent(proc)}`, { method: "POST" });
  if (!r.ok) throw new Error(`${action} ${proc}: ${r.status} ${await r.text()}`);
}

/** Polls cond until it holds, failing after timeoutMs with what(). */
/** poll, if given, runs between looks (at most every 500 ms), e.g. a sync. */
export async function until(what: string | (() => string), cond: () => boolean, timeoutMs = 20_000,
  poll?: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastPoll = 0;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + (typeof what === "string" ? what : what()));
    if (poll && Date.now() - lastPoll >= 500) {
      lastPoll = Date.now();
      await poll();
      continue;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A Client and everything it handed on. */
export class Device {
  readonly client: Client;
  readonly events: Event[] = [];
  readonly pushedFlags: boolean[] = [];
  readonly nodes: string[] = [];
  readonly disconnects: Error[] = [];

  constructor(readonly userId: string, opts: Partial<ClientOptions> & { deviceId: string }) {
    this.client = new Client({
      urls: stack.push, apiUrl: stack.api, terminal: "web", WebSocket: WS, storage: new MemoryStorage(),
      ...opts,
    });
    this.client.on("event", ({ event, pushed }) => { this.events.push(event); this.pushedFlags.push(pushed); });
    this.client.on("connected", (w) => this.nodes.push(w.node_id));
    this.client.on("disconnected", ({ error }) => this.disconnects.push(error));
  }

  static async connect(user: string, opts: Partial<ClientOptions> & { deviceId: string }): Promise<Device> {
    const tok = opts.tokenSource ? undefined : await token(user);
    const d = new Device(user, { token: tok, ...opts });
    await d.client.start();
    await d.client.waitConnected(20_000);
    return d;
  }

  /** Message texts of conv in seq order. */
  texts(conv: string): string[] {
    return this.events.filter((e) => e.kind === "message" && e.conv_id === conv)
      .sort((a, b) => a.seq - b.seq).map((e) => e.message?.body?.text ?? "");
  }

  /** (conv, seq) pairs handed on more than once. */
  repeats(): string[] {
    const seen = new Set<string>(), out: string[] = [];
    for (const e of this.events) {
      const k = `${e.conv_id}#${e.seq}`;
      if (seen.has(k)) out.push(k);
      seen.add(k);
    }
    return out;
  }

  has(kind: string, pred: (e: Event) => boolean = () => true): boolean {
    return this.events.some((e) => e.kind === kind && pred(e));
  }

  close(): void {
    this.client.close();
  }
}
