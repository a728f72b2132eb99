package fault

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/test/testdeps"
)

func faultKafkaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_1_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Producer.Retry.Max = 3
	cfg.Producer.Retry.Backoff = 100 * time.Millisecond
	cfg.Producer.Return.Successes = true
	cfg.Producer.Timeout = 5 * time.Second
	cfg.Net.MaxOpenRequests = 1
	cfg.Net.DialTimeout = 3 * time.Second
	cfg.Net.ReadTimeout = 5 * time.Second
	cfg.Net.WriteTimeout = 5 * time.Second
	cfg.Metadata.Retry.Max = 2
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	return cfg
}

// TestKafkaKillLosesNothingAcked: a Kafka run as hack/deps.sh runs it (no
// fsync per message: log.flush.* at Kafka's defaults) is killed with
// kill -9 while an idempotent acks=all producer writes; hack/deps.sh start
// brings it back at once; every record the broker acknowledged is then in
// the log. (A process kill leaves the page cache, hence the appended log,
// intact; only a power loss or a kernel crash could take unsynced records,
// which production answers with replication, not fsync.)
func TestKafkaKillLosesNothingAcked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private Kafka twice")
	}
	p := testdeps.PrivateKafka(t)
	if p == nil {
		return
	}
	cfg := faultKafkaConfig()
	admin, err := sarama.NewClusterAdmin(p.Endpoints, cfg)
	if err != nil {
		t.Fatal(err)
	}
	topic := testdeps.Unique("fault-kafka")
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	_ = admin.Close()

	producer, err := sarama.NewAsyncProducer(p.Endpoints, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m := range producer.Successes() {
			mu.Lock()
			acked[string(m.Value.(sarama.StringEncoder))] = true
			mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for range producer.Errors() {
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case producer.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint("k", i%7)),
				Value: sarama.StringEncoder(fmt.Sprint("v", i))}:
			}
			if i%200 == 199 {
				time.Sleep(10 * time.Millisecond) // a steady load, not a flood of retries after the kill
			}
		}
	}()
	t0 := time.Now()
	for time.Since(t0) < 2*time.Second || count() < 2000 {
		if time.Since(t0) > 60*time.Second {
			t.Fatalf("only %d records acknowledged in 60 s", count())
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := count()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	close(stop)
	<-sent
	producer.AsyncClose()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// A producer retrying against the dead broker may take long to give
	// up (under load: over a minute); what it acknowledged so far is what
	// counts, so the check goes on without it after 15 s (later acks come
	// from the restarted broker and are not checked).
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Log("producer still closing 15 s after the kill; checking what it acknowledged so far")
		t.Cleanup(func() {
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Log("producer still closing at the end of the test")
			}
		})
	}
	mu.Lock()
	checked := maps.Clone(acked)
	mu.Unlock()
	t.Logf("%d records acknowledged before the kill, %d in all", before, len(checked))
	if err := p.Start(); err != nil {
		t.Fatalf("hack/deps.sh start right after kill -9: %v", err)
	}
	t.Logf("ready again %v after the kill", time.Since(killed).Round(100*time.Millisecond))

	client, err := sarama.NewClient(p.Endpoints, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	have := map[string]bool{}
	for part := int32(0); part < 2; part++ {
		hw, err := client.GetOffset(topic, part, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if hw == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, part, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		for read := false; !read; {
			select {
			case m := <-pc.Messages():
				have[string(m.Value)] = true
				read = m.Offset >= hw-1
			case <-ctx.Done():
				t.Fatalf("partition %d: log not read up to %d within 60 s", part, hw)
			}
		}
		cancel()
		_ = pc.Close()
	}
	lost := 0
	for v := range checked {
		if !have[v] {
			lost++
		}
	}
	t.Logf("%d acknowledged records checked, %d lost", len(checked), lost)
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records lost by kill -9", lost, len(checked))
	}
}
