// Package filewatch follows small files that change in place, such as
// Kubernetes Secret volumes (updated by swapping the ..data symlink): Poll
// re-reads on a ticker and reports transitions, Read reads with a size
// bound. The callers (signing keys, TLS pairs) own parsing and the atomic
// swap of what they serve; this package only owns the loop, so every such
// file logs and recovers the same way.
package filewatch
