// The SDK against the real stack (Kafka, Cassandra, etcd, a message and two
// push processes), started by test/browser's TestSDK. Skipped without it.

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { Api, Client, Event, MemoryStorage, convId, groupConvId, mentions } from "../src/index.js";
import { Device, WS, ctl, noStack, stack, token, uniqueUser, until } from "./helpers.js";

const devices: Device[] = [];
async function device(user: string, opts: Parameters<typeof Device.connect>[1]): Promise<Device> {
  const d = await Device.connect(user, opts);
  devices.push(d);
  return d;
}
after(() => devices.forEach((d) => d.close()));

function summary(evs: Event[]): string {
  return evs.map((e) => `${e.kind}/${e.from}#${e.seq}${e.ref_seq !== undefined ? "→" + e.ref_seq : ""}`).join(" ");
}

async function httpApi(user: string, deviceId: string): Promise<Api> {
  const tok = await token(user);
  return new Api({ baseUrl: stack.api, token: () => tok, deviceId });
}

describe("stack: SDK against the real tiers", { skip: noStack, timeout: 240_000 }, () => {
  test("two users chat both ways over the socket: delivered, read, recall, history, unread", async () => {
    const alice = uniqueUser("alice"), bob = uniqueUser("bob");
    const conv = convId(alice, bob);
    // alice on push-a, bob on push-b: events cross nodes.
    const a = await device(alice, { deviceId: "a-web", urls: [stack.push[0]] });
    const b = await device(bob, { deviceId: "b-web", urls: [stack.push[1]] });
    assert.notEqual(a.client.node, b.client.node);

    const r1 = await a.client.sendText(bob, "hello bob");
    assert.equal(r1.conv_id, conv);
    assert.ok(r1.msg_id);
    await until("bob to get alice's message", () => b.texts(conv).includes("hello bob"));
    const msg = b.events.find((e) => e.kind === "message" && e.message?.body?.text === "hello bob")!;
    if (r1.seq !== undefined) assert.equal(r1.seq, msg.seq);

    // bob's device acked it (batched): alice gets a delivered receipt.
    await until(() => `alice to get bob's delivered receipt for seq ${msg.seq} (bob's stats ${JSON.stringify(b.client.stats)}, alice has ${summary(a.events)})`,
      () => a.has("delivered", (e) => e.from === bob && (e.ref_seq ?? -1) >= msg.seq));

    // Unread pull before bob reads: the message is there, with the same
    // seq (each user's rows follow the push within about a second).
    let unread: Event[] = [];
    await until("bob's unread pull to have the message", () => unread.some((e) => e.conv_id === conv && e.seq === msg.seq), 20_000,
      async () => { unread = await b.client.unread(); });

    await b.client.read(conv, msg.seq);
    await until("alice to get bob's read receipt", () => a.has("read", (e) => e.from === bob && e.ref_seq === msg.seq));

    const r2 = await b.client.sendText(alice, "hi alice");
    await until("alice to get bob's reply", () => a.texts(conv).includes("hi alice"));
    // bob's own device does not get his message pushed back, but it comes back by sync.
    await until("bob's sync to bring his own message", () => b.texts(conv).includes("hi alice"), 20_000, () => b.client.syncNow());

    // An image by URL.
    await a.client.sendImage(bob, "https://example.com/cat.png", { width: 64, height: 48, mime: "image/png" });
    await until("bob to get the image", () => b.has("message", (e) => e.message?.type === "image" && e.message.body?.url === "https://example.com/cat.png"));

    // alice recalls her first message; both sides see the recall; history shows it recalled.
    await a.client.recall(bob, msg.seq);
    await until("bob to see the recall", () => b.has("recall", (e) => e.ref_seq === msg.seq));
    // alice's own device is not pushed her recall; it comes by sync.
    await until("alice's device to get her recall by sync", () => a.has("recall", (e) => e.ref_seq === msg.seq), 20_000,
      () => a.client.syncNow());
    const h = await a.client.history(bob, { limit: 10 });
    const hm = (h.messages ?? []).find((e) => e.seq === msg.seq);
    assert.ok(hm, "history has the recalled message");
    assert.equal(hm!.message?.recalled, true);
    assert.ok((h.messages ?? []).some((e) => e.message?.body?.text === "hi alice"), "history has bob's reply");
    assert.equal(r2.conv_id, conv);

    // bob's read cursor is at or past what he read (sending moves it too).
    let c: { read_seq?: number } | undefined;
    await until("bob's conversation list to have his read cursor", () => (c?.read_seq ?? -1) >= msg.seq, 20_000,
      async () => { c = (await b.client.conversations()).find((x) => x.conv_id === conv); });

    assert.deepEqual(a.repeats(), [], "alice got no event twice");
    assert.deepEqual(b.repeats(), [], "bob got no event twice");
  });

  test("a retried send (same client_msg_id) stores one message; answers may lack seq", async () => {
    const carol = uniqueUser("carol"), dan = uniqueUser("dan");
    const conv = convId(carol, dan);
    const c = await device(carol, { deviceId: "c-web" });
    const d = await device(dan, { deviceId: "d-web" });
    const first = await c.client.send({ to: dan, body: { text: "once" }, clientMsgId: "cm-once-1" });
    const again = await c.client.send({ to: dan, body: { text: "once" }, clientMsgId: "cm-once-1" });
    assert.equal(again.msg_id, first.msg_id, "the same client_msg_id answers the same msg_id");
    await c.client.sendText(dan, "marker");
    await until("dan to get the marker", () => d.texts(conv).includes("marker"));
    await d.client.syncNow();
    assert.deepEqual(d.texts(conv), ["once", "marker"], "one message per client_msg_id");
    // Reusing a client_msg_id for other content is refused: at once
    // (409 idempotency_clash, not retried), or, when the API accepted it
    // into the log, by a rejected event to the sender's devices.
    try {
      await c.client.send({ to: dan, body: { text: "other" }, clientMsgId: "cm-once-1" });
      await until("the rejected event for the reused client_msg_id",
        () => c.has("rejected", (e) => e.message?.client_msg_id === "cm-once-1"), 20_000, () => c.client.syncNow());
    } catch (e) {
      if ((e as { code?: string }).code !== "idempotency_clash") throw e;
    }
    await d.client.syncNow();
    assert.ok(!d.texts(conv).includes("other"), "the clashing content was not stored");
  });

  test("reconnect across push nodes: a drained node's device moves to the other and misses nothing", async () => {
    const erin = uniqueUser("erin"), fred = uniqueUser("fred");
    const conv = convId(erin, fred);
    const e = await device(erin, { deviceId: "e-web", urls: stack.push });
    assert.equal(e.client.node, stack.pushNames[0]);
    const fApi = await httpApi(fred, "f-phone");
    const sent: string[] = [];
    const send = async (text: string) => {
      await fApi.send({ to: erin, client_msg_id: `${text}-${erin}`, type: "text", body: { text } });
      sent.push(text);
    };
    for (let i = 0; i < 3; i++) await send(`before-${i}`);
    await until("erin to get the first messages", () => e.texts(conv).length === 3);

    const stopping = ctl("stop", stack.pushNames[0]); // SIGTERM: the node drains its sessions
    try {
      // Messages keep coming while erin moves.
      for (let i = 0; i < 5; i++) await send(`during-${i}`);
      await stopping;
      await until("erin to reconnect to the other node", () => e.nodes.length >= 2);
      assert.equal(e.nodes[e.nodes.length - 1], stack.pushNames[1]);
      assert.ok(e.disconnects.some((x) => (x as { code?: string }).code === "draining"),
        "the disconnect was a drain: " + e.disconnects.map(String).join("; "));
      for (let i = 0; i < 3; i++) await send(`after-${i}`);
      await until(() => `every message once (got ${JSON.stringify(e.texts(conv))})`,
        () => e.texts(conv).length === sent.length);
      assert.deepEqual(e.texts(conv), sent);
      assert.deepEqual(e.repeats(), []);
    } finally {
      await stopping.catch(() => undefined);
      await ctl("restart", stack.pushNames[0]);
    }
  });

  test("sync from a persisted cursor: a restarted device gets only what it missed", async () => {
    const gina = uniqueUser("gina"), hank = uniqueUser("hank");
    const conv = convId(gina, hank);
    const storage = new MemoryStorage();
    const hApi = await httpApi(hank, "h-phone");
    const send = (text: string) => hApi.send({ to: gina, client_msg_id: `${text}-${gina}`, type: "text", body: { text } });

    const g1 = await device(gina, { deviceId: "g-web", storage });
    for (const t of ["one", "two", "three"]) await send(t);
    await until("the first device to get three messages", () => g1.texts(conv).length === 3);
    // The cursor covers them once a sync brought them again (the feed
    // follows the pushes within about a second).
    await until("the first device's sync to cover the three", () => g1.client.stats.duplicates >= 3, 20_000, () => g1.client.syncNow());
    const saved = await storage.get("cursor:g-web");
    assert.ok(saved, "the cursor was persisted");
    g1.close();

    for (const t of ["four", "five"]) await send(t);
    // A new Client (a restarted app: empty dedupe memory) on the same storage.
    const g2 = await device(gina, { deviceId: "g-web", storage });
    await until("the restarted device to get what it missed", () => g2.texts(conv).length >= 2);
    await g2.client.syncNow();
    assert.deepEqual(g2.texts(conv), ["four", "five"], "nothing before the persisted cursor came again");
    assert.equal(g2.client.stats.resyncs, 0);
  });

  test("resync after 410 cursor_expired (a persisted cursor ahead of the log)", { skip: !stack.aheadCursor }, async () => {
    const ivy = uniqueUser("ivy"), jack = uniqueUser("jack");
    const conv = convId(ivy, jack);
    const jApi = await httpApi(jack, "j-phone");
    const sent: string[] = [];
    for (const t of ["m1", "m2", "m3"]) {
      await jApi.send({ to: ivy, client_msg_id: `${t}-${ivy}`, type: "text", body: { text: t } });
      sent.push(t);
    }
    // Sends are answered once in the log: wait until the pipeline stored
    // them, so the resync's conversation list has the conversation.
    const iApi = await httpApi(ivy, "i-probe");
    let stored = false;
    await until("jack's messages stored", () => stored, 20_000, async () => {
      stored = (await iApi.unread()).events.filter((e) => e.conv_id === conv).length === 3;
    });
    const storage = new MemoryStorage();
    storage.set("cursor:i-web", stack.aheadCursor);
    const resyncs: number[] = [];
    const d = new Device(ivy, { deviceId: "i-web", storage, token: await token(ivy) });
    devices.push(d);
    d.client.on("resync", ({ conversations }) => resyncs.push(conversations.length));
    await d.client.start();
    await d.client.waitConnected(20_000);
    await until("the resync", () => resyncs.length > 0);
    assert.ok(resyncs[0] >= 1, "the resync brought the conversation list");
    await until(() => `the unread messages (got ${JSON.stringify(d.texts(conv))})`, () => d.texts(conv).length === 3);
    assert.notEqual(d.client.cursor, stack.aheadCursor);
    assert.equal(await storage.get("cursor:i-web"), d.client.cursor, "the new cursor is persisted");
    // Live messages still come, each once.
    await jApi.send({ to: ivy, client_msg_id: `m4-${ivy}`, type: "text", body: { text: "m4" } });
    sent.push("m4");
    await until("the live message", () => d.texts(conv).includes("m4"));
    await d.client.syncNow();
    assert.deepEqual(d.texts(conv), sent);
    assert.deepEqual(d.repeats(), []);
    assert.equal(d.client.stats.resyncs, 1);
  });

  test("token refresh keeps a session alive past its first token's expiry", async () => {
    const kim = uniqueUser("kim");
    let minted = 0;
    const d = await device(kim, {
      deviceId: "k-web",
      tokenSource: async () => { minted++; return token(kim, 6); },
    });
    const firstExp = d.client.expiresAt;
    assert.ok(firstExp > Date.now(), "welcome carried the expiry");
    const refreshed: number[] = [];
    d.client.on("refreshed", ({ expiresAtMs }) => refreshed.push(expiresAtMs));
    await until("a refresh", () => refreshed.length > 0, 10_000);
    // The node sweeps every 5 s at most: wait past the first token's expiry plus a sweep.
    await new Promise((r) => setTimeout(r, Math.max(0, firstExp + 6000 - Date.now())));
    assert.equal(d.disconnects.length, 0, "no disconnect: " + d.disconnects.map(String).join("; "));
    assert.ok(d.client.expiresAt > firstExp, "the session's expiry moved on");
    assert.ok(minted >= 2);
  });

  test("a group across both push nodes: created event, messages with a mention, one order, reads to the reader only, a member removed", async () => {
    const own = uniqueUser("own"), ana = uniqueUser("ana"), ben = uniqueUser("ben");
    const o = await device(own, { deviceId: "o-web", urls: [stack.push[0]] });
    const a = await device(ana, { deviceId: "a-web", urls: [stack.push[1]] });
    const gid = uniqueUser("grp");
    const conv = groupConvId(gid);
    const created = await o.client.api.createGroup({ groupId: gid, name: "Team", members: [ana, ben] });
    assert.equal(created.group.members, 3);
    await until("ana to see the group created", () => a.has("group", (e) => e.conv_id === conv && e.group?.op === "created"));
    await o.client.sendGroupText(gid, "hello team", { mentions: [ana] });
    await a.client.sendGroupText(gid, "hi all");
    await until("ana to get the owner's message", () => a.texts(conv).includes("hello team"));
    await until("the owner to get ana's message", () => o.texts(conv).includes("hi all"));
    const m = a.events.find((e) => e.message?.body?.text === "hello team")!;
    assert.ok(mentions(m, ana), "the message mentions ana");
    assert.ok(!mentions(m, own));
    // ben was offline: he gets both by sync, in the same order.
    const b = await device(ben, { deviceId: "b-web", urls: [stack.push[0]] });
    await until("ben to sync the group", () => b.texts(conv).length === 2);
    // Each sender's own message comes back to its device by sync.
    await until("the owner's sync to bring both", () => o.texts(conv).length === 2, 20_000, () => o.client.syncNow());
    await until("ana's sync to bring both", () => a.texts(conv).length === 2, 20_000, () => a.client.syncNow());
    assert.deepEqual(b.texts(conv), o.texts(conv));
    assert.deepEqual(a.texts(conv), o.texts(conv));
    // A read goes to the reader's devices only (the owner reads ana's
    // message; ana's own send had already moved her cursor past it).
    const hi = o.events.find((e) => e.message?.body?.text === "hi all")!;
    const r = await o.client.read(conv, hi.seq);
    assert.ok(r.changed, "the owner's read moved the cursor");
    await until("the owner's device to get the read by sync", () => o.has("read", (e) => e.conv_id === conv), 20_000, () => o.client.syncNow());
    await a.client.syncNow();
    assert.ok(!a.has("read", (e) => e.conv_id === conv && e.from === own), "ana saw the owner's read");
    // ben is removed: he sees his removal, then nothing more.
    await o.client.api.removeMember(gid, ben);
    await until("ben to see his removal", () => b.has("group", (e) => e.conv_id === conv && e.group?.op === "removed"));
    await o.client.sendGroupText(gid, "after ben");
    await until("ana to get the last message", () => a.texts(conv).includes("after ben"));
    await b.client.syncNow();
    assert.ok(!b.texts(conv).includes("after ben"), "a removed member got a later message");
    await assert.rejects(b.client.sendGroupText(gid, "let me in", { attempts: 1 }), (e: { code?: string }) => e.code === "not_member");
    const h = await a.client.history(conv, { limit: 10 });
    assert.deepEqual((h.messages ?? []).filter((e) => e.kind === "message").map((e) => e.message?.body?.text).reverse(), ["hello team", "hi all", "after ben"]);
    for (const d of [o, a, b]) assert.deepEqual(d.repeats(), [], "no event twice");
  });

  test("a second login on the same terminal kicks the first, which stops for good", async () => {
    const lea = uniqueUser("lea");
    const first = await device(lea, { deviceId: "l-web-1", terminal: "web" });
    const stopped = first.client.waitFor("stopped", () => true, 20_000);
    await device(lea, { deviceId: "l-web-2", terminal: "web" });
    const { error } = await stopped;
    assert.equal((error as { code?: string }).code, "kicked");
    assert.equal(first.client.state, "stopped");
    const nodesBefore = first.nodes.length;
    await new Promise((r) => setTimeout(r, 1500)); // no reconnect may follow
    assert.equal(first.nodes.length, nodesBefore);
  });
});

// Keeps the import of Client and Event used for the types above.
export type _unused = [Client, Event, typeof WS];
