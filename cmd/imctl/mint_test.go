package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/imcluster/imcluster/services/auth"
)

// imctl signs with the primary (first) key of a key file and names its
// kid; the old single-key file still works.
func TestMintSignsWithPrimaryKey(t *testing.T) {
	a, b := strings.Repeat("a", 32), strings.Repeat("b", 32)
	cases := []struct {
		name, file, kid string
		fails           bool
	}{
		{"old single-key file", a + "\n", "", false},
		{"rotation file", "new:" + b + "\nold:" + a + "\n", "new", false},
		{"invalid file", "short\n", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "user.key")
			if err := os.WriteFile(path, []byte(c.file), 0o600); err != nil {
				t.Fatal(err)
			}
			tok, err := mint(auth.KindUser, path, "alice", time.Minute)
			if c.fails {
				if err == nil {
					t.Fatal("minted with an invalid key file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p, _, err := jwt.NewParser().ParseUnverified(tok, &auth.Claims{})
			if err != nil {
				t.Fatal(err)
			}
			if kid, _ := p.Header["kid"].(string); kid != c.kid {
				t.Fatalf("kid %q, want %q", kid, c.kid)
			}
			primary := strings.TrimSpace(strings.SplitN(c.file, "\n", 2)[0])
			if _, s, ok := strings.Cut(primary, ":"); ok {
				primary = s
			}
			v, _ := auth.NewVerifier(auth.KindUser, []byte(primary))
			if sub, err := v.Verify(tok); err != nil || sub != "alice" {
				t.Fatalf("not signed by the primary key: %q %v", sub, err)
			}
		})
	}
}
