package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// caller is the verified identity of a request.
type caller struct {
	p      auth.Principal
	user   string // the user acted for ("" for endpoints without one)
	device string
}

// authenticate verifies the token and, when needUser, resolves the user the
// request acts for and the causing device.
func (s *Server) authenticate(r *http.Request, needUser bool) (caller, *apiError) {
	p, err := s.Auth.Authenticate(r.Header.Get("Authorization"))
	if err != nil {
		return caller{}, errf(http.StatusUnauthorized, protocol.ErrUnauthenticated, err.Error())
	}
	c := caller{p: p}
	if !needUser {
		return c, nil
	}
	c.user, err = p.ActingUser(r.Header.Get(auth.HeaderActAs))
	if err != nil {
		return caller{}, errf(http.StatusForbidden, protocol.ErrForbidden, err.Error())
	}
	if d := r.Header.Get(auth.HeaderDevice); d != "" {
		if err := model.ValidDeviceID(d); err != nil {
			return caller{}, badRequest(protocol.ErrInvalidField, auth.HeaderDevice+": "+err.Error())
		}
		c.device = d
	}
	return c, nil
}

// readJSON reads at most limit bytes of JSON into dst, strictly: valid
// UTF-8, one value, no unknown fields.
func readJSON(r *http.Request, limit int, dst any) *apiError {
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return badRequest(protocol.ErrBadJSON, "while reading body: "+err.Error())
	}
	if len(b) > limit {
		return errf(http.StatusRequestEntityTooLarge, protocol.ErrTooLarge, fmt.Sprintf("body over %d bytes", limit))
	}
	if !utf8.Valid(b) {
		return badRequest(protocol.ErrInvalidUTF8, "body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return badRequest(protocol.ErrUnknownField, err.Error())
		case errors.As(err, &typeErr):
			return badRequest(protocol.ErrInvalidField, fmt.Sprintf("field %s: want %s", typeErr.Field, typeErr.Type))
		default:
			return badRequest(protocol.ErrBadJSON, err.Error())
		}
	}
	if dec.More() {
		return badRequest(protocol.ErrBadJSON, "trailing data after the JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest(protocol.ErrBadJSON, "trailing data after the JSON value")
	}
	return nil
}

// authConversation authenticates a user request and checks that the user
// takes part in the path's conversation (for a group: is a member now).
func (s *Server) authConversation(r *http.Request) (caller, string, *apiError) {
	c, e := s.authenticate(r, true)
	if e != nil {
		return caller{}, "", e
	}
	conv := r.PathValue("conv")
	if model.IsGroupConv(conv) {
		_, e = s.groupConversation(r.Context(), conv, c.user)
		return c, conv, e
	}
	conv, e = conversation(conv, c.user)
	return c, conv, e
}

// conversation checks that user takes part in the 1:1 conversation conv.
func conversation(conv, user string) (string, *apiError) {
	if _, _, err := model.ParseConvID(conv); err != nil {
		return "", badRequest(protocol.ErrInvalidField, err.Error())
	}
	if _, ok := model.Peer(conv, user); !ok {
		return "", errf(http.StatusForbidden, protocol.ErrForbidden, "not a participant of this conversation")
	}
	return conv, nil
}

// queryInt reads an optional integer query parameter within [lo, hi].
func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, *apiError) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, badRequest(protocol.ErrInvalidField, fmt.Sprintf("%s must be an integer in [%d, %d]", name, lo, hi))
	}
	return n, nil
}
