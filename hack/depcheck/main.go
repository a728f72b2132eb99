// Command depcheck waits until a dependency server is really ready — not
// only listening, but answering its own protocol — or fails at a deadline.
// hack/deps.sh uses it after starting a server.
//
//	depcheck kafka 127.0.0.1:9092         metadata request lists the broker
//	depcheck cassandra 127.0.0.1:9042     system.local says COMPLETED
//	depcheck etcd 127.0.0.1:2379          a linearizable read succeeds
//
// Exit status 0 when ready, 1 at the deadline (-timeout, default 120s).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func main() {
	timeout := flag.Duration("timeout", 120*time.Second, "give up after this long")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: depcheck [-timeout D] kafka|cassandra|etcd host:port[,host:port]")
		os.Exit(2)
	}
	kind, eps := flag.Arg(0), strings.Split(flag.Arg(1), ",")
	probe, ok := map[string]func([]string) error{
		"kafka": kafkaReady, "cassandra": cassandraReady, "etcd": etcdReady,
	}[kind]
	if !ok {
		fmt.Fprintf(os.Stderr, "depcheck: unknown kind %q\n", kind)
		os.Exit(2)
	}
	start := time.Now()
	deadline := start.Add(*timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = probe(eps); err == nil {
			if !*quiet {
				fmt.Printf("%s ready at %s after %.1fs\n", kind, flag.Arg(1), time.Since(start).Seconds())
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "depcheck: %s not ready at %s after %s: %v\n", kind, flag.Arg(1), *timeout, err)
	os.Exit(1)
}

func kafkaReady(eps []string) error {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_1_0_0
	cfg.Net.DialTimeout = 2 * time.Second
	cfg.Metadata.Retry.Max = 0
	admin, err := sarama.NewClusterAdmin(eps, cfg)
	if err != nil {
		return err
	}
	defer admin.Close()
	brokers, _, err := admin.DescribeCluster()
	if err != nil {
		return err
	}
	if len(brokers) == 0 {
		return fmt.Errorf("no brokers in metadata")
	}
	return nil
}

func cassandraReady(eps []string) error {
	c := gocql.NewCluster(eps...)
	c.Timeout = 3 * time.Second
	c.ConnectTimeout = 3 * time.Second
	c.DisableInitialHostLookup = true
	s, err := c.CreateSession()
	if err != nil {
		return err
	}
	defer s.Close()
	var state string
	if err := s.Query(`SELECT bootstrapped FROM system.local`).Scan(&state); err != nil {
		return err
	}
	if state != "COMPLETED" {
		return fmt.Errorf("bootstrapped = %q", state)
	}
	return nil
}

func etcdReady(eps []string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "/imcluster-depcheck")
	return err
}
