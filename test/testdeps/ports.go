package testdeps

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago, for a server a test starts in another process. The port is picked
// below the kernel's ephemeral range (see freePorts): a port that listening
// on :0 hands out may become the local port of any outgoing connection of
// any process before the server binds it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePorts(t, 1)[0]))
}

// portClaimTTL is how long a picked port stays claimed for other test
// processes: long enough for the server it was picked for to bind it.
const portClaimTTL = 10 * time.Minute

// portClaimDir holds one file per port picked lately, by any test process
// of any checkout on this machine.
var portClaimDir = filepath.Join(os.TempDir(), "imcluster-test-ports")

// claimPort claims port for this process unless another one claimed it
// within portClaimTTL. A claim is a file created exclusively; an expired
// one is taken over. It claims when the directory cannot be used (the
// listen check still applies).
func claimPort(port int) bool {
	if err := os.MkdirAll(portClaimDir, 0o777); err != nil {
		return true
	}
	f := filepath.Join(portClaimDir, strconv.Itoa(port))
	for range 2 {
		h, err := os.OpenFile(f, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err == nil {
			_ = h.Close()
			return true
		}
		if !errors.Is(err, fs.ErrExist) {
			return true
		}
		st, err := os.Stat(f)
		if err != nil || time.Since(st.ModTime()) < portClaimTTL {
			return false
		}
		_ = os.Remove(f) // expired: take it over (a racing taker loses the create)
	}
	return false
}
