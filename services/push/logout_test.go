package push_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/presence"
)

// countingPresence records how many Logouts run at once.
type countingPresence struct {
	mu        sync.Mutex
	now, most int
	loggedOut int
}

func (p *countingPresence) Login(context.Context, presence.Session) (*presence.Session, error) {
	return nil, nil
}

func (p *countingPresence) Logout(context.Context, presence.Session) error {
	p.mu.Lock()
	p.now++
	p.most = max(p.most, p.now)
	p.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // an etcd transaction
	p.mu.Lock()
	p.now--
	p.loggedOut++
	p.mu.Unlock()
	return nil
}

// TestMassDisconnectLogoutsAreBounded: many connections dropping at once
// are all logged out of presence, a bounded number at a time.
func TestMassDisconnectLogoutsAreBounded(t *testing.T) {
	pres := &countingPresence{}
	_, url := bareNode(t, "http://127.0.0.1:1", pres, nil)
	const n = 120
	conns := make([]rawConn, n)
	for i := range conns {
		conns[i] = dialRaw(t, url)
		loginWith(t, conns[i], userToken(t, fmt.Sprint("yan", i)), "d")
	}
	for _, r := range conns {
		_ = r.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pres.mu.Lock()
		done, most := pres.loggedOut, pres.most
		pres.mu.Unlock()
		if done == n {
			if most > 16 {
				t.Fatalf("%d logouts ran at once, want at most 16", most)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sessions logged out", done, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
