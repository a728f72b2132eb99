package auth

import (
	"strings"
	"testing"
	"time"
)

// Tokens come from anyone: verifying never panics, and no string but a
// token signed with the key passes — whatever is accepted carries the one
// subject ever signed with it, and the verifier's kind. Run longer:
// go test -run=^$ -fuzz=FuzzVerify ./services/auth/
func FuzzVerify(f *testing.F) {
	key := []byte(strings.Repeat("s", 32))
	sg, err := NewSigner(KindUser, key)
	if err != nil {
		f.Fatal(err)
	}
	tok, err := sg.Sign("alice", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	other, _ := NewSigner(KindService, key)
	otherTok, _ := other.Sign("crm", time.Hour)
	f.Add(tok)
	f.Add(otherTok)                // right key, wrong kind
	f.Add(tok[:len(tok)-2] + "AA") // a mangled signature
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.")
	f.Add("")
	v, err := NewVerifier(KindUser, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sub, exp, err := v.VerifyExpiry(s)
		if err != nil {
			return
		}
		if sub != "alice" || exp.IsZero() {
			t.Fatalf("accepted %q as %q (exp %v): only alice was ever signed", s, sub, exp)
		}
		if _, ok := BearerToken("Bearer " + s); !ok && s != "" {
			t.Fatalf("an accepted token does not pass as a bearer token: %q", s)
		}
	})
}
