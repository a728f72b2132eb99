package testdeps

import (
	"net"
	"strconv"
	"testing"
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
