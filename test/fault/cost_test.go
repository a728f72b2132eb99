package fault

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/test/testdeps"
)

// TestCassandraDurabilityCost measures what the durable settings cost
// (hack/deps_servers.sh): start-up to ready, DDL (a keyspace and 8 tables,
// as a test's bootstrap does) and raw inserts from 16 writers for 3 s, for
// the old defaults (unsafesystem, commitlog periodic), the new ones, and
// each change alone (IMC_FAULT_MEASURE=2: two rounds). A measurement, not
// a check: run with
//
//	IMC_FAULT_MEASURE=1 go test -run DurabilityCost -v ./test/fault/
func TestCassandraDurabilityCost(t *testing.T) {
	if os.Getenv("IMC_FAULT_MEASURE") == "" {
		t.Skip("a measurement; set IMC_FAULT_MEASURE=1")
	}
	modes := []struct{ name, unsafe, sync string }{
		{"old (unsafesystem, periodic)", "true", "periodic"},
		{"durable (default: no unsafesystem, batch)", "false", "batch"},
		{"schema-only (no unsafesystem, periodic)", "false", "periodic"},
		{"commitlog-only (unsafesystem, batch)", "true", "batch"},
	}
	rounds := 1
	if os.Getenv("IMC_FAULT_MEASURE") == "2" {
		rounds = 2
	}
	for round := 0; round < rounds; round++ {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/%d", strings.Fields(m.name)[0], round), func(t *testing.T) {
				t0 := time.Now()
				p := testdeps.PrivateCassandraWith(t, "IMC_CASSANDRA_HEAP=1g",
					"IMC_CASSANDRA_UNSAFE_SYSTEM="+m.unsafe, "IMC_CASSANDRA_COMMITLOG_SYNC="+m.sync)
				if p == nil {
					return
				}
				start := time.Since(t0)
				s, err := cassandraSession(t, p.Endpoints, "")
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				t1 := time.Now()
				ks := "cost_" + strings.ReplaceAll(testdeps.Unique("k"), "-", "_")
				if err := s.Query(fmt.Sprintf("CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", ks)).Exec(); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 8; i++ {
					if err := s.Query(fmt.Sprintf("CREATE TABLE %s.t%d (a int, b int, v text, PRIMARY KEY ((a), b))", ks, i)).Exec(); err != nil {
						t.Fatal(err)
					}
				}
				ddl := time.Since(t1)
				var n atomic.Int64
				var wg sync.WaitGroup
				stop := time.Now().Add(3 * time.Second)
				for w := 0; w < 16; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; time.Now().Before(stop); i++ {
							if s.Query(fmt.Sprintf("INSERT INTO %s.t0 (a, b, v) VALUES (?, ?, ?)", ks), w, i, "payload-payload").Exec() == nil {
								n.Add(1)
							}
						}
					}()
				}
				wg.Wait()
				t.Logf("%s: start to ready %v, keyspace + 8 tables %v, %.0f inserts/s (16 writers, 3 s)",
					m.name, start.Round(100*time.Millisecond), ddl.Round(10*time.Millisecond), float64(n.Load())/3)
			})
		}
	}
}
