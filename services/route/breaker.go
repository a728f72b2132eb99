package route

import (
	"sync"
	"time"
)

// breaker remembers failing push nodes between batches: once a batch gave
// up on a node, the node's breaker is open for a backoff (doubling from
// min to max) during which its batches are skipped at once; then one batch
// probes it (with a short budget) while the others still skip. A success
// closes the breaker; a failed probe reopens it with the next backoff.
type breaker struct {
	min, max time.Duration

	mu     sync.Mutex
	nodes  map[string]*nodeState
	pruned time.Time
}

type nodeState struct {
	openUntil time.Time
	backoff   time.Duration
	probing   bool
}

func newBreaker(min, max time.Duration) *breaker {
	return &breaker{min: min, max: max, nodes: map[string]*nodeState{}}
}

// allow says whether a batch may call node now, and whether it is the probe.
func (b *breaker) allow(node string, now time.Time) (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.nodes[node]
	switch {
	case st == nil:
		return true, false
	case now.Before(st.openUntil) || st.probing:
		return false, false
	default:
		st.probing = true
		return true, true
	}
}

// isOpen says whether node's breaker is open (a retrying batch stops then).
func (b *breaker) isOpen(node string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nodes[node] != nil
}

// fail opens node's breaker (or reopens it after a failed probe) and
// returns how long it stays open.
func (b *breaker) fail(node string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.nodes[node]
	if st == nil {
		st = &nodeState{}
		b.nodes[node] = st
	}
	if st.backoff == 0 {
		st.backoff = b.min
	} else if !st.probing && now.Before(st.openUntil) {
		return time.Until(st.openUntil) // opened meanwhile by another batch
	} else {
		st.backoff = min(2*st.backoff, b.max)
	}
	st.openUntil, st.probing = now.Add(st.backoff), false
	return st.backoff
}

// release ends a probe that had no verdict (its batch's context ended):
// the next batch due may probe again.
func (b *breaker) release(node string) {
	b.mu.Lock()
	if st := b.nodes[node]; st != nil {
		st.probing = false
	}
	b.mu.Unlock()
}

// forget closes node's breaker: it answered, or it is gone.
func (b *breaker) forget(node string) {
	b.mu.Lock()
	delete(b.nodes, node)
	b.mu.Unlock()
}

func (b *breaker) openCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.nodes)
}

// prune forgets, at most every 30 s, the nodes gone reports as gone: a
// node that left the registry while its breaker was open is never called
// again, so nothing else would close it.
func (b *breaker) prune(now time.Time, gone func(node string) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.nodes) == 0 || now.Sub(b.pruned) < 30*time.Second {
		return
	}
	b.pruned = now
	for n := range b.nodes {
		if gone(n) {
			delete(b.nodes, n)
		}
	}
}
