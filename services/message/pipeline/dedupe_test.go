package pipeline

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

func onPart(part int32, r Record) Record {
	r.Part = part
	return r
}

func withText(r model.Record, text string) model.Record {
	r.Body = &protocol.Body{Text: text}
	return r
}

// The first copy of a msg_id in log order is stored; later copies are
// dropped (same content) or rejected to the sender (other content),
// whether the earlier copy is in the batch, the window or only the store.
func TestDedupeFirstInLogOrderWins(t *testing.T) {
	m := message("alice", "bob", "c1", "m1", false)
	tests := []struct {
		name         string
		batches      [][]Record
		resetWindow  bool // before the last batch: a restart, only the store knows
		wantStored   []int64
		wantRejected []int64
		wantLookups  int
	}{
		{"copy in the same batch", [][]Record{{rec(t, 10, m), rec(t, 11, m)}}, false, []int64{10}, nil, 1},
		{"copy in the window", [][]Record{{rec(t, 10, m)}, {rec(t, 20, m)}}, false, []int64{10}, nil, 1},
		{"copy only in the store", [][]Record{{rec(t, 10, m)}, {rec(t, 20, m)}}, true, []int64{10}, nil, 2},
		{"retry landed before a held original", [][]Record{{rec(t, 5, withRetry(m))}, {rec(t, 9, m)}}, true, []int64{5}, nil, 2},
		{"replay of the stored offset", [][]Record{{rec(t, 10, m)}, {rec(t, 10, m)}}, true, []int64{10, 10}, nil, 2},
		{"reuse with other content", [][]Record{{rec(t, 10, m)}, {rec(t, 20, withText(m, "other"))}}, true, []int64{10}, []int64{20}, 2},
		{"reuse in one batch", [][]Record{{rec(t, 10, m), rec(t, 11, withText(m, "other")), rec(t, 12, m)}}, false, []int64{10}, []int64{11}, 1},
		// A batch spanning partitions decides each partition's records on
		// their own, as that partition's single writer would (one lookup).
		{"two partitions in one batch", [][]Record{{rec(t, 10, m), onPart(1, rec(t, 3, m)), rec(t, 11, withText(m, "other")), onPart(1, rec(t, 4, m))}},
			false, []int64{10, 3}, []int64{11}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, st, rt, _, _ := newProc()
			for i, b := range tt.batches {
				if tt.resetWindow && i == len(tt.batches)-1 {
					p.window = window{}
				}
				if err := p.Process(context.Background(), b); err != nil {
					t.Fatal(err)
				}
			}
			var stored, rejected []int64
			for _, it := range st.persisted {
				if it.Rejected {
					rejected = append(rejected, it.Off)
				} else {
					stored = append(stored, it.Off)
				}
			}
			if !equal(stored, tt.wantStored) || !equal(rejected, tt.wantRejected) {
				t.Fatalf("stored %v rejected %v, want %v %v", stored, rejected, tt.wantStored, tt.wantRejected)
			}
			if st.lookups != tt.wantLookups {
				t.Errorf("%d store lookups, want %d", st.lookups, tt.wantLookups)
			}
			for _, r := range rt.routed {
				if r.Event.Kind != protocol.KindRejected {
					continue
				}
				if len(r.Users) != 1 || r.Users[0] != "alice" || r.ExceptDevice != "" || r.Event.RefSeq != 10 ||
					r.Event.Message == nil || r.Event.Message.Body.Text != "other" {
					t.Errorf("rejected event %+v to %v except %q: want alice's every device, ref_seq 10, the rejected body", r.Event, r.Users, r.ExceptDevice)
				}
			}
		})
	}
}

func withRetry(r model.Record) model.Record {
	r.Retry = true
	return r
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Records are checked against the protocol's ceiling, not the send limit
// of the day: a backlog of large records acknowledged under a higher
// limit is stored after the limit was lowered; beyond the ceiling a record
// is dead-lettered.
func TestDecodeUsesTheProtocolCeiling(t *testing.T) {
	p, st, _, dlq, _ := newProc()
	big := withText(message("alice", "bob", "c1", "m1", false), strings.Repeat("x", 64<<10))
	huge := withText(message("alice", "bob", "c2", "m2", false), strings.Repeat("x", model.MaxBodyCeiling))
	if err := p.Process(context.Background(), []Record{rec(t, 1, big), rec(t, 2, huge)}); err != nil {
		t.Fatal(err)
	}
	if len(st.persisted) != 1 || st.persisted[0].Off != 1 || len(dlq.reasons) != 1 {
		t.Fatalf("persisted %d records, dead-lettered %v: want the 64 KiB one stored, the one over the ceiling dead-lettered", len(st.persisted), dlq.reasons)
	}
}

// A batch whose store keeps failing stops retrying when its session ends
// (a rebalance), so the partition can move; nothing may be committed.
func TestProcessStopsRetryingWhenTheSessionEnds(t *testing.T) {
	p, st, _, _, _ := newProc()
	st.failures = 1 << 30
	session, end := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- p.ProcessSession(context.Background(), session, []Record{rec(t, 1, message("alice", "bob", "c1", "m1", false))})
	}()
	end()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a batch that never persisted returned nil after its session ended: it would be committed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the batch kept retrying after its session ended")
	}
}
