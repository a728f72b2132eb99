package store

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// A group message's feed entry is a reference (write.go, cqlInsertFeedRef):
// kind, conversation, sender and time, but no msg_id and no content, which
// are stored once, in the group's history row. Sync fills such entries in
// from the history: one query per (conversation, bucket) of a page, run
// concurrently. The pipeline writes the history row before it routes the
// message, and the feed entries after (its timeline and index stages), so
// an entry Sync can see always has its row. A recall marks the history row
// (recalled, body gone), which the filled-in event then shows.

// isReference reports whether ev is a group message's feed reference still
// to be filled in from the history.
func isReference(ev protocol.Event) bool {
	return ev.Kind == protocol.KindMessage && model.IsGroupConv(ev.ConvID) && (ev.Message == nil || ev.Message.MsgID == "")
}

// hydrate replaces the references among evs with their history rows'
// events. A reference whose row is not found stays as it is.
func (st *Store) hydrate(ctx context.Context, evs []protocol.Event) error {
	type key struct {
		conv string
		b    int32
	}
	want := map[key][]int{} // indices into evs
	for i, ev := range evs {
		if isReference(ev) {
			k := key{ev.ConvID, model.Bucket(ev.Seq)}
			want[k] = append(want[k], i)
		}
	}
	if len(want) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for k, idx := range want {
		g.Go(func() error {
			seqs := make([]int64, len(idx))
			for j, i := range idx {
				seqs[j] = evs[i].Seq
			}
			it := st.s.Query(`SELECT `+messageColumns+` FROM messages WHERE conv_id = ? AND bucket = ? AND seq IN ?`,
				k.conv, k.b, seqs).WithContext(gctx).Iter()
			found := make(map[int64]protocol.Event, len(idx))
			for {
				ev, ok := scanMessage(k.conv, it)
				if !ok {
					break
				}
				found[ev.Seq] = ev
			}
			if err := it.Close(); err != nil {
				return fmt.Errorf("while reading group messages for sync: %w", err)
			}
			// Each goroutine writes its own indices of evs only.
			for _, i := range idx {
				if ev, ok := found[evs[i].Seq]; ok {
					evs[i] = ev
				}
			}
			return nil
		})
	}
	return g.Wait()
}
