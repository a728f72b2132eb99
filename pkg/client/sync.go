package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/imcluster/imcluster/pkg/internal/httpjson"
	"github.com/imcluster/imcluster/services/protocol"
)

// SyncPath is the message API's sync endpoint.
var SyncPath = "/v1/sync"

// SyncPage is one page of the message API's sync answer.
type SyncPage struct {
	Events     []protocol.Event `json:"events"`
	NextCursor string           `json:"next_cursor"`
	HasMore    bool             `json:"has_more"`
}

// FetchSync calls the sync endpoint once.
func FetchSync(ctx context.Context, hc *http.Client, apiURL, token, cursor string) (SyncPage, error) {
	var p SyncPage
	c := httpjson.Caller{HTTP: hc, BaseURL: apiURL, Token: token, MaxBody: 32 << 20}
	if err := c.Do(ctx, http.MethodGet, SyncPath+"?cursor="+url.QueryEscape(cursor), nil, nil, &p); err != nil {
		return SyncPage{}, fmt.Errorf("while syncing: %w", err)
	}
	return p, nil
}

// syncAll pages through sync from the cursor, handing events to deliver
// (which drops the ones push already brought) and advancing the cursor
// after each page. Errors are retried a few times; a later login or resync
// catches up anyway, since the cursor only moves after a page is handled
// (and a sync hint's sync is retried by the syncer). true once complete.
func (c *Client) syncAll() bool {
	if c.cfg.NoSync || c.cfg.APIURL == "" {
		return true
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	pushed := c.pushedSinceSync.Load() // covered once this sync completes
	resyncs := 0
	for tries := 0; tries < 5 && c.ctx.Err() == nil; {
		ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
		p, err := FetchSync(ctx, c.http, c.cfg.APIURL, c.currentToken(), c.Cursor())
		cancel()
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == protocol.ErrCursorExpired && resyncs < 3 {
			resyncs++ // bounded: a server that keeps expiring fresh cursors is an error
			c.log.Info("sync cursor expired: resyncing")
			if err = c.resync(); err == nil {
				continue // sync on from the new cursor
			}
		}
		if err != nil {
			tries++
			c.log.Warn("sync failed", "err", err)
			select {
			case <-c.ctx.Done():
			case <-time.After(time.Duration(tries) * 300 * time.Millisecond):
			}
			continue
		}
		for _, ev := range p.Events {
			c.deliver(ev, false)
		}
		c.dmu.Lock()
		if p.NextCursor != "" {
			c.cursor = p.NextCursor
		}
		c.dmu.Unlock()
		if !p.HasMore {
			c.pushedSinceSync.Add(-pushed)
			return true
		}
	}
	return false
}

// UnreadPath is the message API's unread pull endpoint.
var UnreadPath = "/v1/unread"

// UnreadPage is one page of the message API's unread pull.
type UnreadPage struct {
	Events     []protocol.Event `json:"events"`
	NextCursor string           `json:"next_cursor"`
	HasMore    bool             `json:"has_more"`
	SyncCursor string           `json:"sync_cursor"` // first page only
}

// maxResyncPages bounds one resync's unread pull (100 messages a page).
const maxResyncPages = 10_000

// resync recovers from an expired cursor (docs/protocol.md, section 5):
// it pulls every unread message, page by page, handing each to deliver
// (which drops what the device already has, by (conv_id, seq)), then takes
// the first page's sync_cursor — taken before the pull — as its cursor, so
// the sync that follows brings everything that landed meanwhile. The
// cursor moves only once the whole pull is handed on; a failed resync is
// retried by the next sync (which answers cursor_expired again).
func (c *Client) resync() error {
	var head, cursor string
	for page := 0; ; page++ {
		if page == maxResyncPages {
			return fmt.Errorf("while resyncing: more than %d unread pages", maxResyncPages)
		}
		ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
		var p UnreadPage
		hc := httpjson.Caller{HTTP: c.http, BaseURL: c.cfg.APIURL, Token: c.currentToken(), MaxBody: 32 << 20}
		err := hc.Do(ctx, http.MethodGet, UnreadPath+"?cursor="+url.QueryEscape(cursor), nil, nil, &p)
		cancel()
		if err != nil {
			return fmt.Errorf("while resyncing: %w", err)
		}
		if page == 0 {
			head = p.SyncCursor
		}
		for _, ev := range p.Events {
			c.deliver(ev, false)
		}
		if !p.HasMore || p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if head == "" {
		return fmt.Errorf("while resyncing: the unread pull gave no sync_cursor")
	}
	c.dmu.Lock()
	c.cursor = head
	c.dmu.Unlock()
	c.resyncs.Add(1)
	if c.cfg.OnResync != nil {
		c.cfg.OnResync()
	}
	return nil
}

// Resyncs returns how many times the client resynced after its sync
// cursor had expired.
func (c *Client) Resyncs() int64 { return c.resyncs.Load() }

// SyncNow runs a sync from the cursor now (after a gap the app suspects).
func (c *Client) SyncNow() { c.syncAll() }

// maxHintRetry bounds the wait between retries of a sync owed to a sync
// hint.
const maxHintRetry = 30 * time.Second

// requestSync asks the syncer for a sync; requests made while one runs
// are coalesced into one more run after it.
func (c *Client) requestSync() {
	select {
	case c.syncKick <- struct{}{}:
	default:
	}
}

// syncer runs the requested syncs one after the other until the client
// stops. A sync hint is owed a complete sync that started after it: when
// the sync fails (the message tier down), nothing else would bring the
// dropped pushes before the next login, so it is retried with backoff
// (2 s doubling to 30 s) until one completes.
func (c *Client) syncer() {
	retry := 2 * time.Second
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.syncKick:
			gen := c.hintGen.Load()
			if c.syncAll() {
				for done := c.hintDone.Load(); done < gen && !c.hintDone.CompareAndSwap(done, gen); done = c.hintDone.Load() {
				}
				retry = 2 * time.Second
			} else if c.hintGen.Load() > c.hintDone.Load() && c.ctx.Err() == nil {
				time.AfterFunc(retry, c.requestSync)
				retry = min(2*retry, maxHintRetry)
			}
		}
	}
}
