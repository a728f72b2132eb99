package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
)

// rawKafka: idempotent acks=all async producer at full speed.
func rawKafka() {
	cfg := baseConfig("kafka")
	defer setup(cfg)()
	sc, err := mlog.ProducerConfig(cfg.Kafka, "bench-raw")
	if err != nil {
		fail(err)
	}
	sc.Producer.Flush.Frequency = time.Millisecond
	ap, err := sarama.NewAsyncProducer(cfg.Brokers, sc)
	if err != nil {
		fail(err)
	}
	var acked atomic.Int64
	done := make(chan struct{})
	go func() {
		for range ap.Successes() {
			acked.Add(1)
		}
		close(done)
	}()
	go func() {
		for err := range ap.Errors() {
			fail(err)
		}
	}()
	deadline := time.Now().Add(*flagRaw)
	start := time.Now()
	i := 0
	for time.Now().Before(deadline) {
		for range 1000 {
			v := payload(i)
			ap.Input() <- &sarama.ProducerMessage{Topic: cfg.Topic, Key: sarama.StringEncoder(fmt.Sprint("k", i%500)), Value: sarama.ByteEncoder(v)}
			i++
		}
	}
	ap.AsyncClose()
	<-done
	el := time.Since(start)
	fmt.Printf("raw_kafka_produce: %d records (%d B each), acks=all idempotent, %.0f records/s\n", acked.Load(), len(payload(0)), float64(acked.Load())/el.Seconds())
}

// closedLoop runs f with conc workers for d and reports rate and latency.
func closedLoop(name string, conc int, d time.Duration, f func(w, i int) error) {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				t := time.Now()
				if err := f(w, i); err != nil {
					fail(err)
				}
				mu.Lock()
				lat = append(lat, time.Since(t))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("%s: %d in flight: %.0f ops/s, latency p50 %s p99 %s\n", name, conc, float64(len(lat))/el.Seconds(), ms(pct(lat, 0.5)), ms(pct(lat, 0.99)))
}

// lookup: the pipeline's de-duplication read alone (a msg_ids point read
// of a msg_id not stored, as for every new message), per batch of 64.
func lookup() {
	cfg := baseConfig("lookup")
	defer setup(cfg)()
	st, err := store.Open(cfg.Cassandra, cfg.Topic, *flagPartitions)
	if err != nil {
		fail(err)
	}
	defer st.Close()
	for _, conc := range []int{1, 16, 64} {
		closedLoop(fmt.Sprintf("cassandra_msgid_lookup_64(conc=%d)", conc), conc, *flagRaw/2, func(w, i int) error {
			ids := make([]string, 64)
			for k := range ids {
				ids[k] = model.MessageID(fmt.Sprint("s", w), fmt.Sprintf("c%d-%d-%d-%d", conc, w, i, k))
			}
			_, err := st.LookupMessageIDs(context.Background(), ids)
			return err
		})
	}
}

// syncProduce: the send path's produce alone (SyncProducer, acks=all).
func syncProduce() {
	cfg := baseConfig("prod")
	defer setup(cfg)()
	p, err := mlog.NewProducer(cfg.Kafka, cfg.Topic, "bench", api.SendDeadline)
	if err != nil {
		fail(err)
	}
	defer p.Close()
	for _, conc := range []int{1, 16, 64} {
		closedLoop(fmt.Sprintf("kafka_sync_produce(conc=%d)", conc), conc, *flagRaw/2, func(w, i int) error {
			_, _, err := p.Produce(fmt.Sprint("k", w), payload(i))
			return err
		})
	}
}

// rawCassandra: single-row inserts shaped like a message row, 64 in flight.
func rawCassandra() {
	cfg := baseConfig("cass")
	defer setup(cfg)()
	st, err := store.Open(cfg.Cassandra, cfg.Topic, *flagPartitions)
	if err != nil {
		fail(err)
	}
	defer st.Close()
	s := st.Session()
	var n atomic.Int64
	deadline := time.Now().Add(*flagRaw)
	start := time.Now()
	var wg sync.WaitGroup
	body := `{"text":"the quick brown fox jumps over the lazy dog, 64 bytes of text.."}`
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				seq := int64(w)<<32 | int64(i)
				err := s.Query(`INSERT INTO messages (conv_id, bucket, seq, msg_id, client_msg_id, from_user, type, body, sent_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					fmt.Sprintf("p:u%d:v%d", i%500, i%500), model.Bucket(seq), seq, "m", "c", "u", "text", body, int64(1)).Exec()
				if err != nil {
					fail(err)
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("raw_cassandra_insert: %d single-row inserts, 64 in flight, %.0f rows/s\n", n.Load(), float64(n.Load())/el.Seconds())
}
