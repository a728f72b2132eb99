package message_test

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// env is one isolated message tier: its own keyspace, topics and group.
type env struct {
	skew   atomic.Int64 // added to the API's clock, in ns
	cfg    config.Message
	keys   msgtest.Keys
	router *msgtest.RecRouter
	proc   *msgtest.Proc
	c      msgtest.Client
	st     *store.Store
}

func newEnv(t *testing.T, partitions int32, mut ...func(*config.Message)) *env {
	t.Helper()
	cfg := msgtest.Config(t, partitions)
	for _, m := range mut {
		m(&cfg)
	}
	e := &env{cfg: cfg, router: &msgtest.RecRouter{}}
	e.keys = msgtest.WriteKeys(t, &e.cfg)
	msgtest.Topics(t, e.cfg)
	msgtest.Keyspace(t, e.cfg)
	e.st = msgtest.Store(t, e.cfg)
	return e
}

func (e *env) start(t *testing.T, role string, opts ...func(*server.Options)) {
	t.Helper()
	e.proc = msgtest.Start(t, e.cfg, role, e.router, append([]func(*server.Options){func(o *server.Options) {
		o.Now = func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }
	}}, opts...)...)
	e.c = msgtest.Client{URL: e.proc.URL}
}

func (e *env) user(t *testing.T, u string) string { return msgtest.Token(t, e.keys.User, u) }

func text(to, cmid, body string) api.SendRequest {
	return api.SendRequest{To: to, ClientMsgID: cmid, Type: protocol.TypeText, Body: &protocol.Body{Text: body}}
}

func (e *env) send(t *testing.T, from string, req api.SendRequest, hdr ...string) api.SendResponse {
	t.Helper()
	r := e.c.Do(t, "POST", "/v1/messages", e.user(t, from), req, hdr...)
	if r.Status != 200 {
		t.Fatalf("send %s→%s: %d %s", from, req.To, r.Status, r.Body)
	}
	var out api.SendResponse
	r.Decode(t, &out)
	return out
}

// history returns every message of conv, oldest first, paging with limit.
func (e *env) history(t *testing.T, as, conv string, limit int) []protocol.Event {
	t.Helper()
	var all []protocol.Event
	before := ""
	for range 10000 {
		q := fmt.Sprintf("/v1/conversations/%s/messages?limit=%d%s", url.PathEscape(conv), limit, before)
		r := e.c.Do(t, "GET", q, e.user(t, as), nil)
		if r.Status != 200 {
			t.Fatalf("history: %d %s", r.Status, r.Body)
		}
		var h api.HistoryResponse
		r.Decode(t, &h)
		all = append(all, h.Messages...)
		if !h.HasMore {
			break
		}
		before = fmt.Sprintf("&before=%d", *h.NextBefore)
	}
	for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
		all[i], all[j] = all[j], all[i]
	}
	return all
}

// syncPage fetches one sync page.
func (e *env) syncPage(t *testing.T, as, cursor string, limit int) api.SyncResponse {
	t.Helper()
	r := e.c.Do(t, "GET", fmt.Sprintf("/v1/sync?limit=%d&cursor=%s", limit, url.QueryEscape(cursor)), e.user(t, as), nil)
	if r.Status != 200 {
		t.Fatalf("sync: %d %s", r.Status, r.Body)
	}
	var p api.SyncResponse
	r.Decode(t, &p)
	return p
}

// syncAll pages until has_more is false.
func (e *env) syncAll(t *testing.T, as, cursor string, limit int) ([]protocol.Event, string) {
	t.Helper()
	var all []protocol.Event
	for range 100000 {
		p := e.syncPage(t, as, cursor, limit)
		if len(p.Events) > limit {
			t.Fatalf("sync page of %d events, limit %d", len(p.Events), limit)
		}
		all = append(all, p.Events...)
		cursor = p.NextCursor
		if !p.HasMore {
			break
		}
	}
	return all, cursor
}

// waitPersisted waits until conv holds n messages in the store, and the
// pipeline persisted every record the log then holds: the history rows of
// a batch land concurrently with its feed and conversation rows, which the
// callers read next (sync, unread, read cursors).
func (e *env) waitPersisted(t *testing.T, conv string, n int) {
	t.Helper()
	msgtest.Eventually(t, 60*time.Second, fmt.Sprintf("%d messages persisted in %s", n, conv), func() bool {
		got := 0
		before := model.MaxSeq
		for {
			h, more, err := e.st.History(context.Background(), conv, before, store.MaxPage)
			if err != nil {
				return false
			}
			got += len(h)
			if !more {
				break
			}
			before = h[len(h)-1].Seq
		}
		return got >= n
	})
	e.waitConsumed(t)
}

// logEnd returns the sum of the end offsets of the topic's partitions.
func (e *env) logEnd(t *testing.T) int64 {
	t.Helper()
	heads := msgtest.LogEnds(t, e.cfg)
	var n int64
	for _, h := range heads {
		n += h
	}
	return n
}

// waitConsumed waits until the pipeline persisted every record the log
// holds now: a partition's persisted head is recorded only after all of a
// batch's writes (both users' rows, feeds, history) have landed.
func (e *env) waitConsumed(t *testing.T) {
	t.Helper()
	ends := msgtest.LogEnds(t, e.cfg)
	msgtest.Eventually(t, 60*time.Second, fmt.Sprintf("pipeline consumed the log up to %v", ends), func() bool {
		heads, err := e.st.PersistedHeads(context.Background())
		if err != nil || len(heads) < len(ends) {
			return false
		}
		for p, end := range ends {
			if heads[p] < end {
				return false
			}
		}
		return true
	})
}
