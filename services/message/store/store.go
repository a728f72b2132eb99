package store

import (
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"
	"github.com/golang-migrate/migrate/v4"
	mcass "github.com/golang-migrate/migrate/v4/database/cassandra"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/imcluster/imcluster/services/config"
)

//go:embed migrations/*.cql
var migrations embed.FS

var (
	keyspaceRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)
	dcRE       = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// Cluster returns the gocql cluster configuration for cfg (keyspace may be
// empty): token-aware host selection, local-quorum consistency.
func Cluster(cfg config.Cassandra, keyspace string) (*gocql.ClusterConfig, error) {
	c := gocql.NewCluster(cfg.Hosts...)
	c.Keyspace = keyspace
	c.Consistency = gocql.LocalQuorum
	c.SerialConsistency = gocql.LocalSerial
	c.Timeout = 5 * time.Second
	c.ConnectTimeout = 5 * time.Second
	c.NumConns = 2
	c.ProtoVersion = 4
	c.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 2}
	c.ReconnectInterval = 2 * time.Second
	if cfg.LocalDC != "" {
		c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.DCAwareRoundRobinPolicy(cfg.LocalDC))
	} else {
		c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	}
	if cfg.UserFile != "" {
		u, err := config.ReadSecretFile(cfg.UserFile)
		if err != nil {
			return nil, err
		}
		p, err := config.ReadSecretFile(cfg.PassFile)
		if err != nil {
			return nil, err
		}
		c.Authenticator = gocql.PasswordAuthenticator{Username: string(u), Password: string(p)}
	}
	return c, nil
}

// ReplicationCQL turns "SimpleStrategy:1" or "NetworkTopologyStrategy:dc1=3,dc2=3"
// into a CQL replication map.
func ReplicationCQL(spec string) (string, error) {
	class, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return "", fmt.Errorf("replication %q: want Class:args", spec)
	}
	switch class {
	case "SimpleStrategy":
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || n > 9 {
			return "", fmt.Errorf("replication %q: factor must be 1..9", spec)
		}
		return fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", n), nil
	case "NetworkTopologyStrategy":
		parts := []string{"'class': 'NetworkTopologyStrategy'"}
		for _, kv := range strings.Split(rest, ",") {
			dc, f, ok := strings.Cut(strings.TrimSpace(kv), "=")
			n, err := strconv.Atoi(f)
			if !ok || err != nil || n < 1 || n > 9 || !dcRE.MatchString(dc) {
				return "", fmt.Errorf("replication %q: want dc=factor pairs", spec)
			}
			parts = append(parts, fmt.Sprintf("'%s': %d", dc, n))
		}
		return "{" + strings.Join(parts, ", ") + "}", nil
	}
	return "", fmt.Errorf("replication %q: unknown class %q", spec, class)
}

// Migrate creates the keyspace if needed and applies every migration.
func Migrate(cfg config.Cassandra) error {
	if !keyspaceRE.MatchString(cfg.Keyspace) {
		return fmt.Errorf("keyspace %q: want [a-z][a-z0-9_]{0,47}", cfg.Keyspace)
	}
	repl, err := ReplicationCQL(cfg.Replication)
	if err != nil {
		return err
	}
	c, err := Cluster(cfg, "")
	if err != nil {
		return err
	}
	c.Timeout = 30 * time.Second
	s, err := c.CreateSession()
	if err != nil {
		return fmt.Errorf("while connecting to Cassandra: %w", err)
	}
	err = s.Query(fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", cfg.Keyspace, repl)).Exec()
	s.Close()
	if err != nil {
		return fmt.Errorf("while creating keyspace %s: %w", cfg.Keyspace, err)
	}
	c, err = Cluster(cfg, cfg.Keyspace)
	if err != nil {
		return err
	}
	c.Timeout = 30 * time.Second
	c.Consistency = gocql.All
	ks, err := c.CreateSession()
	if err != nil {
		return fmt.Errorf("while connecting to keyspace %s: %w", cfg.Keyspace, err)
	}
	defer ks.Close()
	drv, err := mcass.WithInstance(ks, &mcass.Config{KeyspaceName: cfg.Keyspace, MultiStatementEnabled: true})
	if err != nil {
		return fmt.Errorf("while preparing migrations: %w", err)
	}
	src, err := iofs.New(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("while reading migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "cassandra", drv)
	if err != nil {
		return fmt.Errorf("while preparing migrations: %w", err)
	}
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("while migrating keyspace %s: %w", cfg.Keyspace, err)
	}
	return nil
}

// DropKeyspace removes a keyspace (tests).
func DropKeyspace(cfg config.Cassandra, keyspace string) error {
	if !keyspaceRE.MatchString(keyspace) {
		return fmt.Errorf("keyspace %q: invalid", keyspace)
	}
	c, err := Cluster(cfg, "")
	if err != nil {
		return err
	}
	c.Timeout = 60 * time.Second
	s, err := c.CreateSession()
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Query("DROP KEYSPACE IF EXISTS " + keyspace).Exec()
}

// Store runs the message tier's queries.
type Store struct {
	s          *gocql.Session
	topic      string
	partitions int
	markers    markerCache
	writes     chan struct{} // semaphore of pipeline writes in flight
	indexSlots chan struct{} // the index stage's share of writes
	ret        retention     // feed retention (retention.go)
	closed     chan struct{} // closed by Close
	closeOnce  sync.Once
}

// Open connects to cfg.Keyspace. topic and partitions describe the log the
// stored seqs come from.
func Open(cfg config.Cassandra, topic string, partitions int) (*Store, error) {
	c, err := Cluster(cfg, cfg.Keyspace)
	if err != nil {
		return nil, err
	}
	c.QueryObserver, c.BatchObserver = observer{}, observer{} // metrics.go
	s, err := c.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("while connecting to Cassandra keyspace %s: %w", cfg.Keyspace, err)
	}
	return &Store{s: s, topic: topic, partitions: partitions, markers: markerCache{m: map[string]struct{}{}},
		writes: make(chan struct{}, MaxWritesInFlight), indexSlots: make(chan struct{}, MaxIndexWritesInFlight),
		closed: make(chan struct{})}, nil
}

// Close closes the session (and stops announcing the feed retention).
func (st *Store) Close() {
	st.closeOnce.Do(func() { close(st.closed) })
	st.s.Close()
}

// Session exposes the session (benchmarks).
func (st *Store) Session() *gocql.Session { return st.s }

// Partitions is the partition count cursors are made for.
func (st *Store) Partitions() int { return st.partitions }

// Ping checks that Cassandra answers.
func (st *Store) Ping() error {
	return st.s.Query("SELECT release_version FROM system.local").Exec()
}

// markerCache remembers bucket markers already written, so the hot path
// writes each at most once per process (markers are idempotent anyway).
type markerCache struct {
	mu sync.Mutex
	m  map[string]struct{}
}

const maxMarkers = 200_000

func (c *markerCache) has(k string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[k]
	return ok
}

func (c *markerCache) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxMarkers {
		c.m = map[string]struct{}{}
	}
	c.m[k] = struct{}{}
}

// IsPermanent reports whether err is a write error that retrying cannot
// fix and that belongs to the data written (Cassandra's "invalid request",
// e.g. an oversized mutation): the pipeline then persists the batch's records
// one by one and dead-letters the ones that fail so. Everything else
// (timeouts, unavailable, overloaded, connection errors) is transient.
func IsPermanent(err error) bool {
	var re gocql.RequestError
	return errors.As(err, &re) && re.Code() == gocql.ErrCodeInvalid
}
