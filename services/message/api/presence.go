package api

import (
	"errors"
	"net/http"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
)

// Terminal is one online device of a user (defined in package protocol,
// shared with pkg/sdk).
type Terminal = protocol.Terminal

// PresenceResponse answers GET /v1/presence/{user} (defined in package protocol).
type PresenceResponse = protocol.PresenceResponse

// OnlineRequest is the body of POST /v1/presence/online (defined in package protocol).
type OnlineRequest = protocol.OnlineRequest

// OnlineResponse lists which of the asked users are online (defined in package protocol).
type OnlineResponse = protocol.OnlineResponse

func (s *Server) presenceCaller(r *http.Request) *apiError {
	c, e := s.authenticate(r, false)
	if e != nil {
		return e
	}
	if c.p.Kind != auth.KindService && c.p.Kind != auth.KindInternal {
		return errf(http.StatusForbidden, protocol.ErrForbidden, "presence queries need a service token")
	}
	if s.Presence == nil {
		return unavailable(errors.New("presence directory not configured"))
	}
	return nil
}

func (s *Server) presenceOne(w http.ResponseWriter, r *http.Request) *apiError {
	if e := s.presenceCaller(r); e != nil {
		return e
	}
	user := r.PathValue("user")
	if err := auth.ValidSubject(user); err != nil {
		return badRequest(protocol.ErrInvalidField, "user: "+err.Error())
	}
	resp := PresenceResponse{UserID: user, Terminals: []Terminal{}}
	for _, sess := range s.Presence.Sessions(user) {
		resp.Terminals = append(resp.Terminals, Terminal{DeviceID: sess.DeviceID, Terminal: sess.Terminal, SinceMs: sess.SinceMs})
	}
	resp.Online = len(resp.Terminals) > 0
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// presenceList authenticates a presence query about many users and reads
// its body, {"users": [...]}: 1..maxPresenceList user ids.
func (s *Server) presenceList(r *http.Request, users *[]string) *apiError {
	if e := s.presenceCaller(r); e != nil {
		return e
	}
	var req struct {
		Users []string `json:"users"`
	}
	if e := readJSON(r, maxPresenceList*80, &req); e != nil {
		return e
	}
	if len(req.Users) == 0 {
		return badRequest(protocol.ErrMissingField, "users is required")
	}
	if len(req.Users) > maxPresenceList {
		return errf(http.StatusRequestEntityTooLarge, protocol.ErrTooLarge, "at most 1000 users")
	}
	*users = req.Users
	return nil
}

func (s *Server) presenceMany(w http.ResponseWriter, r *http.Request) *apiError {
	var req OnlineRequest
	if e := s.presenceList(r, &req.Users); e != nil {
		return e
	}
	resp := OnlineResponse{Online: []string{}}
	seen := map[string]bool{}
	for _, u := range req.Users {
		if err := auth.ValidSubject(u); err != nil {
			return badRequest(protocol.ErrInvalidField, "users: "+err.Error())
		}
		if !seen[u] && len(s.Presence.Sessions(u)) > 0 {
			resp.Online = append(resp.Online, u)
		}
		seen[u] = true
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
