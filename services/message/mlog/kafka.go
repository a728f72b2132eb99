package mlog

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/config"
)

// Version is the protocol version ceiling sarama negotiates down from.
var Version = sarama.V4_1_0_0

// SaramaConfig returns the common client configuration for cfg: TLS and SASL
// from mounted files, the version ceiling, and the hash partitioner.
func SaramaConfig(cfg config.Kafka, clientID string) (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.Version = Version
	sc.ClientID = clientID
	sc.Metadata.RefreshFrequency = 30 * time.Second
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	if cfg.TLSDir != "" {
		tc, err := tlsConfig(cfg.TLSDir)
		if err != nil {
			return nil, err
		}
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tc
	}
	if cfg.SASLUserFile != "" {
		user, err := config.ReadSecretFile(cfg.SASLUserFile)
		if err != nil {
			return nil, err
		}
		pass, err := config.ReadSecretFile(cfg.SASLPassFile)
		if err != nil {
			return nil, err
		}
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		sc.Net.SASL.User = string(user)
		sc.Net.SASL.Password = string(pass)
	}
	return sc, nil
}

func tlsConfig(dir string) (*tls.Config, error) {
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("while reading Kafka CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no certificate in Kafka ca.crt")
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if _, err := os.Stat(filepath.Join(dir, "tls.crt")); err == nil {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			return nil, fmt.Errorf("while loading Kafka client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Bounds of one produce. sarama has no delivery timeout (the Java
// client's delivery.timeout.ms), so a produce ends only when an attempt
// succeeds or the last one fails; each attempt is bounded by the network
// timeouts, and the number of attempts by Producer.Retry.Max. These
// values keep the worst case (ProduceBound) below the API's send deadline,
// so a send either is in the log or failed when its answer goes out —
// never still in flight behind an error answer for long.
const (
	produceDialTimeout  = 1 * time.Second
	produceWriteTimeout = 1 * time.Second
	// produceAckTimeout is how long the broker waits for the in-sync
	// replicas (Producer.Timeout); the read timeout must exceed it.
	produceAckTimeout  = 1 * time.Second
	produceReadTimeout = 2 * time.Second
	produceRetries     = 1
	produceBackoff     = 100 * time.Millisecond
	// produceMetadataTimeout bounds a metadata refresh between attempts
	// (a moved leader), retries included.
	produceMetadataTimeout = 1 * time.Second
)

// ProducerConfig returns the idempotent, acks=all producer configuration.
func ProducerConfig(cfg config.Kafka, clientID string) (*sarama.Config, error) {
	sc, err := SaramaConfig(cfg, clientID)
	if err != nil {
		return nil, err
	}
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Retry.Max = produceRetries
	sc.Producer.Retry.Backoff = produceBackoff
	sc.Net.MaxOpenRequests = 1
	sc.Net.DialTimeout = produceDialTimeout
	sc.Net.WriteTimeout = produceWriteTimeout
	sc.Net.ReadTimeout = produceReadTimeout
	sc.Metadata.Timeout = produceMetadataTimeout
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Timeout = produceAckTimeout
	sc.Producer.Compression = sarama.CompressionNone
	sc.Producer.MaxMessageBytes = 2 << 20
	// Send as soon as the previous request returns: concurrent sends batch
	// themselves while one request is in flight (MaxOpenRequests=1).
	sc.Producer.Flush.Frequency = 0
	sc.Producer.Flush.MaxMessages = 1000
	return sc, nil
}

// ProduceBound is the longest one produce with sc can take: every attempt
// dials, writes and waits for its answer, and every retry first waits its
// backoff and a metadata refresh — which sarama bounds by Metadata.Timeout
// only between its requests, so one request in flight (dial, write, read)
// may run past it. (Measured against a SIGSTOPped broker with an earlier
// configuration whose bound this gives as 16.1 s: 15.0 s.)
func ProduceBound(sc *sarama.Config) time.Duration {
	retries := time.Duration(sc.Producer.Retry.Max)
	request := sc.Net.DialTimeout + sc.Net.WriteTimeout + sc.Net.ReadTimeout
	return (retries+1)*request + retries*(sc.Producer.Retry.Backoff+sc.Metadata.Timeout+request)
}

// CheckProducerConfig refuses a configuration under which a produce could
// outlive deadline (the send's), or time out on the client while the
// broker still waits for replicas.
func CheckProducerConfig(sc *sarama.Config, deadline time.Duration) error {
	if sc.Net.ReadTimeout <= sc.Producer.Timeout {
		return fmt.Errorf("producer read timeout %v must exceed the broker's ack timeout %v", sc.Net.ReadTimeout, sc.Producer.Timeout)
	}
	if sc.Metadata.Timeout <= 0 {
		return errors.New("producer metadata timeout must be set (a refresh is otherwise unbounded)")
	}
	if b := ProduceBound(sc); b >= deadline {
		return fmt.Errorf("a produce may take %v, not below the send deadline %v", b, deadline)
	}
	return nil
}

// Header is one record header.
type Header struct{ Key, Value string }

// Producer produces records synchronously. It owns its sarama client, which
// also answers LogEnds (logend.go): one client serves both.
type Producer struct {
	client sarama.Client
	sp     sarama.SyncProducer
	topic  string
	// readEnds, if set, replaces one read of the log ends (tests).
	readEnds func() ([]int64, error)
}

// NewProducer connects an idempotent producer for topic whose produces end
// within deadline (CheckProducerConfig).
func NewProducer(cfg config.Kafka, topic, clientID string, deadline time.Duration) (*Producer, error) {
	sc, err := ProducerConfig(cfg, clientID)
	if err != nil {
		return nil, err
	}
	if err := CheckProducerConfig(sc, deadline); err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("while connecting the Kafka producer: %w", err)
	}
	sp, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("while starting the Kafka producer: %w", err)
	}
	return &Producer{client: client, sp: sp, topic: topic}, nil
}

// Produce writes one record and returns its partition and offset once the
// broker acknowledged it with acks=all.
func (p *Producer) Produce(key string, value []byte, headers ...Header) (int32, int64, error) {
	msg := &sarama.ProducerMessage{
		Topic: p.topic,
		Key:   sarama.StringEncoder(key),
		Value: sarama.ByteEncoder(value),
	}
	for _, h := range headers {
		msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: []byte(h.Value)})
	}
	part, off, err := p.sp.SendMessage(msg)
	if err != nil {
		return 0, 0, fmt.Errorf("while producing to %s: %w", p.topic, err)
	}
	return part, off, nil
}

// ProduceBatch writes several records; the order of the answers is the
// order of values. It returns the first error.
func (p *Producer) ProduceBatch(keys []string, values [][]byte) error {
	msgs := make([]*sarama.ProducerMessage, len(values))
	for i := range values {
		msgs[i] = &sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(keys[i]), Value: sarama.ByteEncoder(values[i])}
	}
	if err := p.sp.SendMessages(msgs); err != nil {
		return fmt.Errorf("while producing %d records to %s: %w", len(values), p.topic, err)
	}
	return nil
}

// Ping refreshes the topic's metadata: nil when a broker answers and
// knows the topic (readiness: sends can be taken).
func (p *Producer) Ping() error {
	if err := p.client.RefreshMetadata(p.topic); err != nil {
		return fmt.Errorf("while reaching Kafka: %w", err)
	}
	return nil
}

// Close flushes and closes the producer, then its client.
func (p *Producer) Close() error {
	err := p.sp.Close()
	if cerr := p.client.Close(); err == nil && !errors.Is(cerr, sarama.ErrClosedClient) {
		err = cerr
	}
	return err
}
