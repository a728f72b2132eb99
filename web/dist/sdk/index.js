// @imcluster/sdk — the imcluster device SDK for browsers and Node ≥ 20.
// docs/protocol.md is the protocol; pkg/client is the Go reference.
export { Client, newClientMsgId } from "./client.js";
export { Api, ErrorCodeNetwork } from "./api.js";
export { Dedupe } from "./dedupe.js";
export { Emitter } from "./emitter.js";
export { LocalStorage, MemoryStorage } from "./storage.js";
export { ErrorCode, ImError, convId, groupConvId, groupOf, mentions, peerOf } from "./types.js";
