package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/imcluster/imcluster/services/protocol"
)

// TokenFunc returns a user token that is valid now (Config.TokenSource).
type TokenFunc func(ctx context.Context) (string, error)

// loginToken returns the token for the next login: a fresh one from the
// token source when there is one, else the configured token.
func (c *Client) loginToken() (string, error) {
	if c.cfg.TokenSource == nil {
		return c.cfg.Token, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	tok, err := c.cfg.TokenSource(ctx)
	if err != nil {
		return "", fmt.Errorf("while getting a token: %w", err)
	}
	c.token.Store(tok)
	return tok, nil
}

// currentToken is the last token the client got (for sync calls).
func (c *Client) currentToken() string {
	if t, _ := c.token.Load().(string); t != "" {
		return t
	}
	return c.cfg.Token
}

// minRefreshDelay keeps a token source that hands out the same token from
// making the client refresh in a tight loop.
const minRefreshDelay = time.Second

// refreshMargin is the least time before expiry a refresh is sent at,
// when the token lives long enough for it.
const refreshMargin = 30 * time.Second

// refreshDelay is when to refresh a token expiring at expMs: after four
// fifths of its remaining life (12 minutes early for an hour's token), and
// at least refreshMargin before expiry — for very short tokens, after
// minRefreshDelay, or halfway to the expiry when that comes sooner (exp has
// whole-second precision: a "2 s" token may have barely more than a second
// left at the welcome, and a refresh a second later would come too late).
// Negative: never (no token source, or no expiry known).
func (c *Client) refreshDelay(expMs int64) time.Duration {
	if c.cfg.TokenSource == nil || expMs <= 0 {
		return -1
	}
	left := time.Until(time.UnixMilli(expMs))
	floor := minRefreshDelay
	if left > 0 {
		floor = min(floor, max(left/2, minShortRefreshDelay))
	}
	return max(min(left*4/5, left-refreshMargin), floor)
}

// minShortRefreshDelay bounds how often a token about to expire is
// refreshed (halving delays toward its expiry).
const minShortRefreshDelay = 10 * time.Millisecond

// refreshToken gets a fresh token and sends it on the live session in a
// refresh frame; the node answers refreshed with the new expiry. It runs
// on its own goroutine, so a slow token source never delays heartbeats.
func (c *Client) refreshToken() {
	tok, err := c.loginToken()
	if err == nil {
		err = c.write(protocol.ClientFrame{Type: protocol.FrameRefresh, Token: tok})
	}
	if err != nil {
		c.log.Warn("token refresh failed; retrying", "err", err)
	}
}

// refreshed records the expiry a welcome or refreshed frame announced and
// tells the session's background loop to reschedule the next refresh.
func (c *Client) refreshed(expMs int64, ch chan int64) {
	c.expiresAt.Store(expMs)
	select {
	case <-ch:
	default:
	}
	ch <- expMs
}

// expiredWait is the pause before reconnecting after token_expired: short,
// and random so devices whose tokens expired together do not all log in at
// the same moment.
func expiredWait() time.Duration { return rand.N(500 * time.Millisecond) }

// ExpiresAt is when the current session's token expires (zero when not
// known: not connected yet).
func (c *Client) ExpiresAt() time.Time {
	if ms := c.expiresAt.Load(); ms > 0 {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}
