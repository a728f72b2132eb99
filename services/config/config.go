package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Environment variable names. The operator renders exactly these.
const (
	EnvNodeID            = "IM_NODE_ID"
	EnvHTTPAddr          = "IM_HTTP_ADDR"
	EnvInternalAddr      = "IM_INTERNAL_ADDR"
	EnvMetricsAddr       = "IM_METRICS_ADDR"
	EnvAdvertiseURL      = "IM_ADVERTISE_URL"
	EnvMessageURL        = "IM_MESSAGE_URL"
	EnvKafkaBrokers      = "IM_KAFKA_BROKERS"
	EnvKafkaTopic        = "IM_KAFKA_TOPIC"
	EnvKafkaDLQTopic     = "IM_KAFKA_DLQ_TOPIC"
	EnvKafkaPartitions   = "IM_KAFKA_PARTITIONS"
	EnvKafkaReplication  = "IM_KAFKA_REPLICATION_FACTOR"
	EnvKafkaGroup        = "IM_KAFKA_GROUP"
	EnvKafkaInstanceID   = "IM_KAFKA_GROUP_INSTANCE_ID"
	EnvKafkaTLSDir       = "IM_KAFKA_TLS_DIR"
	EnvKafkaSASLUserFile = "IM_KAFKA_SASL_USERNAME_FILE"
	EnvKafkaSASLPassFile = "IM_KAFKA_SASL_PASSWORD_FILE"
	EnvFetchWait         = "IM_PIPELINE_FETCH_WAIT"
	EnvCassandraHosts    = "IM_CASSANDRA_HOSTS"
	EnvCassandraKeyspace = "IM_CASSANDRA_KEYSPACE"
	EnvCassandraLocalDC  = "IM_CASSANDRA_LOCAL_DC"
	EnvCassandraRepl     = "IM_CASSANDRA_REPLICATION"
	EnvCassandraUserFile = "IM_CASSANDRA_USERNAME_FILE"
	EnvCassandraPassFile = "IM_CASSANDRA_PASSWORD_FILE"
	EnvEtcdEndpoints     = "IM_ETCD_ENDPOINTS"
	EnvEtcdPrefix        = "IM_ETCD_PREFIX"
	EnvEtcdTLSDir        = "IM_ETCD_TLS_DIR"
	EnvUserKeyFile       = "IM_AUTH_USER_KEY_FILE"
	EnvServiceKeyFile    = "IM_AUTH_SERVICE_KEY_FILE"
	EnvInternalKeyFile   = "IM_AUTH_INTERNAL_KEY_FILE"
	EnvMaxMessageBytes   = "IM_MAX_MESSAGE_BYTES"
	EnvRecallWindow      = "IM_RECALL_WINDOW"
	EnvFeedRetention     = "IM_FEED_RETENTION"
	EnvGroupMaxMembers   = "IM_GROUP_MAX_MEMBERS"
	EnvGroupMaxPerUser   = "IM_GROUP_MAX_PER_USER"
	EnvShutdownGrace     = "IM_SHUTDOWN_GRACE"
	EnvMaxConnections    = "IM_PUSH_MAX_CONNECTIONS"
	EnvHeartbeatInterval = "IM_PUSH_HEARTBEAT_INTERVAL"
	EnvSendQueueLength   = "IM_PUSH_SEND_QUEUE"
	EnvPresenceLeaseTTL  = "IM_PRESENCE_LEASE_TTL"
	EnvTLSCertFile       = "IM_TLS_CERT_FILE"
	EnvTLSKeyFile        = "IM_TLS_KEY_FILE"
	EnvTLSCAFile         = "IM_TLS_CA_FILE"
)

// Common holds what every tier needs.
type Common struct {
	NodeID          string // unique per process (pod name in Kubernetes)
	HTTPAddr        string // public listener (API or WebSocket)
	InternalAddr    string // tier-to-tier listener (push: delivery endpoint)
	MetricsAddr     string // /metrics, /healthz, /readyz
	EtcdEndpoints   []string
	EtcdPrefix      string // all keys live under it, e.g. "/imcluster/<name>"
	EtcdTLSDir      string // ca.crt, tls.crt, tls.key; empty: plaintext
	InternalKeyFile string // HMAC keys shared by the tiers for internal calls (auth.ParseKeySet format, reloaded)
	ShutdownGrace   time.Duration
	// TLS of the client-facing listener (HTTPAddr): PEM certificate chain
	// and key, both or neither; reloaded when their content changes.
	// Empty: clear text. Internal and metrics listeners stay clear text.
	TLSCertFile string
	TLSKeyFile  string
	// TLSCAFile: PEM CA bundle trusted, beside the system roots, for this
	// tier's https:// calls to the other tier (push: MessageURL).
	TLSCAFile string
}

// Kafka is the reliable log.
type Kafka struct {
	Brokers           []string
	Topic             string
	DLQTopic          string
	Partitions        int32 // immutable once the topic exists: seq derives from it
	ReplicationFactor int16
	Group             string
	// GroupInstanceID makes the pipeline a static group member (KIP-345):
	// unique per process, stable across its restarts. Unset, the binary
	// uses IM_NODE_ID when that is set (the pod name in Kubernetes), else
	// none (dynamic membership: a hostname may be shared by several
	// processes).
	GroupInstanceID string
	TLSDir          string
	SASLUserFile    string
	SASLPassFile    string
	// FetchWait is how long the pipeline's fetch from the log may wait for
	// records to accumulate before it is answered (a backlog is answered
	// at once): larger batches per partition, so fewer Cassandra requests,
	// fetches and pushes per message, for up to FetchWait more
	// send→deliver latency. IM_PIPELINE_FETCH_WAIT, in [1ms, 500ms];
	// unset: DefaultFetchWait. In the struct, 0 means unset for Env and
	// LoadMessage; a pipeline.Consumer given 0 has the fetch answered as
	// soon as one record is there. Measured in docs/benchmarks.md.
	FetchWait time.Duration
}

// Pipeline fetch settings (see Kafka.FetchWait).
const (
	DefaultFetchWait = 30 * time.Millisecond
	MinFetchWait     = time.Millisecond
	MaxFetchWait     = 500 * time.Millisecond
)

// CheckFetchWait refuses a fetch wait outside [MinFetchWait,
// MaxFetchWait]: LoadMessage and the operator's render apply it alike.
func CheckFetchWait(d time.Duration) error {
	if d < MinFetchWait || d > MaxFetchWait {
		return fmt.Errorf("must be in [%v, %v]", MinFetchWait, MaxFetchWait)
	}
	return nil
}

// Cassandra is the message store.
type Cassandra struct {
	Hosts       []string
	Keyspace    string
	LocalDC     string
	Replication string // "SimpleStrategy:1" or "NetworkTopologyStrategy:dc1=3,dc2=3"
	UserFile    string
	PassFile    string
}

// Message configures the message tier (API + pipeline).
type Message struct {
	Common
	Kafka
	Cassandra
	UserKeyFile     string // HMAC keys for user JWTs (auth.ParseKeySet format, reloaded)
	ServiceKeyFile  string // HMAC keys for business back-end (SDK) tokens (likewise)
	MaxMessageBytes int
	RecallWindow    time.Duration
	// FeedRetention is how long a sync feed entry is kept (a Cassandra TTL
	// on each feed write); a device whose cursor is older gets
	// cursor_expired and resyncs (docs/protocol.md). History is kept
	// forever. IM_FEED_RETENTION: a duration of at least 1s (whole
	// seconds), or 0 for "keep forever"; unset: DefaultFeedRetention. In
	// the struct, 0 means "unset" (the default applies, as for every
	// field) and FeedRetentionForever means "keep forever".
	FeedRetention time.Duration
	// MaxGroupMembers bounds a group's size (every member's feed gets a
	// row per message); MaxGroupsPerUser the groups one user may belong
	// to when created or added through the API.
	MaxGroupMembers  int
	MaxGroupsPerUser int
}

// Group limits (see Message.MaxGroupMembers).
const (
	DefaultGroupMaxMembers = 1000
	DefaultGroupMaxPerUser = 500
	MaxGroupMembersCeiling = 10000
)

// Feed retention settings (see Message.FeedRetention).
const (
	DefaultFeedRetention = 30 * 24 * time.Hour
	FeedRetentionForever = time.Duration(-1)
	// MaxFeedRetention is Cassandra's largest TTL (20 years).
	MaxFeedRetention = 630720000 * time.Second
)

// Push configures the push tier (WebSocket gateway).
type Push struct {
	Common
	UserKeyFile       string
	AdvertiseURL      string // how message pods reach this node's internal listener
	MessageURL        string // base URL of the message tier, for forwarded sends
	MaxConnections    int
	HeartbeatInterval time.Duration
	SendQueue         int // per-connection queued frames before the client is cut off
	PresenceLeaseTTL  time.Duration
}

// Getenv is how Load reads variables; tests may replace it.
type Getenv func(string) string

func loadCommon(get Getenv, c *Common, defHTTP string) error {
	var errs []string
	c.NodeID = str(get, EnvNodeID, hostname())
	c.HTTPAddr = str(get, EnvHTTPAddr, defHTTP)
	c.InternalAddr = str(get, EnvInternalAddr, "")
	c.MetricsAddr = str(get, EnvMetricsAddr, "")
	c.EtcdEndpoints = list(get, EnvEtcdEndpoints, "127.0.0.1:2379")
	c.EtcdPrefix = str(get, EnvEtcdPrefix, "/imcluster/default")
	c.EtcdTLSDir = str(get, EnvEtcdTLSDir, "")
	c.InternalKeyFile = str(get, EnvInternalKeyFile, "")
	c.ShutdownGrace = dur(get, EnvShutdownGrace, 25*time.Second, &errs)
	c.TLSCertFile = str(get, EnvTLSCertFile, "")
	c.TLSKeyFile = str(get, EnvTLSKeyFile, "")
	c.TLSCAFile = str(get, EnvTLSCAFile, "")
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, EnvTLSCertFile+" and "+EnvTLSKeyFile+" must be set together")
	}
	return joinErrs(errs)
}

// LoadMessage reads the message tier's configuration from the environment.
func LoadMessage(get Getenv) (Message, error) {
	var m Message
	var errs []string
	if err := loadCommon(get, &m.Common, ":8080"); err != nil {
		errs = append(errs, err.Error())
	}
	m.Kafka = Kafka{
		Brokers:           list(get, EnvKafkaBrokers, "127.0.0.1:9092"),
		Topic:             str(get, EnvKafkaTopic, "im.messages"),
		DLQTopic:          str(get, EnvKafkaDLQTopic, "im.messages.dlq"),
		Partitions:        int32(num(get, EnvKafkaPartitions, 12, &errs)),
		ReplicationFactor: int16(num(get, EnvKafkaReplication, 1, &errs)),
		Group:             str(get, EnvKafkaGroup, "im-pipeline"),
		GroupInstanceID:   str(get, EnvKafkaInstanceID, ""),
		TLSDir:            str(get, EnvKafkaTLSDir, ""),
		SASLUserFile:      str(get, EnvKafkaSASLUserFile, ""),
		SASLPassFile:      str(get, EnvKafkaSASLPassFile, ""),
		FetchWait:         dur(get, EnvFetchWait, DefaultFetchWait, &errs),
	}
	if err := CheckFetchWait(m.FetchWait); err != nil {
		errs = append(errs, EnvFetchWait+" "+err.Error())
	}
	m.Cassandra = Cassandra{
		Hosts:       list(get, EnvCassandraHosts, "127.0.0.1:9042"),
		Keyspace:    str(get, EnvCassandraKeyspace, "imcluster"),
		LocalDC:     str(get, EnvCassandraLocalDC, ""),
		Replication: str(get, EnvCassandraRepl, "SimpleStrategy:1"),
		UserFile:    str(get, EnvCassandraUserFile, ""),
		PassFile:    str(get, EnvCassandraPassFile, ""),
	}
	m.UserKeyFile = str(get, EnvUserKeyFile, "")
	m.ServiceKeyFile = str(get, EnvServiceKeyFile, "")
	m.MaxMessageBytes = num(get, EnvMaxMessageBytes, 16*1024, &errs)
	m.RecallWindow = dur(get, EnvRecallWindow, 2*time.Minute, &errs)
	m.FeedRetention = dur(get, EnvFeedRetention, DefaultFeedRetention, &errs)
	switch r := m.FeedRetention; {
	case r == 0:
		m.FeedRetention = FeedRetentionForever
	case r < time.Second || r > MaxFeedRetention || r%time.Second != 0:
		errs = append(errs, EnvFeedRetention+" must be 0 (keep forever) or whole seconds in [1s, 20 years]")
	}
	if m.Partitions < 1 {
		errs = append(errs, EnvKafkaPartitions+" must be >= 1")
	}
	if m.MaxMessageBytes < 1 || m.MaxMessageBytes > 1<<20 {
		errs = append(errs, EnvMaxMessageBytes+" must be in [1, 1048576]")
	}
	m.MaxGroupMembers = num(get, EnvGroupMaxMembers, DefaultGroupMaxMembers, &errs)
	m.MaxGroupsPerUser = num(get, EnvGroupMaxPerUser, DefaultGroupMaxPerUser, &errs)
	if m.MaxGroupMembers < 2 || m.MaxGroupMembers > MaxGroupMembersCeiling {
		errs = append(errs, EnvGroupMaxMembers+" must be in [2, 10000]")
	}
	if m.MaxGroupsPerUser < 1 || m.MaxGroupsPerUser > 100000 {
		errs = append(errs, EnvGroupMaxPerUser+" must be in [1, 100000]")
	}
	return m, joinErrs(errs)
}

// LoadPush reads the push tier's configuration from the environment.
func LoadPush(get Getenv) (Push, error) {
	var p Push
	var errs []string
	if err := loadCommon(get, &p.Common, ":8081"); err != nil {
		errs = append(errs, err.Error())
	}
	p.UserKeyFile = str(get, EnvUserKeyFile, "")
	p.AdvertiseURL = str(get, EnvAdvertiseURL, "")
	p.MessageURL = str(get, EnvMessageURL, "http://127.0.0.1:8080")
	p.MaxConnections = num(get, EnvMaxConnections, 50000, &errs)
	p.HeartbeatInterval = dur(get, EnvHeartbeatInterval, 30*time.Second, &errs)
	p.SendQueue = num(get, EnvSendQueueLength, 256, &errs)
	p.PresenceLeaseTTL = dur(get, EnvPresenceLeaseTTL, 10*time.Second, &errs)
	if p.SendQueue < 1 {
		errs = append(errs, EnvSendQueueLength+" must be >= 1")
	}
	return p, joinErrs(errs)
}

// ReadSecretFile reads a key or credential from a mounted file, trimming one
// trailing newline (kubectl create secret --from-file keeps it).
func ReadSecretFile(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("no secret file configured")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("while reading secret file %s: %w", path, err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("secret file %s is empty", path)
	}
	return b, nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	return h
}

func str(get Getenv, k, def string) string {
	if v := strings.TrimSpace(get(k)); v != "" {
		return v
	}
	return def
}

func list(get Getenv, k, def string) []string {
	var out []string
	for _, s := range strings.Split(str(get, k, def), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func num(get Getenv, k string, def int, errs *[]string) int {
	v := str(get, k, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		*errs = append(*errs, fmt.Sprintf("%s: %q is not an integer", k, v))
		return def
	}
	return n
}

func dur(get Getenv, k string, def time.Duration, errs *[]string) time.Duration {
	v := str(get, k, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		*errs = append(*errs, fmt.Sprintf("%s: %q is not a duration", k, v))
		return def
	}
	return d
}

func joinErrs(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %s", strings.Join(errs, "; "))
}
