// Package tlsconf is the TLS of the tiers' client-facing listeners and of
// the clients that call them.
//
// # Contract
//
//   - CertFile follows a PEM certificate chain and key on disk. Reload
//     re-reads both and swaps the pair atomically when their content
//     changed; Watch calls Reload every few seconds. A pair that turns
//     unreadable, unparsable or mismatched keeps the last good pair in use
//     (Reload says why, Watch logs it once), so a botched Secret edit never
//     takes the listener down. Content, not mtime, is compared: Kubernetes
//     updates a Secret volume by swapping its ..data symlink.
//   - ServerConfig serves the current pair (GetCertificate) with TLS 1.2 or
//     newer. New handshakes get a reloaded pair at once; established
//     connections keep the one they negotiated.
//   - ClientConfig trusts the system roots plus an optional PEM CA bundle,
//     TLS 1.2 or newer, and always verifies: there is no insecure mode.
//
// The reload loop is services/internal/filewatch's, shared with
// services/auth.KeyFile (poll the content, keep the last good value); the
// parsing differs, hence a type of its own.
package tlsconf
