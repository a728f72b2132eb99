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
			var loaded auth.KeySource
			if tc.loaded != nil {
				ks, err := auth.NewKeySet(auth.Key{Secret: tc.loaded})
				if err != nil {
					t.Fatal(err)
				}
				loaded = ks
			}
			a, _, err := authenticator(cfg, loaded)
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

// The key files authenticator loads are returned for watching, and a
// reload of one changes what its verifier accepts (no restart).
func TestAuthenticatorFollowsKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldKey, newKey := bytes.Repeat([]byte("o"), 32), bytes.Repeat([]byte("n"), 32)
	cfg := config.Message{UserKeyFile: write("user", string(oldKey)+"\n"),
		ServiceKeyFile: write("service", string(oldKey)+"\n")}
	cfg.InternalKeyFile = write("internal", string(oldKey)+"\n")
	a, files, err := authenticator(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("%d key files to watch, want 3", len(files))
	}
	signer, _ := auth.NewKeySigner(auth.KindUser, mustKeySet(t, "new:"+string(newKey)))
	tok, _ := signer.Sign("alice", time.Minute)
	if _, err := a.User.Verify(tok); err == nil {
		t.Fatal("token of a key not in the file accepted")
	}
	write("user", string(oldKey)+"\nnew:"+string(newKey)+"\n")
	for _, f := range files {
		if _, err := f.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.User.Verify(tok); err != nil {
		t.Fatalf("token of the added key refused after reload: %v", err)
	}
}

func mustKeySet(t *testing.T, file string) *auth.KeySet {
	t.Helper()
	ks, err := auth.ParseKeySet([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}
