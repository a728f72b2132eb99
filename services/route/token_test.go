package route

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/imcluster/imcluster/services/auth"
)

// TestTokenSourceFollowsKeyRotation: a cached token is reused while the
// keys stay, and re-signed with the new primary key as soon as they change.
func TestTokenSourceFollowsKeyRotation(t *testing.T) {
	oldKey, newKey := strings.Repeat("o", 32), strings.Repeat("n", 32)
	path := filepath.Join(t.TempDir(), "internal")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("old:" + oldKey + "\nnew:" + newKey + "\n")
	f, err := auth.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := NewKeyTokenSource(f, "msg-1")
	if err != nil {
		t.Fatal(err)
	}
	kid := func(tok string) any {
		t.Helper()
		p, _, err := jwt.NewParser().ParseUnverified(tok, &auth.Claims{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Header["kid"]
	}
	first, _ := ts.Token()
	if again, _ := ts.Token(); again != first || kid(first) != "old" {
		t.Fatalf("tokens %q then %q (kid %v): want one cached token signed by old", first, again, kid(first))
	}
	write("new:" + newKey + "\nold:" + oldKey + "\n")
	if _, err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	rotated, _ := ts.Token()
	if rotated == first || kid(rotated) != "new" {
		t.Fatalf("after rotation: kid %v, same token %v", kid(rotated), rotated == first)
	}
	v, _ := auth.NewKeyVerifier(auth.KindInternal, f)
	if sub, err := v.Verify(rotated); err != nil || sub != "msg-1" {
		t.Fatalf("rotated token: %q %v", sub, err)
	}
}
