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

// Signer mints tokens of one kind.
type Signer struct {
	kind Kind
	key  []byte
}

// NewSigner returns a Signer for kind with the given HMAC key (≥ 32 bytes).
func NewSigner(kind Kind, key []byte) (*Signer, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("%s key must be at least 32 bytes, got %d", kind, len(key))
	}
	return &Signer{kind: kind, key: key}, nil
}

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
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
}

// Verifier checks tokens of one kind.
type Verifier struct {
	kind   Kind
	key    []byte
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for kind with the given HMAC key.
func NewVerifier(kind Kind, key []byte) (*Verifier, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("%s key must be at least 32 bytes, got %d", kind, len(key))
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(Issuer),
		jwt.WithLeeway(5*time.Second),
	)
	return &Verifier{kind: kind, key: key, parser: p}, nil
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
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil })
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
