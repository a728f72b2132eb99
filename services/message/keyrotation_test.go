package message_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
)

// Key rotation through the API of a running message tier, without a
// restart: a token of a newly added key is refused until the key file
// changes, then accepted; dropping the old key refuses the old tokens.
func TestUserKeyRotationWithoutRestart(t *testing.T) {
	e := newEnv(t, 1)
	e.proc = msgtest.Start(t, e.cfg, server.RoleAPI, e.router, func(o *server.Options) {
		o.KeyReloadInterval = 20 * time.Millisecond
	})
	e.c = msgtest.Client{URL: e.proc.URL}

	oldFile, err := os.ReadFile(e.cfg.UserKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	oldSecret := strings.TrimSpace(string(oldFile))
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	newLine := "2026-12:" + hex.EncodeToString(raw)
	newKeys, err := auth.ParseKeySet([]byte(newLine))
	if err != nil {
		t.Fatal(err)
	}
	newSigner, _ := auth.NewKeySigner(auth.KindUser, newKeys)
	oldTok, newTok := e.user(t, "alice"), msgtest.Token(t, newSigner, "alice")

	// rewrite replaces the key file atomically, as a Secret volume update does.
	rewrite := func(content string) {
		t.Helper()
		tmp := filepath.Join(filepath.Dir(e.cfg.UserKeyFile), ".user.tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, e.cfg.UserKeyFile); err != nil {
			t.Fatal(err)
		}
	}
	path := "/v1/conversations/" + model.ConvID("alice", "bob") + "/messages?limit=1"
	status := func(tok string) int { return e.c.Do(t, "GET", path, tok, nil).Status }

	if s := status(oldTok); s != 200 {
		t.Fatalf("old token before rotation: %d", s)
	}
	if s := status(newTok); s != 401 {
		t.Fatalf("token of a key not yet added: %d, want 401", s)
	}
	rewrite(oldSecret + "\n" + newLine + "\n") // 1. add the new key second
	msgtest.Eventually(t, 10*time.Second, "new key accepted", func() bool { return status(newTok) == 200 })
	if s := status(oldTok); s != 200 {
		t.Fatalf("old token while its key is still in the file: %d", s)
	}
	rewrite(newLine + "\n") // 3./4. the new key alone
	msgtest.Eventually(t, 10*time.Second, "old key dropped", func() bool { return status(oldTok) == 401 })
	if s := status(newTok); s != 200 {
		t.Fatalf("new token after the old key was dropped: %d", s)
	}
}
