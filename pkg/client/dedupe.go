package client

import (
	"container/list"
	"hash/maphash"
	"slices"
)

// dedupe is a Client's bounded memory of the events it handed to the app:
// an LRU of at most maxConvs conversations, each with the last dedupeWindow
// seqs it saw above a floor, plus a fixed sketch of the highest seq of the
// conversations it evicted. Its size does not grow with the number of
// conversations or events (at most about 2.2 KiB per remembered
// conversation and 32 KiB for the sketch).
//
// For an event, memory is sure when the conversation is remembered and
// the seq is above its floor: then the seq is either in the window (a
// repeat) or new to this Client. Otherwise — the conversation was evicted,
// or the seq is older than the window — memory cannot tell. The Client
// drops the repeats memory recognises, asks Config.Known (the app's store)
// about the rest, and without Known hands on what memory cannot judge
// (never dropping what might be new; see docs/protocol.md, section 5).
//
// The floor of a conversation (re)entering memory is the sketch's value
// for it: every seq this Client saw of an evicted conversation is at or
// below the highest seq evicted into its bucket, so a seq above is new.
type dedupe struct {
	maxConvs int
	lru      list.List // of *convSeen; front: most recently used
	byConv   map[string]*list.Element
	evicted  [sketchBuckets]int64 // highest seq of the evicted conversations per bucket
	seed     maphash.Seed
}

// convSeen is one remembered conversation: seqs (sorted, at most
// dedupeWindow) are the seqs above floor that were handed on.
type convSeen struct {
	conv  string
	floor int64
	seqs  []int64
}

const (
	dedupeWindow      = 256
	defaultDedupeConv = 1024
	sketchBuckets     = 4096
)

func newDedupe(maxConvs int) *dedupe {
	if maxConvs <= 0 {
		maxConvs = defaultDedupeConv
	}
	d := &dedupe{maxConvs: maxConvs, byConv: map[string]*list.Element{}, seed: maphash.MakeSeed()}
	for i := range d.evicted {
		d.evicted[i] = -1 // seq 0 is a valid seq
	}
	return d
}

func (d *dedupe) bucket(conv string) int {
	return int(maphash.String(d.seed, conv) % sketchBuckets)
}

// check says whether (conv, seq) was seen: sure is false when memory
// cannot tell (the caller decides), seen is meaningful only when sure.
func (d *dedupe) check(conv string, seq int64) (seen, sure bool) {
	e := d.byConv[conv]
	if e == nil {
		return false, seq > d.evicted[d.bucket(conv)]
	}
	s := e.Value.(*convSeen)
	if seq <= s.floor {
		return false, false
	}
	_, found := slices.BinarySearch(s.seqs, seq)
	return found, true
}

// add records (conv, seq) as handed on, making conv the most recent
// conversation and evicting the least recent one beyond maxConvs.
func (d *dedupe) add(conv string, seq int64) {
	e := d.byConv[conv]
	if e == nil {
		e = d.lru.PushFront(&convSeen{conv: conv, floor: d.evicted[d.bucket(conv)]})
		d.byConv[conv] = e
		for d.lru.Len() > d.maxConvs {
			d.evict(d.lru.Back())
		}
	} else {
		d.lru.MoveToFront(e)
	}
	s := e.Value.(*convSeen)
	if seq <= s.floor {
		return // below memory: nothing to remember
	}
	i, found := slices.BinarySearch(s.seqs, seq)
	if found {
		return
	}
	if len(s.seqs) == dedupeWindow {
		// Full: keep the newer half (so the slice never outgrows the
		// window); what falls out lies at or below the new floor.
		cut := dedupeWindow / 2
		s.floor = s.seqs[cut-1]
		s.seqs = append(s.seqs[:0], s.seqs[cut:]...)
		if seq <= s.floor {
			return
		}
		i, _ = slices.BinarySearch(s.seqs, seq)
	}
	s.seqs = slices.Insert(s.seqs, i, seq)
}

func (d *dedupe) evict(e *list.Element) {
	s := e.Value.(*convSeen)
	d.lru.Remove(e)
	delete(d.byConv, s.conv)
	hi := s.floor
	if len(s.seqs) > 0 {
		hi = max(hi, s.seqs[len(s.seqs)-1])
	}
	if b := d.bucket(s.conv); hi > d.evicted[b] {
		d.evicted[b] = hi
	}
}
