package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "user.key")
	writeFile(t, path, secretA+"\n") // the old single-key format
	f, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		content string // "" removes the file
		changed bool
		fails   bool
		ids     []string // in use after the step
	}{
		{"unchanged", secretA + "\n", false, false, []string{""}},
		{"add a new key second", secretA + "\nk2:" + secretB + "\n", true, false, []string{"", "k2"}},
		{"comment only change", "# rotating\n" + secretA + "\nk2:" + secretB + "\n", false, false, []string{"", "k2"}},
		{"invalid file keeps last good set", "k2:short\n", false, true, []string{"", "k2"}},
		{"too many keys keeps last good set", keyLines(MaxKeys + 1), false, true, []string{"", "k2"}},
		{"missing file keeps last good set", "", false, true, []string{"", "k2"}},
		{"make the new key primary", "k2:" + secretB + "\nk1:" + secretA + "\n", true, false, []string{"k2", "k1"}},
		{"drop the old key", "k2:" + secretB + "\n", true, false, []string{"k2"}},
	}
	for _, s := range steps {
		if s.content == "" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		} else {
			writeFile(t, path, s.content)
		}
		changed, err := f.Reload()
		if changed != s.changed || (err != nil) != s.fails {
			t.Fatalf("%s: changed %v err %v; want changed %v, failing %v", s.name, changed, err, s.changed, s.fails)
		}
		if (f.Err() != nil) != s.fails {
			t.Fatalf("%s: Err() = %v", s.name, f.Err())
		}
		if got := f.Keys().IDs(); !slices.Equal(got, s.ids) {
			t.Fatalf("%s: kids %q, want %q", s.name, got, s.ids)
		}
	}
}

func TestLoadKeyFileRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "short"), "short\n")
	for _, p := range []string{"", filepath.Join(dir, "missing"), filepath.Join(dir, "short")} {
		if _, err := LoadKeyFile(p); err == nil {
			t.Errorf("%q: loaded", p)
		}
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "short")); !errors.Is(err, ErrKeySet) {
		t.Errorf("short key: %v does not wrap ErrKeySet", err)
	}
}

// secretVolume lays out dir as the kubelet does a Secret volume: the file
// is a symlink through ..data to a timestamped directory, and an update
// writes a new directory and swaps ..data atomically.
type secretVolume struct {
	t   *testing.T
	dir string
	gen int
}

func (v *secretVolume) write(name, content string) {
	v.t.Helper()
	v.gen++
	ts := filepath.Join(v.dir, "..gen"+string(rune('a'+v.gen)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		v.t.Fatal(err)
	}
	writeFile(v.t, filepath.Join(ts, name), content)
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(v.dir, name)); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			v.t.Fatal(err)
		}
	}
}

// TestWatchFollowsSecretVolume runs a verifier on a watched key file and
// rotates the key the documented way through Secret-volume updates; each
// step is awaited with a deadline.
func TestWatchFollowsSecretVolume(t *testing.T) {
	vol := &secretVolume{t: t, dir: t.TempDir()}
	vol.write("user", secretA+"\n")
	f, err := LoadKeyFile(filepath.Join(vol.dir, "user"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Watch(ctx, 5*time.Millisecond, nil) }()
	t.Cleanup(func() { cancel(); <-done })

	v, _ := NewKeyVerifier(KindUser, f)
	s, _ := NewKeySigner(KindUser, f)
	oldTok, _ := s.Sign("alice", time.Minute)
	newTok, _ := mustSigner2(t, "k2:"+secretB).Sign("alice", time.Minute)
	if _, err := v.Verify(newTok); err == nil {
		t.Fatal("token of a key not yet added accepted")
	}

	await := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for: %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	accepted := func(tok string) bool { _, err := v.Verify(tok); return err == nil }

	// 1. Add the new key second: both verify, the old one still signs.
	vol.write("user", secretA+"\nk2:"+secretB+"\n")
	await("new key accepted", func() bool { return accepted(newTok) })
	if !accepted(oldTok) {
		t.Fatal("old token refused while its key is still in the file")
	}
	// 2. A broken update keeps the last good keys.
	vol.write("user", "garbage\n")
	await("reload failure noticed", func() bool { return f.Err() != nil })
	if !accepted(newTok) || !accepted(oldTok) {
		t.Fatal("a broken key file changed what is accepted")
	}
	// 3. Make the new key primary: new tokens carry its kid.
	vol.write("user", "k2:"+secretB+"\nk1:"+secretA+"\n")
	await("new key primary", func() bool { return f.Keys().Primary().ID == "k2" })
	signed, _ := s.Sign("alice", time.Minute)
	if !accepted(signed) || !accepted(oldTok) {
		t.Fatal("tokens refused after promoting the new key")
	}
	// 4. Drop the old key: its tokens are refused, new ones still pass.
	vol.write("user", "k2:"+secretB+"\n")
	await("old key dropped", func() bool { return !accepted(oldTok) })
	if !accepted(signed) {
		t.Fatal("token of the remaining key refused")
	}
}

func mustSigner2(t *testing.T, file string) *Signer {
	t.Helper()
	s, err := NewKeySigner(KindUser, mustKeySet(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
