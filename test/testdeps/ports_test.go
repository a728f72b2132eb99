package testdeps

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A port picked by one test process is not handed to another until its
// claim expires.
func TestClaimPort(t *testing.T) {
	old := portClaimDir
	portClaimDir = t.TempDir()
	t.Cleanup(func() { portClaimDir = old })

	if !claimPort(21000) {
		t.Fatal("first claim refused")
	}
	if claimPort(21000) {
		t.Fatal("second claim within the TTL granted")
	}
	if !claimPort(21001) {
		t.Fatal("another port refused")
	}
	expired := time.Now().Add(-portClaimTTL - time.Minute)
	if err := os.Chtimes(filepath.Join(portClaimDir, "21000"), expired, expired); err != nil {
		t.Fatal(err)
	}
	if !claimPort(21000) {
		t.Fatal("expired claim not taken over")
	}
	if claimPort(21000) {
		t.Fatal("taken-over claim granted again")
	}
}
