package route

import (
	"fmt"
	"sync"
	"time"

	"github.com/imcluster/imcluster/services/auth"
)

// TokenSource mints internal bearer tokens for tier-to-tier calls and reuses
// each one for half its lifetime, or until the signing keys change (a
// rotated primary key signs the next call's token at once).
type TokenSource struct {
	signer  *auth.Signer
	subject string
	ttl     time.Duration

	mu    sync.Mutex
	tok   string
	keys  *auth.KeySet // the key set tok was signed with
	renew time.Time
}

// NewTokenSource returns a source of internal tokens for subject (the node
// id) signed with key.
func NewTokenSource(key []byte, subject string) (*TokenSource, error) {
	keys, err := auth.NewKeySet(auth.Key{Secret: key})
	if err != nil {
		return nil, fmt.Errorf("while creating the internal signer: %w", err)
	}
	return NewKeyTokenSource(keys, subject)
}

// NewKeyTokenSource is NewTokenSource signing with the primary key of keys
// (an *auth.KeyFile follows the internal key file through rotation).
func NewKeyTokenSource(keys auth.KeySource, subject string) (*TokenSource, error) {
	s, err := auth.NewKeySigner(auth.KindInternal, keys)
	if err != nil {
		return nil, fmt.Errorf("while creating the internal signer: %w", err)
	}
	if err := auth.ValidSubject(subject); err != nil {
		return nil, fmt.Errorf("node id %q: %w", subject, err)
	}
	return &TokenSource{signer: s, subject: subject, ttl: time.Hour}, nil
}

// Token returns a valid internal token.
func (t *TokenSource) Token() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	keys := t.signer.KeySet()
	if t.tok != "" && now.Before(t.renew) && keys == t.keys {
		return t.tok, nil
	}
	tok, err := t.signer.Sign(t.subject, t.ttl)
	if err != nil {
		return "", fmt.Errorf("while signing an internal token: %w", err)
	}
	t.tok, t.keys, t.renew = tok, keys, now.Add(t.ttl/2)
	return tok, nil
}
