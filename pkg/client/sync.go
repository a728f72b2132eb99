package client

import (
	"context"
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
// catches up anyway, since the cursor only moves after a page is handled.
func (c *Client) syncAll() {
	if c.cfg.NoSync || c.cfg.APIURL == "" {
		return
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	pushed := c.pushedSinceSync.Load() // covered once this sync completes
	for tries := 0; tries < 5 && c.ctx.Err() == nil; {
		ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
		p, err := FetchSync(ctx, c.http, c.cfg.APIURL, c.currentToken(), c.Cursor())
		cancel()
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
			return
		}
	}
}

// SyncNow runs a sync from the cursor now (after a gap the app suspects).
func (c *Client) SyncNow() { c.syncAll() }

// requestSync asks the syncer for a sync; requests made while one runs
// are coalesced into one more run after it.
func (c *Client) requestSync() {
	select {
	case c.syncKick <- struct{}{}:
	default:
	}
}

// syncer runs the requested syncs one after the other until the client stops.
func (c *Client) syncer() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.syncKick:
			c.syncAll()
		}
	}
}
