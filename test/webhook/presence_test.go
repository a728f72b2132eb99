//go:build linux

package webhook

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/webhook"
)

// TestPresenceLeaderHandover: two message processes run dispatchers; the
// one leading the presence watch is killed, a user logs in before the
// other takes the lead (the dead one's etcd lease must expire first), and
// the new leader still reports the login: it resumes from the revision
// the old one saved instead of from the state it finds.
func TestPresenceLeaderHandover(t *testing.T) {
	c := newCluster(t)
	r := newReceiver(t, c.secret)
	hook := []string{config.EnvWebhookURL + "=" + r.srv.URL + "/events", config.EnvWebhookEvents + "=user_online,user_offline"}
	m1 := c.startMessage("message-1", true, hook...)
	m2 := c.startMessage("message-2", true, hook...)
	push := c.startPush("push-1", m1)
	leader := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := c.etcd.Get(ctx, c.cfg.EtcdPrefix+"/webhook/presence-leader/", clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
		if err != nil || len(resp.Kvs) == 0 {
			return ""
		}
		return string(resp.Kvs[0].Value)
	}
	eventually(t, "a presence leader that saved its start", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := c.etcd.Get(ctx, webhook.PresenceRevKey(c.cfg.EtcdPrefix))
		return err == nil && len(resp.Kvs) == 1 && leader() != ""
	})
	c.connect(m1, push, "alice", "alice-phone")
	r.awaitType(t, 30*time.Second, config.WebhookUserOnline, "alice")

	old := leader()
	victim, survivor := m1, m2
	if old == m2.name {
		victim, survivor = m2, m1
	}
	_ = victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.done
	// bob logs in while nobody leads (the victim's lease lives ~10 s more).
	if victim == m1 {
		push = c.startPush("push-2", m2)
	}
	c.connect(survivor, push, "bob", "bob-phone")
	eventually(t, "bob's session in etcd", 10*time.Second, func() bool { return c.sessions("bob") == 1 })
	if l := leader(); l != old {
		t.Logf("leader already changed to %q before bob's login was checked (the test still holds)", l)
	}
	ev := r.awaitType(t, 60*time.Second, config.WebhookUserOnline, "bob")
	if l := leader(); l != survivor.name {
		t.Fatalf("leader %q, want %q", l, survivor.name)
	}
	if !strings.HasPrefix(ev.ID, "bob:user_online:") || ev.DeviceID != "bob-phone" {
		t.Fatalf("user_online: %s", jsonOf(ev))
	}
}
