//go:build linux

package browser

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var npmOnce sync.Once
var npmErr error

// sdkDir is the TypeScript SDK's folder.
func sdkDir() string { return filepath.Join(root, "sdk", "ts") }

// needNode skips (fails under CI=true) without node and npm.
func needNode(t *testing.T) {
	t.Helper()
	for _, b := range []string{"node", "npm"} {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed (apt-get install nodejs npm)", b)
			}
			t.Skipf("%s not installed", b)
		}
	}
}

// npmInstall installs the SDK's npm dependencies (npm ci) unless the
// installed tree was made from the same package-lock.json: a stamp with
// the lock's hash is written after a successful install.
func npmInstall(t *testing.T) {
	t.Helper()
	needNode(t)
	npmOnce.Do(func() {
		lock, err := os.ReadFile(filepath.Join(sdkDir(), "package-lock.json"))
		if err != nil {
			npmErr = err
			return
		}
		sum := sha256.Sum256(lock)
		want := hex.EncodeToString(sum[:])
		stamp := filepath.Join(sdkDir(), "node_modules", ".imcluster-lock-sha256")
		if b, err := os.ReadFile(stamp); err == nil && string(b) == want {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = sdkDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			npmErr = &cmdError{what: "npm ci", err: err, out: string(out)}
			return
		}
		npmErr = os.WriteFile(stamp, []byte(want), 0o644)
	})
	if npmErr != nil {
		t.Fatal(npmErr)
	}
}

// run runs a command in dir with a deadline, logging its output.
func run(t *testing.T, timeout time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), &cmdError{what: name, err: err, out: string(out)}
	}
	return string(out), nil
}

type cmdError struct {
	what string
	err  error
	out  string
}

func (e *cmdError) Error() string { return e.what + ": " + e.err.Error() + "\n" + tail(e.out, 8000) }
