// The imcluster web chat page: log in (a token, or a dev token from `imctl
// web --dev-tokens`), the conversation list, history, sending text and
// images by URL, delivered and read marks, recall. Everything goes through
// the TypeScript SDK (sdk/ts); `imctl web` serves this page, its config
// (/config.json) and a same-origin proxy to the message API (/api/).
import { Client, LocalStorage, convId, groupOf, mentions, newClientMsgId, peerOf } from "@imcluster/sdk";
const $ = (id) => document.getElementById(id);
const SESSION_KEY = "imcluster.web.session";
let cfg;
let client = null;
let me = "";
const convs = new Map();
let current = null;
function conv(id) {
    let c = convs.get(id);
    if (!c) {
        const group = groupOf(id);
        c = { id, peer: group ? "# " + group : peerOf(id, me), group, readSeq: -1, peerReadSeq: -1, peerDeliveredSeq: -1, lastMsgSeq: -1, msgs: new Map(), pending: new Map(), historyLoaded: false };
        convs.set(id, c);
    }
    return c;
}
function showError(where, e) {
    $(where + "-error").textContent = e instanceof Error ? e.message : String(e);
}
// --- login ---------------------------------------------------------------------
async function devToken(user) {
    const r = await fetch("dev/token?user=" + encodeURIComponent(user));
    if (!r.ok)
        throw new Error(`dev token: ${r.status} ${await r.text()}`);
    return (await r.text()).trim();
}
function deviceId(user) {
    const k = "imcluster.web.device." + user;
    let d = localStorage.getItem(k);
    if (!d) {
        d = "web-" + newClientMsgId().replace(/[^A-Za-z0-9]/g, "").slice(0, 12);
        localStorage.setItem(k, d);
    }
    return d;
}
async function login(s) {
    me = s.user;
    localStorage.setItem(SESSION_KEY, JSON.stringify(s));
    $("login").hidden = true;
    $("chat").hidden = false;
    $("logout-btn").hidden = false;
    client = new Client({
        urls: cfg.push,
        apiUrl: new URL(cfg.api, location.href).href,
        deviceId: deviceId(s.user),
        terminal: "web",
        storage: new LocalStorage(undefined, "imcluster.web." + s.user + "."),
        // With dev tokens, every login and refresh gets a fresh token from
        // the server; a pasted token is used as long as it lives.
        tokenSource: async () => (cfg.devTokens ? devToken(s.user) : s.token),
    });
    client.on("state", () => renderStatus());
    client.on("connected", () => renderStatus());
    client.on("stopped", ({ error }) => { renderStatus(); if (error)
        showError("chat", error); });
    client.on("event", ({ event }) => onEvent(event));
    client.on("resync", ({ conversations }) => { mergeConversations(conversations); renderList(); });
    await client.start();
    try {
        await client.waitConnected(20_000);
    }
    catch (e) {
        showError("chat", e);
    }
    await loadConversations();
}
function logout() {
    client?.close();
    client = null;
    localStorage.removeItem(SESSION_KEY);
    location.reload();
}
// --- state -----------------------------------------------------------------------
function mergeConversations(list) {
    for (const x of list) {
        const c = conv(x.conv_id);
        c.peer = x.peer || c.peer;
        c.readSeq = Math.max(c.readSeq, x.read_seq ?? -1);
        c.peerReadSeq = Math.max(c.peerReadSeq, x.peer_read_seq ?? -1);
        c.peerDeliveredSeq = Math.max(c.peerDeliveredSeq, x.peer_delivered_seq ?? -1);
        c.lastMsgSeq = Math.max(c.lastMsgSeq, x.last_msg_seq ?? -1);
    }
}
async function loadConversations() {
    if (!client)
        return;
    try {
        mergeConversations(await client.conversations());
        // Unread counts: the messages after my read cursor (one history page each).
        await Promise.all([...convs.values()].filter((c) => c.lastMsgSeq > c.readSeq).map((c) => loadHistory(c)));
    }
    catch (e) {
        showError("chat", e);
    }
    renderList();
}
async function loadHistory(c) {
    if (!client)
        return;
    const page = await client.history(c.id, { limit: 50 });
    for (const ev of page.messages ?? [])
        addMessage(c, ev);
    c.historyLoaded = true;
}
function addMessage(c, ev) {
    const old = c.msgs.get(ev.seq);
    // A recall seen before keeps the message recalled whatever copy comes later.
    if (old?.message?.recalled && ev.message)
        ev = { ...ev, message: { ...ev.message, recalled: true, body: undefined } };
    c.msgs.set(ev.seq, ev);
    c.lastMsgSeq = Math.max(c.lastMsgSeq, ev.seq);
    const cmid = ev.message?.client_msg_id;
    if (cmid)
        c.pending.delete(cmid);
}
function onEvent(ev) {
    const c = conv(ev.conv_id);
    switch (ev.kind) {
        case "message":
            addMessage(c, ev);
            if (current === c && ev.from !== me)
                void markRead(c);
            break;
        case "read":
            if (ev.from === me)
                c.readSeq = Math.max(c.readSeq, ev.ref_seq ?? -1);
            else
                c.peerReadSeq = Math.max(c.peerReadSeq, ev.ref_seq ?? -1);
            break;
        case "delivered":
            if (ev.from !== me)
                c.peerDeliveredSeq = Math.max(c.peerDeliveredSeq, ev.ref_seq ?? -1);
            break;
        case "recall": {
            const m = c.msgs.get(ev.ref_seq ?? -1);
            const recalled = m?.message
                ? { ...m, message: { ...m.message, recalled: true, body: undefined } }
                : { kind: "message", conv_id: c.id, seq: ev.ref_seq ?? -1, from: ev.from, message: { msg_id: "", from: ev.from ?? "", to: "", type: "text", recalled: true, sent_at_ms: ev.at_ms ?? 0 } };
            c.msgs.set(recalled.seq, recalled);
            break;
        }
        case "group":
            // Membership changes are lines of the group's timeline.
            c.msgs.set(ev.seq, ev);
            break;
        case "rejected": {
            const p = c.pending.get(ev.message?.client_msg_id ?? "");
            if (p) {
                p.state = "failed";
                p.error = "refused: client_msg_id reused";
            }
            break;
        }
    }
    renderList();
    if (current === c)
        renderMessages();
}
function unreadCount(c) {
    let n = 0;
    for (const ev of c.msgs.values())
        if (ev.kind === "message" && ev.from !== me && ev.seq > c.readSeq && !ev.message?.recalled)
            n++;
    return n;
}
async function markRead(c) {
    if (!client)
        return;
    let top = -1;
    for (const ev of c.msgs.values())
        if (ev.from !== me && ev.seq > top)
            top = ev.seq;
    if (top <= c.readSeq)
        return;
    c.readSeq = top;
    renderList();
    try {
        await client.read(c.id, top);
    }
    catch (e) {
        showError("chat", e);
    }
}
async function openConv(id) {
    const c = conv(id);
    current = c;
    $("conv-title").textContent = c.peer;
    $("conv-title").dataset.peer = c.peer;
    $("compose").hidden = false;
    renderList();
    renderMessages();
    try {
        await loadHistory(c);
    }
    catch (e) {
        showError("chat", e);
    }
    if (current === c) {
        renderMessages();
        await markRead(c);
    }
}
// --- sending -----------------------------------------------------------------------
async function send(type, text, url) {
    const c = current;
    if (!client || !c)
        return;
    const cmid = newClientMsgId();
    const p = { cmid, type, text, url, state: "sending" };
    c.pending.set(cmid, p);
    renderMessages();
    try {
        const body = type === "image" ? { url } : { text };
        const res = await client.send(c.group ? { groupId: c.group, type, body, clientMsgId: cmid } : { to: c.peer, type, body, clientMsgId: cmid });
        if (res.seq !== undefined) {
            addMessage(c, { kind: "message", conv_id: c.id, seq: res.seq, from: me, at_ms: res.sent_at_ms,
                message: { msg_id: res.msg_id, client_msg_id: cmid, from: me, to: c.peer, type, body, sent_at_ms: res.sent_at_ms } });
        }
        else {
            // In the log, seq not known yet: it comes by sync (my own device is
            // not pushed my message); look it up in history meanwhile.
            p.state = "sent";
            void findSent(c, cmid);
        }
    }
    catch (e) {
        p.state = "failed";
        p.error = e instanceof Error ? e.message : String(e);
    }
    renderMessages();
    renderList();
}
async function findSent(c, cmid) {
    for (let i = 0; i < 20 && c.pending.has(cmid) && client; i++) {
        await new Promise((r) => setTimeout(r, 300));
        try {
            await loadHistory(c);
        }
        catch { /* tried again */ }
    }
    if (current === c)
        renderMessages();
}
async function recall(c, seq) {
    if (!client)
        return;
    try {
        await client.recall(c.id, seq);
        onEvent({ kind: "recall", conv_id: c.id, seq: -1, from: me, ref_seq: seq });
    }
    catch (e) {
        showError("chat", e);
    }
}
// --- rendering -------------------------------------------------------------------
function renderStatus() {
    const s = $("status");
    const st = client?.state ?? "idle";
    s.dataset.state = st;
    s.dataset.node = client?.node ?? "";
    s.textContent = st === "connected" ? `${me} · connected to ${client?.node}` : `${me} · ${st}`;
}
function renderList() {
    const ul = $("conv-list");
    ul.replaceChildren();
    const list = [...convs.values()].sort((a, b) => b.lastMsgSeq - a.lastMsgSeq || a.id.localeCompare(b.id));
    for (const c of list) {
        const li = document.createElement("li");
        li.dataset.conv = c.id;
        li.dataset.peer = c.peer;
        if (c === current)
            li.classList.add("active");
        const name = document.createElement("span");
        name.className = "peer";
        name.textContent = c.peer;
        const badge = document.createElement("span");
        badge.className = "unread";
        const n = c === current ? 0 : unreadCount(c);
        badge.textContent = n ? String(n) : "";
        li.append(name, badge);
        li.onclick = () => void openConv(c.id);
        ul.append(li);
    }
}
function mark(c, seq) {
    if (seq <= c.peerReadSeq)
        return ["✓✓ read", "read"];
    if (seq <= c.peerDeliveredSeq)
        return ["✓✓ delivered", "delivered"];
    return ["✓ sent", "sent"];
}
function renderMessages() {
    const box = $("messages");
    const c = current;
    box.replaceChildren();
    if (!c)
        return;
    const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 30;
    const evs = [...c.msgs.values()].sort((a, b) => a.seq - b.seq);
    for (const ev of evs) {
        const m = ev.message;
        const mine = ev.from === me;
        const div = document.createElement("div");
        if (ev.kind === "group") {
            div.className = "msg system";
            div.dataset.seq = String(ev.seq);
            div.append(textSpan(`${ev.from} ${ev.group?.op ?? "changed"} ${(ev.group?.users ?? []).join(", ")}`.trim()));
            box.append(div);
            continue;
        }
        if (mentions(ev, me) && !mine)
            div.dataset.mention = "true";
        div.className = "msg" + (mine ? " mine" : "") + (m?.recalled ? " recalled" : "");
        div.dataset.seq = String(ev.seq);
        div.dataset.from = ev.from ?? "";
        if (m?.recalled) {
            div.append(textSpan(mine ? "you recalled a message" : "message recalled"));
        }
        else if (m?.type === "image" && m.body?.url) {
            const img = document.createElement("img");
            img.src = m.body.url;
            img.alt = m.body.name ?? "image";
            div.append(img);
        }
        else {
            div.append(textSpan(m?.body?.text ?? m?.body?.url ?? ""));
        }
        const meta = document.createElement("div");
        meta.className = "meta";
        const when = document.createElement("span");
        when.textContent = new Date(m?.sent_at_ms ?? ev.at_ms ?? 0).toLocaleTimeString();
        meta.append(when);
        if (mine && !m?.recalled) {
            const [label, cls] = mark(c, ev.seq);
            const mk = document.createElement("span");
            mk.className = "mark " + cls;
            mk.dataset.mark = cls;
            mk.textContent = label;
            const btn = document.createElement("button");
            btn.className = "recall-btn";
            btn.textContent = "recall";
            btn.onclick = () => void recall(c, ev.seq);
            meta.append(mk, btn);
        }
        div.append(meta);
        box.append(div);
    }
    for (const p of c.pending.values()) {
        const div = document.createElement("div");
        div.className = "msg mine pending";
        div.dataset.cmid = p.cmid;
        div.append(textSpan(p.type === "image" ? `[image] ${p.url}` : p.text ?? ""));
        const meta = document.createElement("div");
        meta.className = "meta";
        const mk = document.createElement("span");
        mk.className = "mark " + p.state;
        mk.dataset.mark = p.state;
        mk.textContent = p.state === "failed" ? `failed: ${p.error}` : p.state === "sent" ? "✓ sent" : "sending…";
        meta.append(mk);
        div.append(meta);
        box.append(div);
    }
    if (stick)
        box.scrollTop = box.scrollHeight;
}
function textSpan(t) {
    const s = document.createElement("span");
    s.className = "text";
    s.textContent = t;
    return s;
}
// --- wiring ------------------------------------------------------------------------
async function main() {
    cfg = await (await fetch("config.json")).json();
    $("login-btn").onclick = async () => {
        const user = $("login-user").value.trim();
        let token = $("login-token").value.trim();
        try {
            if (!user)
                throw new Error("user id needed");
            if (!token) {
                if (!cfg.devTokens)
                    throw new Error("paste a token (this server hands out no dev tokens)");
                token = await devToken(user);
            }
            await login({ user, token });
        }
        catch (e) {
            showError("login", e);
        }
    };
    $("logout-btn").onclick = logout;
    $("new-open").onclick = () => {
        const peer = $("new-peer").value.trim();
        if (!peer || peer === me)
            return;
        void openConv(convId(me, peer));
    };
    $("compose").onsubmit = (e) => {
        e.preventDefault();
        const input = $("compose-text");
        const text = input.value.trim();
        if (!text)
            return;
        input.value = "";
        void send("text", text, undefined);
    };
    $("send-image-btn").onclick = () => {
        const input = $("image-url");
        const url = input.value.trim();
        if (!url)
            return;
        input.value = "";
        void send("image", undefined, new URL(url, location.href).href);
    };
    const saved = localStorage.getItem(SESSION_KEY);
    if (saved) {
        await login(JSON.parse(saved));
    }
    else {
        $("login").hidden = false;
    }
}
void main();
