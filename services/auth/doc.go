// Package auth issues and verifies the HMAC-signed JWTs of imcluster.
//
// There are three kinds of token, each signed with its own key so that a
// leaked key of one kind never grants another:
//
//   - user tokens (KindUser): subject = the user; what devices and apps hold;
//   - service tokens (KindService): subject = a business back end; may act
//     on behalf of any user (the SDK's sendPrivateMessage, presence queries);
//   - internal tokens (KindInternal): subject = a node; message→push delivery
//     and push→message forwarding.
//
// Verify checks signature (HS256 only; "none" and other algorithms are
// refused), expiry (required), not-before, issuer and the kind claim.
//
// # Keys and rotation
//
// Each kind has a key set (KeySet): one or more HMAC keys, the first of
// which (the primary) signs; every key verifies. A key may carry an id, put
// in the token's kid header by the Signer; the Verifier then checks that key
// only, and an unknown kid with the set's key without kid (the old
// single-key file's, given a kid elsewhere first) or not at all. A token without kid is tried against each
// key — bounded, since a set holds at most MaxKeys keys. The key file format
// is ParseKeySet's: one "KID:SECRET" or "SECRET" per line, so the original
// single-key file is a one-key set without kid.
//
// A KeyFile follows its file: Reload (every DefaultReloadInterval under
// Watch) swaps the set atomically when the content changed and keeps the
// last good set when the file turns unreadable or invalid. Signers and
// Verifiers built on it (NewKeySigner, NewKeyVerifier) read the current set
// on every call, so a Secret update rotates keys without a restart:
// add the new key second, wait for every pod to load it, make it first,
// and drop the old key once tokens signed with it have expired.
package auth
