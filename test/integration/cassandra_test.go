package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/imcluster/imcluster/test/testdeps"
)

func TestCassandraPreparedStatementsAndLWT(t *testing.T) {
	hosts := testdeps.Cassandra(t)
	cluster := gocql.NewCluster(hosts...)
	// As the message tier's migrations: schema changes queue behind every
	// other test package's keyspace creations and drops (Cassandra applies
	// them one at a time), which on a loaded CI box takes more than 10 s.
	cluster.Timeout = 30 * time.Second
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	s, err := cluster.CreateSession()
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer s.Close()

	ks := testdeps.Unique("it_ks")
	if err := s.Query(fmt.Sprintf(`CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, ks)).Exec(); err != nil {
		t.Fatalf("create keyspace: %v", err)
	}
	t.Cleanup(func() { _ = s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec() })
	if err := s.Query(fmt.Sprintf(`CREATE TABLE %s.kv (k text, c int, v text, PRIMARY KEY (k, c))`, ks)).Exec(); err != nil {
		t.Fatalf("create table: %v", err)
	}

	// gocql prepares a statement with bind markers on first use and reuses it.
	insert := fmt.Sprintf(`INSERT INTO %s.kv (k, c, v) VALUES (?, ?, ?)`, ks)
	for i := 0; i < 10; i++ {
		if err := s.Query(insert, "row", i, fmt.Sprint("v", i)).Exec(); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	iter := s.Query(fmt.Sprintf(`SELECT c, v FROM %s.kv WHERE k = ?`, ks), "row").Iter()
	var c int
	var v string
	got := 0
	for iter.Scan(&c, &v) {
		if v != fmt.Sprint("v", c) || c != got {
			t.Fatalf("row %d: c=%d v=%q", got, c, v)
		}
		got++
	}
	if err := iter.Close(); err != nil || got != 10 {
		t.Fatalf("read back %d rows, err %v", got, err)
	}

	lwt := fmt.Sprintf(`INSERT INTO %s.kv (k, c, v) VALUES (?, ?, ?) IF NOT EXISTS`, ks)
	prev := map[string]any{}
	applied, err := s.Query(lwt, "lwt", 1, "first").MapScanCAS(prev)
	if err != nil || !applied {
		t.Fatalf("first LWT: applied=%v err=%v", applied, err)
	}
	prev = map[string]any{}
	applied, err = s.Query(lwt, "lwt", 1, "second").MapScanCAS(prev)
	if err != nil {
		t.Fatalf("second LWT: %v", err)
	}
	if applied {
		t.Fatal("second LWT IF NOT EXISTS applied; want not applied")
	}
	if prev["v"] != "first" {
		t.Fatalf("not-applied LWT returned existing v=%v, want first", prev["v"])
	}
}
