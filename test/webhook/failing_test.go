//go:build linux

package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/webhook"
	"github.com/imcluster/imcluster/test/testdeps"
)

// TestReceiverFailsForAWhile: while the receiver answers 503, messages are
// still pushed at once (the webhook group is not the pipeline's); the
// message process dies meanwhile and another takes over; once the
// receiver is back every after_send arrives (nothing lost). An event the
// receiver refuses for good (400) goes to the dead-letter topic.
func TestReceiverFailsForAWhile(t *testing.T) {
	c := newCluster(t)
	r := newReceiver(t, c.secret)
	r.setFailing(true)
	msg := c.startMessage("message-1", true, config.EnvWebhookURL+"="+r.srv.URL+"/events",
		config.EnvWebhookEvents+"=after_send", config.EnvWebhookTimeout+"=1s", config.EnvWebhookMaxAttempts+"=1000")
	push := c.startPush("push-1", msg)
	bob := c.connect(msg, push, "bob", "bob-phone")
	eventually(t, "bob online", 10*time.Second, func() bool { return c.sessions("bob") == 1 })

	// IM_WEBHOOK_DOWN (a duration) keeps the receiver down that long while
	// a message goes out every 200 ms (docs/benchmarks.md: 60s).
	down, _ := time.ParseDuration(os.Getenv("IM_WEBHOOK_DOWN"))
	const n = 20
	var ids []string
	var worst time.Duration
	start := time.Now()
	for i := 0; i < n || time.Since(start) < down; i++ {
		if down > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		t0 := time.Now()
		res, err := c.send(msg, "alice", "bob", protocol.TypeText, &protocol.Body{Text: fmt.Sprintf("while down %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.MsgID+":after_send")
		// Pushed promptly although every webhook delivery fails.
		eventually(t, fmt.Sprintf("bob gets message %d pushed", i), 5*time.Second, func() bool {
			_, pushed, ok := bob.event(func(e protocol.Event) bool { return e.Message != nil && e.Message.MsgID == res.MsgID })
			return ok && pushed
		})
		worst = max(worst, time.Since(t0))
	}
	t.Logf("receiver down %v: %d messages sent and pushed, slowest send-to-push %v", time.Since(start).Round(time.Second), len(ids), worst)
	// The dispatcher keeps trying meanwhile.
	eventually(t, "retries of the first event", 20*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.attempts[ids[0]] >= 3
	})
	r.mu.Lock()
	if len(r.accepted) != 0 {
		r.mu.Unlock()
		t.Fatal("events accepted while the receiver was failing")
	}
	r.mu.Unlock()

	// The message process dies on its stuck first batch, uncommitted; the
	// one that takes over delivers it (the group's start was pinned when
	// it was created, so it does not start at the then log end).
	_ = msg.cmd.Process.Signal(syscall.SIGKILL)
	<-msg.done
	msg = c.startMessage("message-2", true, config.EnvWebhookURL+"="+r.srv.URL+"/events",
		config.EnvWebhookEvents+"=after_send", config.EnvWebhookTimeout+"=1s", config.EnvWebhookMaxAttempts+"=1000")
	for i := range 3 {
		res, err := c.send(msg, "alice", "bob", protocol.TypeText, &protocol.Body{Text: fmt.Sprintf("after the crash %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.MsgID+":after_send")
	}
	eventually(t, "the new process retries the stuck event", 60*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.attempts[ids[0]] >= 5
	})
	r.setFailing(false)
	t0 := time.Now()
	r.await(t, 90*time.Second, ids...)
	t.Logf("receiver back: all %d after_send events accepted %v later", len(ids), time.Since(t0).Round(time.Millisecond))

	// A permanent refusal: dead-lettered at once, the next event flows.
	cm := testdeps.Unique("c")
	dead := model.MessageID("alice", cm) + ":after_send"
	r.mu.Lock()
	r.permanent[dead] = true
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.api(msg, "alice", "alice-dev").Send(ctx, sendReq("bob", cm, "refused for good")); err != nil {
		t.Fatal(err)
	}
	res, err := c.send(msg, "alice", "bob", protocol.TypeText, &protocol.Body{Text: "after the dead letter"})
	if err != nil {
		t.Fatal(err)
	}
	r.await(t, 30*time.Second, res.MsgID+":after_send")
	dl := awaitDeadLetter(t, c, dead, 30*time.Second)
	if dl.Attempts != 1 {
		t.Fatalf("dead letter after %d attempts, want 1 (400 is permanent)", dl.Attempts)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.badSigs != 0 {
		t.Fatalf("%d deliveries failed signature verification", r.badSigs)
	}
}

func sendReq(to, clientMsgID, text string) protocol.SendRequest {
	return protocol.SendRequest{To: to, ClientMsgID: clientMsgID, Type: protocol.TypeText, Body: &protocol.Body{Text: text}, Attempt: 1}
}

// awaitDeadLetter reads the webhook dead-letter topic until a record with
// key id appears.
func awaitDeadLetter(t *testing.T, c *cluster, id string, timeout time.Duration) webhook.DeadLetter {
	t.Helper()
	cons, err := sarama.NewConsumer(c.cfg.Kafka.Brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	topic := webhook.DeadLetterTopic(c.cfg.Kafka.Topic)
	parts, err := cons.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	found := make(chan webhook.DeadLetter, 1)
	for _, p := range parts {
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				if string(m.Key) == id {
					var dl webhook.DeadLetter
					_ = json.Unmarshal(m.Value, &dl)
					select {
					case found <- dl:
					default:
					}
				}
			}
		}()
	}
	select {
	case dl := <-found:
		return dl
	case <-time.After(timeout):
		t.Fatalf("no dead letter %s within %v", id, timeout)
	}
	return webhook.DeadLetter{}
}
