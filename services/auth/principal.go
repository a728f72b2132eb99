package auth

import (
	"errors"
	"fmt"

	"github.com/imcluster/imcluster/services/protocol"
)

// Headers by which a service or internal caller names the user it acts for
// and the device that caused the request (the same as protocol's).
const (
	HeaderActAs  = protocol.HeaderActAs
	HeaderDevice = protocol.HeaderDevice
)

// Principal is a verified caller.
type Principal struct {
	Kind    Kind
	Subject string
}

// Authenticator verifies tokens of every configured kind. A nil verifier
// means tokens of that kind are refused.
type Authenticator struct {
	User, Service, Internal *Verifier
}

// ErrNoToken is returned when the Authorization header carries no bearer token.
var ErrNoToken = errors.New("no bearer token")

// Authenticate verifies the bearer token of an Authorization header value.
// Each configured verifier (user, service, internal) tries the token with
// its own keys and accepts it only if the signature checks out with one of
// them and the token's kind claim is its kind. So a token signed with one
// kind's key and claiming another kind never passes; a verifier's key
// that happens to equal another kind's would (keep the key files apart).
// The error of the last verifier tried is returned.
func (a *Authenticator) Authenticate(header string) (Principal, error) {
	tok, ok := BearerToken(header)
	if !ok {
		return Principal{}, ErrNoToken
	}
	var lastErr error
	for _, v := range []*Verifier{a.User, a.Service, a.Internal} {
		if v == nil {
			continue
		}
		sub, err := v.Verify(tok)
		if err == nil {
			return Principal{Kind: v.kind, Subject: sub}, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: no verifier configured", ErrInvalidToken)
	}
	return Principal{}, lastErr
}

// ErrActAs is wrapped when a principal may not act for the named user.
var ErrActAs = errors.New("not allowed to act for this user")

// ActingUser resolves the user a request acts for. A user token acts for
// its subject only (actAs empty or equal to it). Service and internal
// tokens must name the user in actAs.
func (p Principal) ActingUser(actAs string) (string, error) {
	switch p.Kind {
	case KindUser:
		if actAs != "" && actAs != p.Subject {
			return "", fmt.Errorf("%w: user %s cannot act as %s", ErrActAs, p.Subject, actAs)
		}
		return p.Subject, nil
	case KindService, KindInternal:
		if actAs == "" {
			return "", fmt.Errorf("%w: %s tokens must name the user in %s", ErrActAs, p.Kind, HeaderActAs)
		}
		if err := ValidSubject(actAs); err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrActAs, HeaderActAs, err)
		}
		return actAs, nil
	}
	return "", fmt.Errorf("%w: unknown token kind %q", ErrActAs, p.Kind)
}
