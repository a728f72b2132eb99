// Unit tests without the stack: the dedupe memory, the storages, and the
// client's protocol handling against a scripted fake push node (the `ws`
// package's server): numbered send retries over a lost connection, answers
// without seq, drain, kick, batched acks and dedupe of repeated pushes.

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { AddressInfo, Socket, createServer } from "node:net";
import { WebSocketServer, WebSocket as NodeWS } from "ws";
import { Client, ClientOptions, Dedupe, Event, LocalStorage, MemoryStorage } from "../src/index.js";
import { WS, until } from "./helpers.js";

describe("Dedupe", () => {
  test("remembers a window per conversation and is unsure below it", () => {
    const d = new Dedupe(2);
    assert.deepEqual(d.check("c1", 5), { seen: false, sure: true });
    d.add("c1", 5);
    assert.deepEqual(d.check("c1", 5), { seen: true, sure: true });
    for (let s = 10; s < 10 + 256; s++) d.add("c1", s); // fills the window: the older half falls out
    assert.equal(d.check("c1", 5).sure, false, "below the floor memory cannot tell");
    assert.deepEqual(d.check("c1", 265), { seen: true, sure: true });
    assert.deepEqual(d.check("c1", 266), { seen: false, sure: true });
  });
  test("a forgotten conversation is sure only above its highest seq", () => {
    const d = new Dedupe(1);
    d.add("a", 7);
    d.add("b", 1); // evicts a
    assert.deepEqual(d.check("a", 8), { seen: false, sure: true });
    assert.equal(d.check("a", 7).sure, false);
    assert.equal(d.check("a", 0).sure, false);
  });
});

describe("storage", () => {
  test("memory and localStorage keep the cursor", async () => {
    const m = new MemoryStorage();
    assert.equal(m.get("k"), null);
    m.set("k", "v");
    assert.equal(m.get("k"), "v");
    const backing = new Map<string, string>();
    const fake = { getItem: (k: string) => backing.get(k) ?? null, setItem: (k: string, v: string) => void backing.set(k, v) };
    const ls = new LocalStorage(fake, "p:");
    ls.set("cursor:d", "abc");
    assert.equal(backing.get("p:cursor:d"), "abc");
    assert.equal(ls.get("cursor:d"), "abc");
  });
});

// --- a scripted fake push node ------------------------------------------------

type Script = (ws: NodeWS, frame: Record<string, unknown>, n: number) => void;

interface FakeNode { url: string; frames: Record<string, unknown>[]; logins: number; sockets: NodeWS[]; close(): Promise<void> }

async function fakeNode(id: string, script: Script, welcome: Record<string, unknown> = {}): Promise<FakeNode> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((r) => wss.once("listening", () => r()));
  const node: FakeNode = {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`,
    frames: [], logins: 0, sockets: [],
    close: () => new Promise<void>((r) => { for (const c of wss.clients) c.terminate(); wss.close(() => r()); }),
  };
  wss.on("connection", (ws) => {
    node.sockets.push(ws);
    let n = 0;
    ws.on("message", (data) => {
      const f = JSON.parse(String(data)) as Record<string, unknown>;
      node.frames.push(f);
      if (f.type === "login") {
        node.logins++;
        ws.send(JSON.stringify({ type: "welcome", node_id: id, user_id: "me", epoch: 1, heartbeat_ms: 5000, expires_at_ms: Date.now() + 3600_000, ...welcome }));
        return;
      }
      script(ws, f, n++);
    });
  });
  return node;
}

const nodes: FakeNode[] = [];
const clients: Client[] = [];
after(async () => { clients.forEach((c) => c.close()); await Promise.all(nodes.map((n) => n.close())); });

async function setup(scripts: Script[], welcome: Record<string, unknown> = {}, extra: Partial<ClientOptions> = {}): Promise<{ c: Client; ns: FakeNode[] }> {
  const ns = await Promise.all(scripts.map((s, i) => fakeNode("node-" + i, s, welcome)));
  nodes.push(...ns);
  const c = new Client({ urls: ns.map((n) => n.url), apiUrl: "", token: "t", deviceId: "dev", terminal: "web", WebSocket: WS, backoffMs: { initial: 20, max: 100 }, ...extra });
  clients.push(c);
  await c.start();
  await c.waitConnected(5000);
  return { c, ns };
}

describe("client against a fake node", () => {
  test("a send lost with its connection is retried with the same client_msg_id and attempt 2; an answer without seq is accepted", async () => {
    const { c, ns } = await setup([
      (ws, f) => { if (f.type === "send") ws.terminate(); }, // node 0 dies with the send
      (ws, f) => {
        if (f.type === "send") ws.send(JSON.stringify({ type: "send_result", id: f.id, status: 200, result: { msg_id: "m1", conv_id: "p:me:you", sent_at_ms: 1 } }));
      },
    ]);
    const res = await c.send({ to: "you", body: { text: "hi" }, clientMsgId: "cm-1" }, { timeoutMs: 10_000 });
    assert.equal(res.msg_id, "m1");
    assert.equal(res.seq, undefined);
    const sends = ns.flatMap((n) => n.frames.filter((f) => f.type === "send").map((f) => f.send as Record<string, unknown>));
    assert.deepEqual(sends.map((s) => [s.client_msg_id, s.attempt]), [["cm-1", 1], ["cm-1", 2]]);
  });

  test("a message tier that refuses the attempt field gets the send without it", async () => {
    const { c, ns } = await setup([(ws, f) => {
      if (f.type !== "send") return;
      const body = f.send as Record<string, unknown>;
      if ("attempt" in body) {
        ws.send(JSON.stringify({ type: "send_result", id: f.id, status: 400, error: { code: "unknown_field", message: 'json: unknown field "attempt"' } }));
      } else {
        ws.send(JSON.stringify({ type: "send_result", id: f.id, status: 200, result: { msg_id: "m2", conv_id: "p:me:you", seq: 4, sent_at_ms: 1 } }));
      }
    }]);
    const res = await c.sendText("you", "hi");
    assert.equal(res.seq, 4);
    assert.equal(ns[0].frames.filter((f) => f.type === "send").length, 2);
  });

  test("a refused send (4xx) is not retried", async () => {
    const { c, ns } = await setup([(ws, f) => {
      if (f.type === "send") ws.send(JSON.stringify({ type: "send_result", id: f.id, status: 409, error: { code: "idempotency_clash", message: "other content" } }));
    }]);
    await assert.rejects(c.sendText("you", "x"), (e: Error & { code?: string }) => e.code === "idempotency_clash");
    assert.equal(ns[0].frames.filter((f) => f.type === "send").length, 1);
  });

  test("drain: reconnects to the next node after reconnect_in_ms", async () => {
    let drained = false;
    const { c, ns } = await setup([
      () => undefined,
      () => undefined,
    ]);
    const states: string[] = [];
    c.on("disconnected", ({ error, willReconnect }) => states.push(`${(error as { code?: string }).code}:${willReconnect}`));
    const reconnected = c.waitFor("connected", (w) => w.node_id === "node-1", 5000);
    for (const ws of (await wssClients(ns[0]))) {
      ws.send(JSON.stringify({ type: "drain", error: { code: "draining", message: "bye" }, reconnect_in_ms: 50 }));
      ws.close(1001, "draining");
      drained = true;
    }
    assert.ok(drained);
    await reconnected;
    assert.deepEqual(states, ["draining:true"]);
  });

  test("kick: the client stops and does not reconnect", async () => {
    const { c, ns } = await setup([() => undefined]);
    const stopped = c.waitFor("stopped", () => true, 5000);
    for (const ws of await wssClients(ns[0])) {
      ws.send(JSON.stringify({ type: "kick", error: { code: "kicked", message: "elsewhere" } }));
      ws.close(1001, "kicked");
    }
    const { error } = await stopped;
    assert.equal((error as { code?: string }).code, "kicked");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(ns[0].logins, 1);
  });

  test("heartbeats: pings every heartbeat_ms; a silent node is left after 2.5 heartbeats and the client reconnects", async () => {
    const { c, ns } = await setup([() => undefined, () => undefined], { heartbeat_ms: 200 });
    const t0 = Date.now();
    const disc = c.waitFor("disconnected", () => true, 5000);
    const back = c.waitFor("connected", (w) => w.node_id === "node-1", 5000);
    const { error } = await disc;
    assert.equal((error as { code?: string }).code, "idle_timeout");
    assert.ok(Date.now() - t0 >= 400, "not before 2.5 heartbeats");
    assert.ok(ns[0].frames.filter((f) => f.type === "ping").length >= 1, "pings were sent");
    await back;
  });

  test("token refresh: a fresh token from the source goes out in a refresh frame before expiry", async () => {
    let n = 0;
    const { ns } = await setup([(ws, f) => {
      if (f.type === "refresh") ws.send(JSON.stringify({ type: "refreshed", expires_at_ms: Date.now() + 3600_000 }));
    }], { expires_at_ms: Date.now() + 2500 }, { token: undefined, tokenSource: async () => `tok-${++n}` });
    await until("a refresh frame", () => ns[0].frames.some((f) => f.type === "refresh"), 5000);
    const login = ns[0].frames.find((f) => f.type === "login")!;
    const refresh = ns[0].frames.find((f) => f.type === "refresh")!;
    assert.equal(login.token, "tok-1");
    assert.equal(refresh.token, "tok-2");
  });

  test("a sync frame (hint) makes the client sync while it stays connected; unknown frames are ignored", async () => {
    const syncs: string[] = [];
    const ev: Event = { kind: "message", conv_id: "p:me:you", seq: 12, from: "you", message: { msg_id: "h", from: "you", to: "me", type: "text", body: { text: "dropped push" }, sent_at_ms: 1 } };
    const fakeFetch = async (url: string) => {
      syncs.push(url);
      const page = syncs.length === 1 ? { events: [], next_cursor: "c1", has_more: false } : { events: [ev], next_cursor: "c2", has_more: false };
      return new Response(JSON.stringify(page), { status: 200 });
    };
    const { c, ns } = await setup([() => undefined], {}, { apiUrl: "http://api.invalid", fetch: fakeFetch });
    await until("the login sync", () => syncs.length === 1, 5000);
    const got: Event[] = [];
    c.on("event", ({ event }) => got.push(event));
    const hints: string[] = [];
    c.on("syncHint", ({ reason }) => hints.push(reason));
    for (const ws of await wssClients(ns[0])) {
      ws.send(JSON.stringify({ type: "some_future_frame", x: 1 }));
      ws.send(JSON.stringify({ type: "sync", reason: "route_skipped", sync_within_ms: 50 }));
    }
    await until("the hinted sync's event", () => got.length === 1, 5000);
    assert.deepEqual(hints, ["route_skipped"]);
    assert.equal(got[0].message?.body?.text, "dropped push");
    assert.equal(c.cursor, "c2");
    assert.ok(syncs[1].includes("cursor=c1"), syncs[1]);
    assert.equal(ns[0].logins, 1, "the connection stayed up");
    assert.equal(c.connected, true);
  });

  test("close() while the socket is still connecting throws nothing", async () => {
    const held: Socket[] = [];
    const srv = createServer((sock) => { held.push(sock); }); // accepts, never answers the handshake
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const c = new Client({ urls: [`ws://127.0.0.1:${(srv.address() as AddressInfo).port}/`], apiUrl: "", token: "t", deviceId: "dev", terminal: "web", WebSocket: WS });
    await c.start();
    await until("the connection attempt", () => held.length === 1, 5000);
    assert.equal(c.state, "connecting");
    c.close();
    await new Promise((r) => setTimeout(r, 300)); // an uncaught error would fail this test file
    assert.equal(c.state, "stopped");
    held.forEach((s) => s.destroy());
    await new Promise<void>((r) => srv.close(() => r()));
  });

  test("pushed events: each handed on once, messages from others acked in a batch, own messages not", async () => {
    const { c, ns } = await setup([() => undefined]);
    const got: Event[] = [];
    c.on("event", ({ event }) => got.push(event));
    const ev = (seq: number, from: string): Event => ({ kind: "message", conv_id: "p:me:you", seq, from, message: { msg_id: "x" + seq, from, to: "me", type: "text", body: { text: "t" + seq }, sent_at_ms: 1 } });
    for (const ws of await wssClients(ns[0])) {
      for (const e of [ev(3, "you"), ev(3, "you"), ev(5, "me"), ev(8, "you")]) ws.send(JSON.stringify({ type: "event", event: e }));
    }
    await until("the acks", () => ns[0].frames.some((f) => f.type === "ack"), 5000);
    assert.deepEqual(got.map((e) => e.seq), [3, 5, 8]);
    assert.equal(c.stats.duplicates, 1);
    const acks = ns[0].frames.filter((f) => f.type === "ack").flatMap((f) => f.acks as { conv_id: string; seq: number }[]);
    assert.deepEqual(acks, [{ conv_id: "p:me:you", seq: 8 }], "one ack per conversation, the highest seq");
  });
});

// The open server-side sockets of a fake node.
async function wssClients(n: FakeNode): Promise<NodeWS[]> {
  return n.sockets.filter((s) => s.readyState === NodeWS.OPEN);
}
