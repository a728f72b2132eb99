package sdk

import (
	"context"
	"net/http"
)

// PathPresenceTerminals is the batch presence endpoint: POST
// {"users":[...]} (at most MaxOnlineBatch users).
const PathPresenceTerminals = "/v1/presence/terminals"

// MaxOnlineBatch is the most users one OnlineTerminalsOf call may ask for.
const MaxOnlineBatch = 1000

type terminalsRequest struct {
	Users []string `json:"users"`
}

type terminalsResponse struct {
	Users map[string][]Terminal `json:"users"`
}

// OnlineTerminalsOf returns, for each of users that is online, its live
// terminals (the seed SDK's getOnlineTerminal(List)); offline users are
// absent from the map. At most MaxOnlineBatch users per call. The answer
// comes from the message tier's watch-fed presence cache and may lag etcd
// by the watch delay.
func (c *Client) OnlineTerminalsOf(ctx context.Context, users []string) (map[string][]Terminal, error) {
	var out terminalsResponse
	if err := c.do(ctx, http.MethodPost, PathPresenceTerminals, nil, terminalsRequest{Users: users}, &out); err != nil {
		return nil, err
	}
	if out.Users == nil {
		out.Users = map[string][]Terminal{}
	}
	return out.Users, nil
}
