package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
)

// GroupPrefix starts every group conversation id: "g:" + group id. A group
// has one conversation, so one order (one seq space) for its messages and
// membership changes.
const GroupPrefix = "g:"

// Limits of groups (the configurable ones have their ceilings here).
const (
	MaxGroupNameLen   = 128
	MaxGroupAttrs     = 32
	MaxGroupAttrBytes = 4096 // all keys and values together
	MaxMentions       = 50
	// MaxGroupSizeCeiling bounds IM_GROUP_MAX_MEMBERS: every member's feed
	// gets a row per message (write diffusion), so a group's size bounds
	// one message's write cost.
	MaxGroupSizeCeiling = 10000
	// MaxUsersPerChange bounds the users named by one membership change.
	MaxUsersPerChange = 1000
)

// GroupConvID returns the conversation id of a group.
func GroupConvID(group string) string { return GroupPrefix + group }

// IsGroupConv reports whether conv names a group conversation.
func IsGroupConv(conv string) bool { return strings.HasPrefix(conv, GroupPrefix) }

// ParseGroupConv returns the group id of a group conversation id.
func ParseGroupConv(conv string) (string, error) {
	g, ok := strings.CutPrefix(conv, GroupPrefix)
	if !ok {
		return "", fmt.Errorf("conversation id %q: want g:<group>", conv)
	}
	if err := ValidGroupID(g); err != nil {
		return "", fmt.Errorf("conversation id %q: %w", conv, err)
	}
	return g, nil
}

// ValidConvID checks a 1:1 or group conversation id.
func ValidConvID(conv string) error {
	if IsGroupConv(conv) {
		_, err := ParseGroupConv(conv)
		return err
	}
	_, _, err := ParseConvID(conv)
	return err
}

// ValidGroupID checks a group id (the alphabet of user ids).
func ValidGroupID(g string) error {
	if err := auth.ValidSubject(g); err != nil {
		return fmt.Errorf("group id: %w", err)
	}
	return nil
}

// ValidMentions checks a message's mentions: at most MaxMentions distinct
// user ids or MentionAll. Whether they are members is not checked: a
// mention of a non-member flags nobody.
func ValidMentions(m []string) error {
	if len(m) > MaxMentions {
		return fmt.Errorf("at most %d mentions", MaxMentions)
	}
	seen := make(map[string]bool, len(m))
	for _, u := range m {
		if err := auth.ValidSubject(u); err != nil {
			return fmt.Errorf("mention %q: %w", u, err)
		}
		if seen[u] {
			return fmt.Errorf("mention %q twice", u)
		}
		seen[u] = true
	}
	return nil
}

// MentionsAll reports whether a body mentions every member.
func MentionsAll(b *protocol.Body) bool {
	return b != nil && slices.Contains(b.Mentions, protocol.MentionAll)
}

// ValidGroupFields checks a group's name, avatar URL and attributes.
func ValidGroupFields(name, avatar *string, attrs map[string]string) error {
	if name != nil && (*name == "" || len(*name) > MaxGroupNameLen || !utf8.ValidString(*name)) {
		return fmt.Errorf("name must be 1..%d bytes of UTF-8", MaxGroupNameLen)
	}
	if avatar != nil && (len(*avatar) > MaxURLLen || !utf8.ValidString(*avatar)) {
		return fmt.Errorf("avatar must be a URL of at most %d bytes", MaxURLLen)
	}
	if len(attrs) > MaxGroupAttrs {
		return fmt.Errorf("at most %d attrs", MaxGroupAttrs)
	}
	n := 0
	for k, v := range attrs {
		if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return errors.New("attrs: keys must be non-empty, keys and values UTF-8")
		}
		n += len(k) + len(v)
	}
	if n > MaxGroupAttrBytes {
		return fmt.Errorf("attrs: at most %d bytes", MaxGroupAttrBytes)
	}
	return nil
}

// ValidUsers checks a list of 1..max distinct user ids.
func ValidUsers(users []string, max int) error {
	if len(users) == 0 || len(users) > max {
		return fmt.Errorf("users: want 1..%d user ids", max)
	}
	seen := make(map[string]bool, len(users))
	for _, u := range users {
		if err := auth.ValidSubject(u); err != nil {
			return fmt.Errorf("user %q: %w", u, err)
		}
		if seen[u] {
			return fmt.Errorf("user %q named twice", u)
		}
		seen[u] = true
	}
	return nil
}

// validGroupChange checks a KindGroup record's change (shape only: whether
// From may make it is decided by the pipeline at the record's place in the
// log).
func validGroupChange(c *protocol.GroupChange) error {
	if c == nil {
		return errors.New("group record without change")
	}
	switch c.Op {
	case protocol.GroupCreated, protocol.GroupJoined, protocol.GroupRemoved:
		if err := ValidUsers(c.Users, MaxUsersPerChange); err != nil {
			return err
		}
	case protocol.GroupRole:
		if err := ValidUsers(c.Users, MaxUsersPerChange); err != nil {
			return err
		}
		if !c.Role.Valid() {
			return fmt.Errorf("role %q unknown", c.Role)
		}
		if c.Role == protocol.RoleOwner && len(c.Users) != 1 {
			return errors.New("ownership goes to exactly one user")
		}
	case protocol.GroupLeft, protocol.GroupDissolved:
		if len(c.Users) > 0 {
			return fmt.Errorf("%s names no users", c.Op)
		}
	case protocol.GroupUpdated:
		if c.Name == nil && c.Avatar == nil && c.Attrs == nil {
			return errors.New("update changes nothing")
		}
	default:
		return fmt.Errorf("group op %q unknown", c.Op)
	}
	if c.Op != protocol.GroupCreated && c.Op != protocol.GroupUpdated && (c.Name != nil || c.Avatar != nil || c.Attrs != nil) {
		return fmt.Errorf("%s carries group fields", c.Op)
	}
	if c.Op == protocol.GroupCreated && c.Name == nil {
		return errors.New("created needs a name")
	}
	return ValidGroupFields(c.Name, c.Avatar, c.Attrs)
}
