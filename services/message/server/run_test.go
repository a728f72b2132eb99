package server

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
)

// The API verifies internal calls with the key the binary already read
// (shared with the router's tokens) rather than reading the file again;
// without one it reads the file.
func TestAuthenticatorInternalKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, key []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, append(key, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	userKey := bytes.Repeat([]byte("u"), 32)
	fileKey := bytes.Repeat([]byte("f"), 32)
	sharedKey := bytes.Repeat([]byte("s"), 32)
	tests := []struct {
		name      string
		file      string // cfg.InternalKeyFile
		loaded    []byte // already-read key handed to authenticator
		signWith  []byte
		wantValid bool
	}{
		{"loaded key used, file not read again", filepath.Join(dir, "gone"), sharedKey, sharedKey, true},
		{"loaded key wins over the file", write("internal", fileKey), sharedKey, fileKey, false},
		{"no loaded key: file read", write("internal2", fileKey), nil, fileKey, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Message{UserKeyFile: write("user", userKey)}
			cfg.InternalKeyFile = tc.file
			a, err := authenticator(cfg, tc.loaded)
			if err != nil {
				t.Fatalf("authenticator: %v", err)
			}
			if a.Internal == nil {
				t.Fatal("no internal verifier")
			}
			s, err := auth.NewSigner(auth.KindInternal, tc.signWith)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s.Sign("push-0", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Internal.Verify(tok); (err == nil) != tc.wantValid {
				t.Fatalf("Verify: err=%v, want valid=%v", err, tc.wantValid)
			}
		})
	}
}
