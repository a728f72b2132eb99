package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Kind is the kind of a token; see the package doc.
type Kind string

const (
	KindUser     Kind = "user"
	KindService  Kind = "service"
	KindInternal Kind = "internal"
)

// Issuer is the iss claim of every imcluster token.
const Issuer = "imcluster"

// MaxSubjectLen bounds user and service ids.
const MaxSubjectLen = 64

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// Claims are the claims imcluster reads.
type Claims struct {
	Kind Kind `json:"knd"`
	jwt.RegisteredClaims
}

// Signer mints tokens of one kind with the primary key of its key source,
// naming that key in the kid header when it has an id.
type Signer struct {
	kind Kind
	keys KeySource
}

// NewSigner returns a Signer for kind with one HMAC key (≥ 32 bytes) and
// no kid.
func NewSigner(kind Kind, key []byte) (*Signer, error) {
	ks, err := NewKeySet(Key{Secret: key})
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", kind, err)
	}
	return &Signer{kind: kind, keys: ks}, nil
}

// NewKeySigner returns a Signer for kind that signs with the primary key
// of keys as it is at each Sign (a *KeyFile follows key rotation).
func NewKeySigner(kind Kind, keys KeySource) (*Signer, error) {
	if keys == nil || keys.Keys() == nil {
		return nil, fmt.Errorf("%s signer: no keys", kind)
	}
	return &Signer{kind: kind, keys: keys}, nil
}

// KeySet returns the key set Sign currently uses; callers that cache
// tokens re-sign when it changes.
func (s *Signer) KeySet() *KeySet { return s.keys.Keys() }

// Sign returns a token for subject valid for ttl.
func (s *Signer) Sign(subject string, ttl time.Duration) (string, error) {
	if err := ValidSubject(subject); err != nil {
		return "", err
	}
	now := time.Now()
	c := Claims{Kind: s.kind, RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    Issuer,
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Second)),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	k := s.keys.Keys().Primary()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	if k.ID != "" {
		t.Header["kid"] = k.ID
	}
	return t.SignedString(k.Secret)
}

// Verifier checks tokens of one kind against every key of its key source:
// a token with a kid header is checked with that key only (an unknown kid
// with the key without kid if the set has one, else it is refused), a token
// without kid with each key in turn (at most MaxKeys).
type Verifier struct {
	kind   Kind
	keys   KeySource
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for kind with one HMAC key (≥ 32 bytes).
func NewVerifier(kind Kind, key []byte) (*Verifier, error) {
	ks, err := NewKeySet(Key{Secret: key})
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", kind, err)
	}
	return NewKeyVerifier(kind, ks)
}

// NewKeyVerifier returns a Verifier for kind that accepts any key of keys
// as it is at each Verify (a *KeyFile follows key rotation).
func NewKeyVerifier(kind Kind, keys KeySource) (*Verifier, error) {
	if keys == nil || keys.Keys() == nil {
		return nil, fmt.Errorf("%s verifier: no keys", kind)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(Issuer),
		jwt.WithLeeway(5*time.Second),
	)
	return &Verifier{kind: kind, keys: keys, parser: p}, nil
}

// keyFunc picks the keys a token may be signed with from one snapshot of
// the key set.
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	ks := v.keys.Keys()
	if raw, ok := t.Header["kid"]; ok {
		id, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("kid header is not a string")
		}
		k, ok := ks.byID(id)
		if !ok {
			// The key without kid, if any: a token's kid may name a key
			// this set knows by its secret only (a key given a kid in the
			// signer's file before this one reloaded).
			if k, ok = ks.byID(""); !ok {
				return nil, fmt.Errorf("unknown kid %q", id)
			}
		}
		return k.Secret, nil
	}
	if ks.Len() == 1 {
		return ks.Primary().Secret, nil
	}
	set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, ks.Len())}
	for i, k := range ks.keys {
		set.Keys[i] = k.Secret
	}
	return set, nil
}

// Verify returns the token's subject, or an error wrapping ErrInvalidToken.
func (v *Verifier) Verify(token string) (string, error) {
	sub, _, err := v.VerifyExpiry(token)
	return sub, err
}

// VerifyExpiry is Verify that also returns the token's expiry (exp; every
// valid token has one), for sessions that must end when their token does.
func (v *Verifier) VerifyExpiry(token string) (string, time.Time, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, v.keyFunc)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if c.Kind != v.kind {
		return "", time.Time{}, fmt.Errorf("%w: kind %q, want %q", ErrInvalidToken, c.Kind, v.kind)
	}
	if err := ValidSubject(c.Subject); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return c.Subject, c.ExpiresAt.Time, nil
}

// BearerToken extracts the token of an "Authorization: Bearer X" header.
func BearerToken(header string) (string, bool) {
	const prefix = "Bearer "
	if len(header) <= len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(header[len(prefix):]), true
}

// ValidSubject reports whether s is an acceptable user or service id:
// 1..64 bytes of [A-Za-z0-9_.@-]. Ids end up in conversation ids and etcd
// keys, so the alphabet excludes ':' and '/'.
func ValidSubject(s string) error {
	if s == "" || len(s) > MaxSubjectLen {
		return fmt.Errorf("id must be 1..%d bytes", MaxSubjectLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == '@' || c == '-'
		if !ok {
			return fmt.Errorf("id contains %q; allowed: letters, digits, _ . @ -", c)
		}
	}
	return nil
}
