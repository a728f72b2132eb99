package model

import (
	"fmt"
	"strings"

	"github.com/imcluster/imcluster/services/auth"
)

// PrivatePrefix starts every 1:1 conversation id.
const PrivatePrefix = "p:"

// ConvID returns the 1:1 conversation id of users a and b: "p:" plus the two
// ids sorted and joined by ':'. Ids cannot contain ':' (auth.ValidSubject),
// so the id is unambiguous and both sides derive the same one.
func ConvID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return PrivatePrefix + a + ":" + b
}

// ParseConvID returns the two participants of a 1:1 conversation id.
func ParseConvID(id string) (string, string, error) {
	rest, ok := strings.CutPrefix(id, PrivatePrefix)
	if !ok {
		return "", "", fmt.Errorf("conversation id %q: want p:<user>:<user>", id)
	}
	a, b, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", fmt.Errorf("conversation id %q: want p:<user>:<user>", id)
	}
	if err := auth.ValidSubject(a); err != nil {
		return "", "", fmt.Errorf("conversation id %q: %w", id, err)
	}
	if err := auth.ValidSubject(b); err != nil {
		return "", "", fmt.Errorf("conversation id %q: %w", id, err)
	}
	if a >= b {
		return "", "", fmt.Errorf("conversation id %q: participants must be distinct and sorted", id)
	}
	return a, b, nil
}

// Peer returns the other participant of conv for user, and whether user
// takes part in conv at all.
func Peer(conv, user string) (string, bool) {
	a, b, err := ParseConvID(conv)
	if err != nil {
		return "", false
	}
	switch user {
	case a:
		return b, true
	case b:
		return a, true
	}
	return "", false
}
