// Wire types of the imcluster device protocol (docs/protocol.md) and of the
// message API (api/openapi/message.yaml). The JSON field names are the
// contract: they mirror services/protocol.
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
};
/** A non-2xx answer of the message API, or an error frame of a node. */
export class ImError extends Error {
    code;
    status;
    constructor(code, message, status = 0) {
        super(code + ": " + message);
        this.name = "ImError";
        this.code = code;
        this.status = status;
    }
}
/** 1:1 conversation id of two users (ids sorted), as the server makes it. */
export function convId(a, b) {
    return a < b ? `p:${a}:${b}` : `p:${b}:${a}`;
}
/** The conversation id of a group. */
export function groupConvId(group) {
    return `g:${group}`;
}
/** The group of a group conversation id ("" for a 1:1 conversation). */
export function groupOf(conv) {
    return conv.startsWith("g:") ? conv.slice(2) : "";
}
/** Whether a message event mentions user me (by name or "all"). */
export function mentions(ev, me) {
    const m = ev.message?.body?.mentions ?? [];
    return m.includes(me) || m.includes("all");
}
/** The other participant of a 1:1 conversation. */
export function peerOf(conv, me) {
    const parts = conv.split(":");
    if (parts.length !== 3 || parts[0] !== "p")
        return "";
    return parts[1] === me ? parts[2] : parts[1];
}
