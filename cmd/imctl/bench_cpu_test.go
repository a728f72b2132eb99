package main

import (
	"os"
	"testing"
	"time"
)

func TestServerProcess(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"/w/bin/imcluster", "message"}, "message"},
		{[]string{"bin/imcluster", "push", "--x"}, "push"},
		{[]string{"bin/imcluster", "migrate"}, ""},
		{[]string{"/usr/bin/etcd", "--data-dir", "d"}, "etcd"},
		{[]string{"java", "-Xmx1g", "kafka.Kafka", "server.properties"}, "kafka"},
		{[]string{"java", "-ea", "org.apache.cassandra.service.CassandraDaemon"}, "cassandra"},
		{[]string{"bin/imctl", "bench"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := serverProcess(tt.args); got != tt.want {
			t.Errorf("serverProcess(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

var sink uint64

// procCPU reads this process's own CPU time, which grows while it burns.
func TestProcCPUOfSelf(t *testing.T) {
	a, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i := range uint64(1_000_000) {
			sink += i * i
		}
		b, err := procCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if b > a {
			return
		}
	}
	t.Fatal("10 s of busy loop did not move this process's CPU time in /proc")
}
