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
package auth
