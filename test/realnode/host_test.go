package realnode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoRoot is the repository's root (go test runs in test/realnode).
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "hack", "image.sh")); err != nil {
		t.Fatalf("hack/image.sh not found under %s: %v", root, err)
	}
	return root
}

// requireHost skips t when this host cannot run a real node (or fails it
// when IMC_REALNODE=1 demands one). See doc.go.
func requireHost(t testing.TB, needs ...string) {
	t.Helper()
	switch os.Getenv("IMC_REALNODE") {
	case "0":
		t.Skip("IMC_REALNODE=0")
	}
	why := hostCannot(needs)
	if why == "" {
		return
	}
	if os.Getenv("IMC_REALNODE") == "1" {
		t.Fatalf("IMC_REALNODE=1 but this host cannot run the test: %s", why)
	}
	t.Skipf("this host cannot run a real node: %s (IMC_REALNODE=1 to demand it)", why)
}

func hostCannot(needs []string) string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if _, err := exec.LookPath("apt-get"); err == nil {
		return "" // the scripts install what is missing
	}
	for _, n := range needs {
		if _, err := exec.LookPath(n); err != nil {
			return n + " not found and no apt-get to install it"
		}
	}
	return ""
}

// run runs a command with a deadline and returns its stdout; stderr goes to
// the test log on failure.
func run(t testing.TB, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s after %s: %v\nstderr:\n%s", name, strings.Join(args, " "),
			time.Since(t0).Round(time.Millisecond), err, tail(errb.String(), 4000))
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Logf("%s %s: %s", filepath.Base(name), strings.Join(args, " "), d.Round(time.Millisecond))
	}
	return out.String(), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

var (
	imageOnce    sync.Once
	imageArchive string
	imageErr     error
)

// buildImage runs hack/image.sh once per test binary and returns the
// archive's path.
func buildImage(t testing.TB) string {
	t.Helper()
	root := repoRoot(t)
	imageOnce.Do(func() {
		archive := filepath.Join(root, ".run", "image", "imcluster-test.tar")
		_, imageErr = run(t, 20*time.Minute, []string{"IMAGE_ARCHIVE=" + archive}, "bash", filepath.Join(root, "hack", "image.sh"))
		imageArchive = archive
	})
	if imageErr != nil {
		t.Fatalf("make image: %v", imageErr)
	}
	return imageArchive
}
