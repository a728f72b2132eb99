package auth

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Bounds of a key set; see ParseKeySet.
const (
	// MinKeyBytes is the shortest HMAC secret accepted (HS256: 256 bits).
	MinKeyBytes = 32
	// MaxKeys bounds the keys of one set, and so the signatures a token
	// without a kid costs to verify. Rotation needs two, three with slack.
	MaxKeys = 8
	// MaxKeyIDLen bounds a kid.
	MaxKeyIDLen = 64
	// MaxKeyFileBytes bounds a key file.
	MaxKeyFileBytes = 64 << 10
)

// ErrKeySet is wrapped by every key set or key file error.
var ErrKeySet = errors.New("invalid key set")

// Key is one HMAC signing key. ID is its kid ("" = none).
type Key struct {
	ID     string
	Secret []byte
}

// KeySet is an ordered, immutable set of HMAC keys of one kind: the first
// key (the primary) signs, every key verifies.
type KeySet struct {
	keys []Key
}

// KeySource yields the current key set. A *KeySet is a KeySource that
// never changes; a *KeyFile follows its file.
type KeySource interface {
	Keys() *KeySet
}

// Keys returns s itself: a KeySet is a static KeySource.
func (s *KeySet) Keys() *KeySet { return s }

// NewKeySet validates keys (see ParseKeySet for the rules) and returns
// them as a set; keys[0] is the primary.
func NewKeySet(keys ...Key) (*KeySet, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrKeySet)
	}
	if len(keys) > MaxKeys {
		return nil, fmt.Errorf("%w: %d keys, at most %d", ErrKeySet, len(keys), MaxKeys)
	}
	seen := make(map[string]bool, len(keys))
	bare := 0
	out := make([]Key, len(keys))
	for i, k := range keys {
		if k.ID == "" {
			bare++
		} else if err := validKeyID(k.ID); err != nil {
			return nil, fmt.Errorf("%w: key %d: %v", ErrKeySet, i+1, err)
		} else if seen[k.ID] {
			return nil, fmt.Errorf("%w: kid %q appears twice", ErrKeySet, k.ID)
		}
		seen[k.ID] = true
		if len(k.Secret) < MinKeyBytes {
			return nil, fmt.Errorf("%w: key %d (kid %q) must be at least %d bytes, got %d",
				ErrKeySet, i+1, k.ID, MinKeyBytes, len(k.Secret))
		}
		out[i] = Key{ID: k.ID, Secret: bytes.Clone(k.Secret)}
	}
	if bare > 1 {
		return nil, fmt.Errorf("%w: %d keys without a kid; give every key but one a kid "+
			"(a key wrapped over several lines must be joined into one line)", ErrKeySet, bare)
	}
	return &KeySet{keys: out}, nil
}

// ParseKeySet parses the content of a key file:
//
//   - one key per line; blank lines and lines starting with '#' are skipped,
//     spaces, tabs and '\r' around a line are trimmed;
//   - a line is "KID:SECRET" when the text before its first ':' is a valid
//     kid (1..64 of [A-Za-z0-9._-]), else the whole line is a SECRET with no
//     kid — so the single-key file of old (one secret, one line) parses as
//     one key without a kid;
//   - the SECRET is used as is (its bytes are the HMAC key, no decoding),
//     so giving an existing key a kid keeps it the same key;
//   - at least 1 and at most MaxKeys keys, each at least MinKeyBytes bytes,
//     kids unique, at most one key without a kid. The first key is the
//     primary (signs); all keys verify.
func ParseKeySet(b []byte) (*KeySet, error) {
	if len(b) > MaxKeyFileBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrKeySet, len(b), MaxKeyFileBytes)
	}
	var keys []Key
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.Trim(line, " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(keys) == MaxKeys {
			return nil, fmt.Errorf("%w: more than %d keys", ErrKeySet, MaxKeys)
		}
		k := Key{Secret: []byte(line)}
		if id, secret, ok := strings.Cut(line, ":"); ok && validKeyID(id) == nil {
			k = Key{ID: id, Secret: []byte(secret)}
		}
		keys = append(keys, k)
	}
	return NewKeySet(keys...)
}

// Primary returns the signing key.
func (s *KeySet) Primary() Key { return s.keys[0] }

// Len returns the number of keys.
func (s *KeySet) Len() int { return len(s.keys) }

// IDs returns the kids in order ("" for the key without one); safe to log.
func (s *KeySet) IDs() []string {
	ids := make([]string, len(s.keys))
	for i, k := range s.keys {
		ids[i] = k.ID
	}
	return ids
}

// Equal reports whether s and o hold the same keys in the same order.
func (s *KeySet) Equal(o *KeySet) bool {
	if s == nil || o == nil || len(s.keys) != len(o.keys) {
		return s == o
	}
	for i := range s.keys {
		if s.keys[i].ID != o.keys[i].ID || !bytes.Equal(s.keys[i].Secret, o.keys[i].Secret) {
			return false
		}
	}
	return true
}

// byID returns the key with kid id.
func (s *KeySet) byID(id string) (Key, bool) {
	for _, k := range s.keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

func validKeyID(id string) error {
	if id == "" || len(id) > MaxKeyIDLen {
		return fmt.Errorf("kid must be 1..%d bytes", MaxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return fmt.Errorf("kid contains %q; allowed: letters, digits, _ . -", c)
		}
	}
	return nil
}
