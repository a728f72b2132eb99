package api

import (
	"net/http"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
)

// TerminalsRequest is the body of POST /v1/presence/terminals: the users
// whose online terminals are wanted (at most 1000).
type TerminalsRequest struct {
	Users []string `json:"users"`
}

// TerminalsResponse maps each asked user that is online to its live
// terminals; offline users are absent (the batch form of GET
// /v1/presence/{user}, the seed SDK's getOnlineTerminal(List)).
type TerminalsResponse struct {
	Users map[string][]protocol.Terminal `json:"users"`
}

// presenceTerminals answers POST /v1/presence/terminals (service or
// internal token only) from the watch-fed presence cache: no etcd read.
func (s *Server) presenceTerminals(w http.ResponseWriter, r *http.Request) *apiError {
	var req TerminalsRequest
	if e := s.presenceList(r, &req.Users); e != nil {
		return e
	}
	resp := TerminalsResponse{Users: map[string][]protocol.Terminal{}}
	for _, u := range req.Users {
		if err := auth.ValidSubject(u); err != nil {
			return badRequest(protocol.ErrInvalidField, "users: "+err.Error())
		}
		if _, done := resp.Users[u]; done {
			continue
		}
		for _, sess := range s.Presence.Sessions(u) {
			resp.Users[u] = append(resp.Users[u], protocol.Terminal{DeviceID: sess.DeviceID, Terminal: sess.Terminal, SinceMs: sess.SinceMs})
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
